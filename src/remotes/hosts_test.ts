import assert from "node:assert/strict";
import { isLoopbackHost, resolveHosts } from "./hosts.ts";
import { isKind } from "../core/errdefs.ts";

Deno.test("hosts: defaults, with plain http for loopback registries", async () => {
  const [hub] = await resolveHosts("docker.io");
  assert.equal(hub!.base, "https://registry-1.docker.io/v2");
  assert.equal((await resolveHosts("localhost:5000"))[0]!.base, "http://localhost:5000/v2");
  assert.equal((await resolveHosts("127.0.0.1:5000"))[0]!.base, "http://127.0.0.1:5000/v2");
  assert.equal((await resolveHosts("[::1]:5000"))[0]!.base, "http://[::1]:5000/v2");
  assert.equal((await resolveHosts("reg.example"))[0]!.base, "https://reg.example/v2");
  assert.equal(
    (await resolveHosts("reg.example", { plainHttp: true }))[0]!.base,
    "http://reg.example/v2",
  );
  assert.ok(isLoopbackHost("127.9.9.9:1") && !isLoopbackHost("128.0.0.1"));
});

Deno.test("hosts: hosts.toml mirrors in order, then the server", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/certs.d/reg.example:5000`, { recursive: true });
    await Deno.writeTextFile(`${dir}/certs.d/reg.example:5000/ca.pem`, "PEM");
    await Deno.writeTextFile(
      `${dir}/certs.d/reg.example:5000/hosts.toml`,
      `
server = "https://reg.example:5000"
[host."https://mirror-b.example"]
  capabilities = ["pull"]
  ca = "ca.pem"
[host."mirror-a.example:8080"]
  plain_http = true
  skip_verify = true
  [host."mirror-a.example:8080".header]
    x-key = "k"
[host."https://mirror-c.example/custom/v2"]
  override_path = true
`,
    );
    const hosts = await resolveHosts("reg.example:5000", { configDir: dir });
    assert.deepEqual(hosts.map((h) => h.base), [
      "https://mirror-b.example/v2",
      "http://mirror-a.example:8080/v2",
      "https://mirror-c.example/custom/v2",
      "https://reg.example:5000/v2",
    ]);
    assert.deepEqual(hosts[0]!.capabilities, ["pull"]);
    assert.deepEqual(hosts[0]!.caCerts, ["PEM"]);
    assert.equal(hosts[1]!.skipVerify, true);
    assert.deepEqual(hosts[1]!.headers, { "x-key": "k" });
    assert.equal(hosts[3]!.mirror, false);
    // _default applies to hosts without their own directory.
    await Deno.mkdir(`${dir}/certs.d/_default`);
    await Deno.writeTextFile(`${dir}/certs.d/_default/hosts.toml`, `[host."http://127.0.0.1:1"]\n`);
    assert.deepEqual((await resolveHosts("other.example", { configDir: dir })).map((h) => h.base), [
      "http://127.0.0.1:1/v2",
      "https://other.example/v2",
    ]);
    await Deno.writeTextFile(
      `${dir}/certs.d/_default/hosts.toml`,
      `[host."http://x"]\ncapabilities = ["fly"]\n`,
    );
    await assert.rejects(
      resolveHosts("other.example", { configDir: dir }),
      (e: Error) =>
        isKind(e, "invalid_argument") && e.message.includes("capabilities") &&
        e.message.includes("_default/hosts.toml"),
    );
    await Deno.writeTextFile(
      `${dir}/certs.d/_default/hosts.toml`,
      `[host."http://x"]\nca = "nope.pem"\n`,
    );
    await assert.rejects(
      resolveHosts("other.example", { configDir: dir }),
      (e: Error) => isKind(e, "invalid_argument") && e.message.includes("nope.pem"),
    );
    await Deno.writeTextFile(`${dir}/certs.d/_default/hosts.toml`, `server = `);
    await assert.rejects(
      resolveHosts("other.example", { configDir: dir }),
      (e: Error) => isKind(e, "invalid_argument"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
