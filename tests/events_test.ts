import assert from "node:assert/strict";
import { MAIN, ok, startDaemon, type TestDaemon, waitFor } from "./_harness.ts";

/** A long-running CLI whose stdout lines are collected as they arrive. */
class Watcher implements AsyncDisposable {
  readonly lines: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #stderr: Promise<string>;
  readonly #reading: Promise<void>;

  constructor(cmd: string, args: string[]) {
    const child = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .spawn();
    this.#child = child;
    this.#stderr = new Response(child.stderr).text();
    this.#reading = (async () => {
      let buf = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        const parts = buf.split("\n");
        buf = parts.pop()!;
        this.lines.push(...parts);
      }
    })();
  }

  /** The lines whose text matches `re`. */
  matching(re: RegExp): string[] {
    return this.lines.filter((l) => re.test(l));
  }

  /** Sends `signal`, waits for the exit; returns the code and stderr. */
  stop(signal: Deno.Signal = "SIGINT"): Promise<{ code: number; stderr: string }> {
    try {
      this.#child.kill(signal);
    } catch { /* already gone */ }
    return this.wait();
  }

  /** Waits for the exit; returns the code and stderr. */
  async wait(): Promise<{ code: number; stderr: string }> {
    const st = await this.#child.status;
    await this.#reading;
    return { code: st.code, stderr: await this.#stderr };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

function ctrEvents(d: TestDaemon, ...filters: string[]): Watcher {
  return new Watcher("ctr", ["-a", d.sock, "events", ...filters]);
}

function berthEvents(d: TestDaemon, ...args: string[]): Watcher {
  return new Watcher(Deno.execPath(), ["run", "-A", MAIN, "-a", d.sock, "events", ...args]);
}

/**
 * A subscription starts at some moment after the watcher is spawned, so
 * repeat `act(i)` (each time with a new object) until `w` shows a line
 * matching `re(i)`; returns the round that was seen.
 */
async function untilSeen(
  w: Watcher,
  act: (i: number) => Promise<unknown>,
  re: (i: number) => RegExp,
): Promise<number> {
  let i = 0;
  let seen = -1;
  await waitFor("the event to arrive", async () => {
    for (let j = 0; j < i; j++) {
      if (w.matching(re(j)).length > 0) {
        seen = j;
        return true;
      }
    }
    await act(i++);
    await new Promise((r) => setTimeout(r, 150));
    return false;
  }, 20_000);
  return seen;
}

Deno.test("ctr events receives /namespaces/create, with and without filters", async () => {
  await using d = await startDaemon();
  await using all = ctrEvents(d);
  await using byTopic = ctrEvents(d, "topic~=/namespaces/");
  await using byName = ctrEvents(d, "event.name~=^marker");
  const round = await untilSeen(
    all,
    (i) => d.ctr(["namespaces", "create", `ev-${i}`, "team=x"], { check: true }),
    (i) => new RegExp(` /namespaces/create \\{"name":"ev-${i}","labels":\\{"team":"x"\\}\\}$`),
  );
  assert.ok(round >= 0);
  // ctr prints Go's time.Time (zone offset and name), then namespace, topic and the event.
  assert.match(
    all.matching(/ev-/)[0]!,
    /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} \S+ \S+ /,
  );
  await untilSeen(
    byTopic,
    (i) => d.ctr(["namespaces", "create", `t-${i}`]),
    (i) => new RegExp(`"t-${i}"`),
  );
  // The event.name filter: skip-N never shows, marker-N does; the round after the
  // first seen marker proves the subscription was live when skip-N was created.
  const m = await untilSeen(byName, async (i) => {
    await d.ctr(["namespaces", "create", `skip-${i}`], { check: true });
    await d.ctr(["namespaces", "create", `marker-${i}`], { check: true });
  }, (i) => new RegExp(`"marker-${i}"`));
  ok(await d.ctr(["namespaces", "create", `skip-late`]));
  ok(await d.ctr(["namespaces", "create", `marker-late`]));
  await waitFor("marker-late", () => byName.matching(/"marker-late"/).length === 1);
  assert.ok(m >= 0);
  assert.deepEqual(byName.matching(/skip-/), []);
  assert.ok(all.matching(/"skip-late"/).length === 1, "the unfiltered watcher saw skip-late");
});

Deno.test("berth events prints decoded events, filters them and exits 0 on Ctrl-C", async () => {
  await using d = await startDaemon();
  await using all = berthEvents(d);
  await using byTopic = berthEvents(d, "topic~=/namespaces/");
  await using none = berthEvents(d, "topic~=/images/");
  await using json = berthEvents(d, "--json", "event.name==j1", "event.name==j-late");
  await untilSeen(
    all,
    (i) => d.berth(["namespaces", "create", `b-${i}`, "k=v"], { check: true }),
    (i) => new RegExp(` \\S+ /namespaces/create \\{"name":"b-${i}","labels":\\{"k":"v"\\}\\}$`),
  );
  assert.match(all.lines[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z \S+ \/namespaces\/create /);
  await untilSeen(
    byTopic,
    (i) => d.berth(["ns", "create", `t-${i}`]),
    (i) => new RegExp(`"t-${i}"`),
  );
  // Once every watcher is live: one more namespace reaches the /namespaces/ ones only.
  ok(await d.berth(["ns", "create", "j1"]));
  await waitFor("j1 in --json output", () => json.lines.length > 0);
  const ev = JSON.parse(json.lines[0]!);
  assert.equal(ev.topic, "/namespaces/create");
  assert.equal(ev.type, "containerd.events.NamespaceCreate");
  assert.deepEqual(ev.event, { name: "j1" });
  await waitFor("j1 in the topic watcher", () => byTopic.matching(/"j1"/).length === 1);
  assert.deepEqual(none.lines, [], "a /images/ filter sees no namespace events");
  const st = await all.stop("SIGINT");
  assert.equal(st.code, 0, `berth events exit on SIGINT: ${st.stderr}`);
  assert.equal(st.stderr, "");
});

Deno.test("/images/create reaches ctr events and berth events", async () => {
  await using d = await startDaemon();
  const { Client } = await import("../src/cmd/cli/client.ts");
  const { Images } = await import("../src/gen/containerd/services/images/v1/images_pb.ts");
  const c = new Client({ address: d.sock, namespace: "imgs" });
  try {
    await using ctrW = ctrEvents(d, "topic~=/images/");
    await using berthW = berthEvents(d, "topic==/images/create");
    const create = (i: number) =>
      c.call(Images, "create", {
        image: {
          name: `localhost:5000/img:${i}`,
          labels: { built: "test" },
          target: {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            digest: "sha256:" + "ab".repeat(32),
            size: 321n,
          },
        },
      });
    let n = 0;
    const act = () => create(n++);
    const re = (i: number) =>
      new RegExp(
        `imgs /images/create \\{"name":"localhost:5000/img:${i}","labels":\\{"built":"test"\\}\\}$`,
      );
    await untilSeen(ctrW, act, re);
    await untilSeen(berthW, act, re);
    await c.call(Images, "delete", { name: "localhost:5000/img:0" });
    await waitFor(
      "/images/delete in ctr events",
      () =>
        ctrW.matching(/ imgs \/images\/delete \{"name":"localhost:5000\/img:0"\}$/).length === 1,
    );
    assert.deepEqual(berthW.matching(/\/images\/delete/), []);
  } finally {
    c.close();
  }
});

Deno.test("berth events rejects a malformed filter with the filter's error", async () => {
  await using d = await startDaemon();
  await using w = berthEvents(d, "topic==");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const exited = await Promise.race([
    w.wait().then(() => true),
    new Promise<false>((r) => timer = setTimeout(() => r(false), 15_000)),
  ]);
  clearTimeout(timer);
  // A hang here means the server never sent the stream's error status
  // (src/api/grpc.ts must end a failed stream with call.emit("error", ...)).
  assert.ok(exited, "berth events with a malformed filter did not exit");
  const st = await w.stop();
  assert.equal(st.code, 1);
  assert.match(st.stderr, /filter "topic==" at \d+: expected a value: invalid argument/);
  const help = ok(await d.berth(["events", "--help"]));
  assert.match(help.stdout, /Usage: berth events/);
});
