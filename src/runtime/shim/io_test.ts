import assert from "node:assert/strict";
import { nextPumpSize, ProcessIo } from "./io.ts";

async function mkfifo(path: string): Promise<void> {
  const r = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.ok(r.success, "mkfifo");
}

/** A fake process's stdin: whatever the shim writes, and when it is closed. */
function processStdin() {
  const ts = new TransformStream<Uint8Array, Uint8Array>();
  const text = new Response(ts.readable).text();
  return { writable: ts.writable, text };
}

Deno.test("process io: stdin FIFO data reaches the process, EOF when the client closes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-io-" });
  try {
    await mkfifo(`${dir}/in`);
    const stdin = processStdin();
    const io = await ProcessIo.attachStreams(
      { stdout: new Blob([]).stream(), stdin: stdin.writable },
      { stdin: `${dir}/in`, stdout: "", stderr: "", terminal: false },
    );
    const client = await Deno.open(`${dir}/in`, { write: true });
    await client.write(new TextEncoder().encode("line one\n"));
    client.close();
    assert.equal(await stdin.text, "line one\n");
    await io.drained();
    io.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("process io: CloseIO ends stdin even before the client opened the FIFO", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-io-" });
  try {
    await mkfifo(`${dir}/in`);
    const stdin = processStdin();
    const io = await ProcessIo.attachStreams(
      { stdout: new Blob([]).stream(), stdin: stdin.writable },
      { stdin: `${dir}/in`, stdout: "", stderr: "", terminal: false },
    );
    io.closeStdin();
    assert.equal(await stdin.text, "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("process io: stdout and stderr go to their own FIFO and file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-io-" });
  try {
    await mkfifo(`${dir}/out`);
    const out = Deno.open(`${dir}/out`, { read: true }).then((f) =>
      new Response(f.readable).text()
    );
    const io = await ProcessIo.attachStreams(
      { stdout: new Blob(["to out\n"]).stream(), stderr: new Blob(["to err\n"]).stream() },
      { stdin: "", stdout: `${dir}/out`, stderr: `file://${dir}/logs/err.log`, terminal: false },
    );
    await io.drained();
    assert.equal(await out, "to out\n");
    assert.equal(await Deno.readTextFile(`${dir}/logs/err.log`), "to err\n");
    await assert.rejects(
      ProcessIo.attachStreams({ stdout: new Blob([]).stream() }, {
        stdin: "",
        stdout: "tcp://x",
        stderr: "",
        terminal: false,
      }),
      /unsupported IO URI "tcp:\/\/x"/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("process io: output reads grow while they come back full and shrink to fit", () => {
  // A quiet stream's pending read holds 1 KiB; a chatty one reaches 64 KiB reads.
  assert.equal(nextPumpSize(1024, 10), 1024);
  assert.equal(nextPumpSize(1024, 1024), 2048);
  let size = 1024;
  for (let i = 0; i < 10; i++) size = nextPumpSize(size, size);
  assert.equal(size, 64 * 1024);
  assert.equal(nextPumpSize(64 * 1024, 3000), 4096);
  assert.equal(nextPumpSize(4096, 5), 1024);
});

Deno.test("process io: a burst and a trickle from a real process arrive whole and in order", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-io-" });
  try {
    // 300 000 bytes at once, then small writes after pauses.
    const child = new Deno.Command("sh", {
      args: [
        "-c",
        "printf start; head -c 300000 /dev/zero | tr '\\0' a; sleep 0.1; printf mid; sleep 0.1; printf end",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const io = await ProcessIo.attach(child, {
      stdin: "",
      stdout: `file://${dir}/out.log`,
      stderr: "",
      terminal: false,
    });
    await child.status;
    await io.drained();
    const text = await Deno.readTextFile(`${dir}/out.log`);
    assert.equal(text, "start" + "a".repeat(300_000) + "midend");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
