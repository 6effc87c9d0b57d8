import assert from "node:assert/strict";
import { ConsoleSocket, PtyMaster } from "./console.ts";

/**
 * Plays runc's part: opens a pty, puts it in raw mode, sends the master over
 * the console socket with SCM_RIGHTS (the slave's path as the message, as
 * runc does), then talks through the slave:
 * writes "ping\n", reads until "check\n" arrived, prints what it read and the
 * slave's window size, and exits (closing the slave).
 */
const PEER = `
import os, socket, sys, tty, fcntl, termios, struct
m, s = os.openpty()
tty.setraw(s)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
socket.send_fds(sock, [os.ttyname(s).encode()], [m])
os.close(m)
sock.close()
os.write(s, b"ping\\n")
buf = b""
while b"check\\n" not in buf:
    buf += os.read(s, 100)
sys.stdout.write(buf.decode())
rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(s, termios.TIOCGWINSZ, b"\\0" * 8))
print(rows, cols, flush=True)
`;

function peer(args: string[], script = PEER) {
  const child = new Deno.Command("python3", {
    args: ["-c", script, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // A stuck peer must fail the test, not hang it: killing it closes the slave (EOF here).
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  child.status.finally(() => clearTimeout(timer));
  return child;
}

async function readUntil(pty: PtyMaster, want: string): Promise<string> {
  const buf = new Uint8Array(256);
  let got = "";
  while (!got.includes(want)) {
    const n = await pty.read(buf);
    if (n === null) {
      throw new Error(`EOF before ${JSON.stringify(want)}; got ${JSON.stringify(got)}`);
    }
    got += new TextDecoder().decode(buf.subarray(0, n));
  }
  return got;
}

Deno.test("a pty master received over SCM_RIGHTS reads, writes, resizes and ends with the slave", async () => {
  const dir = await Deno.makeTempDir({ prefix: "console-" });
  try {
    using sock = ConsoleSocket.listen(`${dir}/console.sock`);
    assert.ok((await Deno.lstat(sock.path)).isSocket);
    const child = peer([sock.path]);
    using pty = await sock.receive();
    assert.match(pty.name, /^\/dev\/pts\/\d+$/);

    assert.equal(await readUntil(pty, "ping\n"), "ping\n");
    const w = pty.writable.getWriter();
    await w.write(new TextEncoder().encode("pong\n"));
    pty.resize({ width: 101, height: 33 });
    assert.deepEqual(pty.size(), { width: 101, height: 33 });
    await w.write(new TextEncoder().encode("check\n"));
    w.releaseLock();

    // The peer exits: its slave closes and the master's stream ends.
    const rest: Uint8Array[] = [];
    for await (const chunk of pty.readable) rest.push(chunk);
    assert.equal(rest.length, 0);
    const out = await child.output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(new TextDecoder().decode(out.stdout), "pong\ncheck\n33 101\n");
    assert.equal(await pty.read(new Uint8Array(10)), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the received fd is the peer's very pty, not a new one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "console-" });
  try {
    using sock = ConsoleSocket.listen(`${dir}/c.sock`);
    // The peer prints the pty number it sent, then reads one line through its slave.
    const child = peer(
      [sock.path],
      `
import os, socket, sys, tty, fcntl, struct
m, s = os.openpty()
tty.setraw(s)
n = struct.unpack("I", fcntl.ioctl(m, 0x80045430, b"\\0" * 4))[0]
sock = socket.socket(socket.AF_UNIX); sock.connect(sys.argv[1])
socket.send_fds(sock, [b"x"], [m]); os.close(m); sock.close()
print(n, flush=True)
print(os.read(s, 100).decode(), flush=True)
`,
    );
    using pty = await sock.receive();
    // TIOCGPTN on the received master names the same pty.
    const ptn = new Uint32Array(1);
    const { libc } = await import("./libc.ts");
    assert.equal(libc().ioctl(pty.fd, 0x80045430n, new Uint8Array(ptn.buffer)), 0);
    await pty.writeAll(new TextEncoder().encode("hello"));
    const out = await child.output();
    assert.equal(new TextDecoder().decode(out.stdout), `${ptn[0]}\nhello\n`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("close wakes a receive that nobody connects to, and an abort signal cancels it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "console-" });
  try {
    const sock = ConsoleSocket.listen(`${dir}/c.sock`);
    const pending = sock.receive();
    setTimeout(() => sock.close(), 50);
    const t0 = performance.now();
    await assert.rejects(pending, /console socket .* is closed/);
    assert.ok(performance.now() - t0 < 1000);
    assert.equal(await Deno.lstat(`${dir}/c.sock`).then(() => true, () => false), false);

    using sock2 = ConsoleSocket.listen(`${dir}/c2.sock`);
    const ac = new AbortController();
    const p2 = sock2.receive({ signal: ac.signal });
    setTimeout(() => ac.abort(new Error("gave up")), 50);
    await assert.rejects(p2, /gave up/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a peer that sends no fd, a taken path and a too-long path are clear errors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "console-" });
  try {
    using sock = ConsoleSocket.listen(`${dir}/c.sock`);
    const child = peer(
      [sock.path],
      `
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"no fd here"); s.close()
`,
    );
    await assert.rejects(sock.receive(), /peer sent 10 bytes but no file descriptor/);
    await child.output();
    assert.throws(() => ConsoleSocket.listen(`${dir}/c.sock`), /bind .*c\.sock: EADDRINUSE/);
    assert.throws(() => ConsoleSocket.listen(`/tmp/${"x".repeat(120)}`), /must be 1 to 107 bytes/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resize refuses sizes a winsize cannot hold", async () => {
  const dir = await Deno.makeTempDir({ prefix: "console-" });
  try {
    using sock = ConsoleSocket.listen(`${dir}/c.sock`);
    const child = peer(
      [sock.path],
      `
import os, socket, sys
m, s = os.openpty()
sock = socket.socket(socket.AF_UNIX); sock.connect(sys.argv[1])
socket.send_fds(sock, [b"x"], [m])
`,
    );
    using pty = await sock.receive();
    assert.throws(() => pty.resize({ width: 70000, height: 10 }), /Invalid terminal width 70000/);
    await child.output();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
