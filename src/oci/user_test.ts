import assert from "node:assert/strict";
import { isKind } from "../core/errdefs.ts";
import {
  parseGroup,
  parsePasswd,
  readFileInRoot,
  resolveGroups,
  resolveInRoot,
  resolveUser,
  resolveUserIds,
  supplementaryGroups,
  withPrimaryGid,
} from "./user.ts";

const PASSWD = `# comment
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:App:/home/app:/bin/sh

broken line
bad:x:notanumber:1::/:/bin/sh
other:x:1001:1001::/home/other:/bin/false
`;

const GROUP = `root:x:0:
audio:x:29:root, app
staff:x:50:app
app:x:1000:app
other:x:1001:
docker:x:999:other,app
`;

/** A temp rootfs with the given files; disposed with `await using`. */
async function rootfs(files: Record<string, string>, links: Record<string, string> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "berth-user-" });
  for (const [p, text] of Object.entries(files)) {
    await Deno.mkdir(`${dir}/${p.slice(0, p.lastIndexOf("/"))}`, { recursive: true });
    await Deno.writeTextFile(`${dir}/${p}`, text);
  }
  for (const [p, target] of Object.entries(links)) {
    await Deno.mkdir(`${dir}/${p.slice(0, p.lastIndexOf("/"))}`, { recursive: true });
    await Deno.symlink(target, `${dir}/${p}`);
  }
  return {
    dir,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

Deno.test("parsePasswd and parseGroup skip comments, blanks and malformed lines", () => {
  const users = parsePasswd(PASSWD);
  assert.deepEqual(users.map((u) => u.name), ["root", "app", "other"]);
  assert.deepEqual(users[1], {
    name: "app",
    uid: 1000,
    gid: 1000,
    home: "/home/app",
    shell: "/bin/sh",
  });
  const groups = parseGroup(GROUP);
  assert.deepEqual(groups[1], { name: "audio", gid: 29, members: ["root", "app"] });
  assert.deepEqual(groups[0]!.members, []);
});

Deno.test("resolveUser: every form, with supplementary groups", async () => {
  await using r = await rootfs({ "etc/passwd": PASSWD, "etc/group": GROUP });
  const cases: [string, { uid: number; gid: number; additionalGids: number[] }][] = [
    ["", { uid: 0, gid: 0, additionalGids: [0, 29] }],
    ["root", { uid: 0, gid: 0, additionalGids: [0, 29] }],
    ["app", { uid: 1000, gid: 1000, additionalGids: [1000, 29, 50, 999] }],
    ["1000", { uid: 1000, gid: 1000, additionalGids: [1000, 29, 50, 999] }],
    ["4242", { uid: 4242, gid: 0, additionalGids: [0] }],
    ["app:staff", { uid: 1000, gid: 50, additionalGids: [29, 50, 999] }],
    ["1000:50", { uid: 1000, gid: 50, additionalGids: [29, 50, 999] }],
    ["other:999", { uid: 1001, gid: 999, additionalGids: [999] }],
    ["1001:staff", { uid: 1001, gid: 50, additionalGids: [50, 999] }],
    ["4242:4242", { uid: 4242, gid: 4242, additionalGids: [4242] }],
  ];
  for (const [user, want] of cases) {
    assert.deepEqual(await resolveUser(r.dir, user), want, JSON.stringify(user));
  }
});

Deno.test("numeric users need no files at all", async () => {
  assert.deepEqual(await resolveUser(undefined, "123:456"), {
    uid: 123,
    gid: 456,
    additionalGids: [456],
  });
  assert.deepEqual(await resolveUser(undefined, "123"), { uid: 123, gid: 0, additionalGids: [0] });
  await using empty = await rootfs({});
  assert.deepEqual(await resolveUser(empty.dir, "7"), { uid: 7, gid: 0, additionalGids: [0] });
  assert.deepEqual(await resolveUserIds(empty.dir, "7:8"), { uid: 7, gid: 8 });
});

Deno.test("unknown names fail naming the user and the file", async () => {
  await using r = await rootfs({ "etc/passwd": PASSWD, "etc/group": GROUP });
  await assert.rejects(resolveUser(r.dir, "ghost"), (e: Error) => {
    assert.ok(isKind(e, "not_found"));
    assert.equal(e.message, `user "ghost" in ${r.dir}/etc/passwd: not found`);
    return true;
  });
  await assert.rejects(
    resolveUser(r.dir, "app:ghosts"),
    new RegExp(`group "ghosts" in ${r.dir}/etc/group: not found`),
  );
  await using empty = await rootfs({});
  await assert.rejects(
    resolveUser(empty.dir, "app"),
    /user "app": no \/etc\/passwd in rootfs .*: not found/,
  );
  await assert.rejects(resolveUser(undefined, "app"), /without a rootfs/);
});

Deno.test("invalid user strings are invalid arguments", async () => {
  for (const bad of ["a:b:c", ":5", "5:", "::"]) {
    await assert.rejects(resolveUser(undefined, bad), (e: Error) => {
      assert.ok(isKind(e, "invalid_argument"), bad);
      assert.match(e.message, /Invalid user/);
      return true;
    });
  }
  // Above int32 is not a uid (runc's limit) but a name to look up.
  await using r = await rootfs({ "etc/passwd": PASSWD });
  await assert.rejects(resolveUser(r.dir, "2147483648"), /user "2147483648" in/);
});

Deno.test("symlinks resolve inside the rootfs, never to the host's files", async () => {
  // /etc/passwd -> /etc/passwd.real (absolute: must mean the rootfs's), and
  // /etc/group -> ../../../../../../etc/group (climbing out: must stop at the rootfs).
  await using r = await rootfs(
    { "etc/passwd.real": "zed:x:77:88::/:/bin/sh\n", "etc/group.in": "g:x:5:zed\n" },
    { "etc/passwd": "/etc/passwd.real", "etc/group": "../../../../../../etc/group.in" },
  );
  assert.deepEqual(await resolveUser(r.dir, "zed"), { uid: 77, gid: 88, additionalGids: [88, 5] });
  // A link to the host's /etc/shadow resolves to the rootfs's (absent) one.
  await Deno.symlink("/etc/shadow", `${r.dir}/shadow-link`);
  assert.equal(await resolveInRoot(r.dir, "/shadow-link"), `${r.dir}/etc/shadow`);
  assert.equal(await readFileInRoot(r.dir, "/shadow-link"), undefined);
  // A directory symlink in the middle of the path.
  await Deno.symlink("/etc", `${r.dir}/cfg`);
  assert.equal(await resolveInRoot(r.dir, "/cfg/passwd"), `${r.dir}/etc/passwd.real`);
  // ".." at the root stays at the root.
  assert.equal(await resolveInRoot(r.dir, "/../../etc/group.in"), `${r.dir}/etc/group.in`);
});

Deno.test("symlink loops are reported, not followed forever", async () => {
  await using r = await rootfs({}, { "a": "/b", "b": "/a" });
  await assert.rejects(resolveInRoot(r.dir, "/a/x"), /too many symlinks/);
});

Deno.test("supplementary groups: by uid or name, absent files give none", async () => {
  await using r = await rootfs({ "etc/passwd": PASSWD, "etc/group": GROUP });
  assert.deepEqual(await supplementaryGroups(r.dir, 1000), [29, 50, 999]);
  assert.deepEqual(await supplementaryGroups(r.dir, "other"), [999]);
  assert.deepEqual(await supplementaryGroups(r.dir, 4242), []);
  assert.deepEqual(await supplementaryGroups(undefined, 0), []);
  await using nogroup = await rootfs({ "etc/passwd": PASSWD });
  assert.deepEqual(await supplementaryGroups(nogroup.dir, 1000), []);
});

Deno.test("resolveGroups takes numbers as is and looks names up", async () => {
  await using r = await rootfs({ "etc/group": GROUP });
  assert.deepEqual(await resolveGroups(r.dir, ["staff", "12", "docker"]), [50, 12, 999]);
  await assert.rejects(
    resolveGroups(r.dir, ["wheel"]),
    /group "wheel" in .*\/etc\/group: not found/,
  );
  assert.deepEqual(withPrimaryGid(5, [1, 2]), [5, 1, 2]);
  assert.deepEqual(withPrimaryGid(2, [1, 2]), [1, 2]);
});
