#!/usr/bin/env node
// Runs the Node suites (tests/node/*_test.ts) with Node's own test runner and prints its
// summary. Node 20 cannot run TypeScript by itself, so tsx (a devDependency) loads the sources
// as they are, unchanged.
//
//   node scripts/test-node.mjs                       # spec output
//   node scripts/test-node.mjs --junit=out.xml       # and a JUnit report
//   node scripts/test-node.mjs --test-name-pattern=Broker   # any other node --test flag

import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const files = readdirSync(new URL("../tests/node/", import.meta.url))
  .filter((name) => name.endsWith("_test.ts"))
  .sort()
  .map((name) => `tests/node/${name}`);
if (files.length === 0) {
  console.error("No Node test files in tests/node/");
  process.exit(1);
}

const reporters = ["--test-reporter=spec", "--test-reporter-destination=stdout"];
const passThrough = [];
for (const arg of process.argv.slice(2)) {
  if (arg.startsWith("--junit=")) {
    const path = resolve(arg.slice("--junit=".length));
    reporters.push("--test-reporter=junit", `--test-reporter-destination=${path}`);
  } else passThrough.push(arg);
}

const child = spawn(
  process.execPath,
  ["--import", "tsx", "--test", ...reporters, ...passThrough, ...files],
  { cwd: root, stdio: "inherit", env: { ...process.env, NO_COLOR: "1" } },
);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => child.kill(signal));
}
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
