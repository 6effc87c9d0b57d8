import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { HelpRequested, parse, UsageError } from "./command.ts";

const OPTIONS = {
  rm: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  all: { type: "boolean", short: "a" },
  name: { type: "string", short: "n" },
  env: { type: "string", short: "e", multiple: true },
} as const;

/** What node:util's parseArgs makes of `args` (the rules the CLI's parser follows). */
function node(args: string[]) {
  const r = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  return { values: { ...r.values }, positionals: r.positionals };
}

Deno.test("parse agrees with node:util parseArgs on what it accepts", () => {
  const cases = [
    [],
    ["a", "b"],
    ["--rm", "img", "x"],
    ["-q", "--name", "n1", "pos"],
    ["--name=n=2", "-e", "A=1", "--env", "B=2", "-eC=3"],
    ["-qa", "x"],
    ["-qan", "val", "y"],
    ["-qanval"],
    ["x", "--", "-q", "--rm"],
    ["--name", "-"],
    ["--name="],
  ];
  for (const args of cases) {
    assert.deepEqual(parse(args, OPTIONS, "HELP"), node(args), args.join(" "));
  }
});

Deno.test("parse refuses what node:util parseArgs refuses, with its message", () => {
  const cases = [
    ["--nope"],
    ["-x"],
    ["-qx"],
    ["--name"],
    ["-n"],
    ["--rm=yes"],
    ["--name", "--rm"],
    ["-n", "-q"],
  ];
  for (const args of cases) {
    let want = "";
    try {
      node(args);
    } catch (e) {
      want = (e as Error).message.replace(/\. To specify a positional.*$/s, "");
    }
    assert.ok(want, `node accepts ${args.join(" ")}`);
    assert.throws(() => parse(args, OPTIONS, "HELP"), (e: unknown) => {
      assert.ok(e instanceof UsageError);
      assert.equal(e.message, `${want}\n\nHELP`, args.join(" "));
      return true;
    });
  }
});

Deno.test("parse raises HelpRequested for -h and --help", () => {
  for (const a of ["-h", "--help"]) {
    assert.throws(() => parse(["x", a], OPTIONS, "HELP"), (e: unknown) => {
      assert.ok(e instanceof HelpRequested);
      assert.equal(e.text, "HELP");
      return true;
    });
  }
});
