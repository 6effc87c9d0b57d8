import assert from "node:assert/strict";
import {
  defaultDockerConfigPath,
  loadDockerConfig,
  parseUserPass,
  parseWwwAuthenticate,
} from "./auth.ts";
import { isKind } from "../core/errdefs.ts";

Deno.test("auth: WWW-Authenticate with quoted commas and several challenges", () => {
  const h = 'Bearer realm="https://auth.example/token",service="registry.example",' +
    'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"';
  assert.deepEqual(parseWwwAuthenticate(h), [{
    scheme: "bearer",
    params: {
      realm: "https://auth.example/token",
      service: "registry.example",
      scope: "repository:a/b:pull,push repository:c:pull",
      error: "insufficient_scope",
    },
  }]);
  assert.deepEqual(
    parseWwwAuthenticate('Basic realm="Registry Realm", Bearer realm="x\\"y", service=svc'),
    [
      { scheme: "basic", params: { realm: "Registry Realm" } },
      { scheme: "bearer", params: { realm: 'x"y', service: "svc" } },
    ],
  );
  assert.deepEqual(parseWwwAuthenticate("Negotiate"), [{ scheme: "negotiate", params: {} }]);
  assert.deepEqual(parseWwwAuthenticate(""), []);
});

Deno.test("auth: user:pass", () => {
  assert.deepEqual(parseUserPass("u:p:with:colons"), { username: "u", password: "p:with:colons" });
  assert.throws(() => parseUserPass("nopass"), (e: Error) => isKind(e, "invalid_argument"));
});

Deno.test("auth: Docker config.json auths", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/config.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        auths: {
          "https://index.docker.io/v1/": { auth: btoa("hubuser:hubpass") },
          "127.0.0.1:5001": { username: "tester", password: "secret" },
          "empty.example": {},
        },
      }),
    );
    const m = await loadDockerConfig(file);
    assert.deepEqual(m.get("docker.io"), { username: "hubuser", password: "hubpass" });
    assert.deepEqual(m.get("127.0.0.1:5001"), { username: "tester", password: "secret" });
    assert.equal(m.has("empty.example"), false);
    assert.equal((await loadDockerConfig(`${dir}/missing.json`)).size, 0);
    await Deno.writeTextFile(file, "{");
    await assert.rejects(
      loadDockerConfig(file),
      (e: Error) => isKind(e, "invalid_argument") && e.message.includes(file),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth: config.json path from DOCKER_CONFIG, else ~/.docker", () => {
  const saved = { d: Deno.env.get("DOCKER_CONFIG"), h: Deno.env.get("HOME") };
  try {
    Deno.env.set("DOCKER_CONFIG", "/etc/berth-docker");
    assert.equal(defaultDockerConfigPath(), "/etc/berth-docker/config.json");
    Deno.env.delete("DOCKER_CONFIG");
    Deno.env.set("HOME", "/home/someone");
    assert.equal(defaultDockerConfigPath(), "/home/someone/.docker/config.json");
  } finally {
    if (saved.d === undefined) Deno.env.delete("DOCKER_CONFIG");
    else Deno.env.set("DOCKER_CONFIG", saved.d);
    if (saved.h !== undefined) Deno.env.set("HOME", saved.h);
  }
});
