#!/usr/bin/env node
// Runs every suite: the tests/ tree under Deno and under Bun, the same core under Node, and the
// JSDoc examples and the code blocks of README.md and docs/ under Deno. Installs what is missing
// first (npm packages; Chromium and redis-server from Debian when running as root). Ends with one
// line: "N passed, N failed".
//
//   npm test                  every suite
//   npm test -- deno bun      only these suites (deno, bun, node, doc)
//   npm test -- --filter=broker   only test files whose path contains "broker"
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const results = join(root, "test-results");
const args = process.argv.slice(2);
const filter = args.find((a) => a.startsWith("--filter="))?.slice("--filter=".length);
const chosen = args.filter((a) => !a.startsWith("--"));
const suites = chosen.length > 0 ? chosen : ["deno", "bun", "node", "doc"];

ensureNpmPackages();
ensureDebianPackages();
mkdirSync(results, { recursive: true });

const files = testFiles(join(root, "tests"))
  .filter((file) => !file.startsWith("tests/node/"))
  .filter((file) => !filter || file.includes(filter));
const env = { ...process.env, NO_COLOR: "1" };
const totals = [];

for (const suite of suites) {
  const started = Date.now();
  let counts;
  if ((suite === "deno" || suite === "bun") && files.length === 0) continue;
  if (suite === "deno") {
    const junit = fresh("deno");
    counts = withExit(
      await run(bin("deno"), ["test", "-A", `--junit-path=${junit}`, ...files]),
      junitCounts(junit),
    );
  } else if (suite === "bun") {
    const junit = fresh("bun");
    const argv = ["test", "--reporter=junit", `--reporter-outfile=${junit}`];
    counts = withExit(
      await run(bin("bun"), [...argv, ...files.map((f) => `./${f}`)]),
      junitCounts(junit),
    );
  } else if (suite === "node") {
    const script = join(root, "scripts", "test-node.mjs");
    if (!existsSync(script)) continue;
    const junit = fresh("node");
    counts = withExit(
      await run(process.execPath, [script, `--junit=${junit}`]),
      junitCounts(junit),
    );
  } else if (suite === "doc") {
    const junit = fresh("doc");
    // Every entry of the export map (their module docs), then every file of src/.
    const exports = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")).exports;
    const entries = Object.values(exports).map((f) => f.replace(/^\.\//, ""));
    // The guides' code blocks too: `deno test --doc` runs the ts blocks of markdown files.
    const guides = ["README.md", "docs/"].filter((f) => existsSync(join(root, f)));
    const argv = ["test", "-A", "--doc", `--junit-path=${junit}`, ...entries, "src/", ...guides];
    counts = withExit(await run(bin("deno"), argv), junitCounts(junit));
  } else {
    console.error(`Unknown suite \`${suite}\`: use deno, bun, node or doc`);
    process.exit(2);
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  console.log(`\n[${suite}] ${counts.passed} passed, ${counts.failed} failed (${seconds} s)\n`);
  totals.push(counts);
}

const passed = totals.reduce((sum, c) => sum + c.passed, 0);
const failed = totals.reduce((sum, c) => sum + c.failed, 0);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || totals.length === 0 ? 1 : 0);

/** Runs a command with inherited output; resolves with its exit code. */
function run(command, argv) {
  console.log(
    `\n$ ${relative(root, command) || command} ${
      argv.map((a) => relative(root, a) || a).join(" ")
    }`,
  );
  return new Promise((resolve) => {
    const child = spawn(command, argv, { cwd: root, env, stdio: "inherit" });
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

/** The path of a suite's JUnit report, with any report of an earlier run removed. */
function fresh(suite) {
  const path = join(results, `${suite}.xml`);
  rmSync(path, { force: true });
  return path;
}

/** A runner that exited non-zero with no failure counted failed all the same. */
function withExit(code, counts) {
  return code !== 0 && counts.failed === 0 ? { ...counts, failed: 1 } : counts;
}

/** Counts leaf test cases in a JUnit file; a missing file counts as one failure. */
function junitCounts(file) {
  if (!existsSync(file)) return { passed: 0, failed: 1 };
  const xml = readFileSync(file, "utf8");
  const cases = [
    ...xml.matchAll(/<testcase\b[^>]*?\bname="([^"]*)"[^>]*?(\/>|>[\s\S]*?<\/testcase>)/g),
  ]
    .map(([block, name]) => ({ name, block }));
  // Deno reports a describe() block as a test case of its own, its it()s as "block > it".
  const groups = new Set();
  for (const { name } of cases) {
    const parts = name.split(" &gt; ");
    for (let i = 1; i < parts.length; i++) groups.add(parts.slice(0, i).join(" &gt; "));
  }
  let passed = 0;
  let failed = 0;
  for (const { name, block } of cases) {
    if (/<(failure|error)\b/.test(block) && !groups.has(name)) failed++;
    else if (!groups.has(name) && !/<skipped\b/.test(block)) passed++;
  }
  // An error outside any test (a file that does not load) has no leaf to count it.
  const total = /<testsuites\b[^>]*\bfailures="(\d+)"/.exec(xml);
  if (failed === 0 && total && Number(total[1]) > 0) failed = Number(total[1]);
  return { passed, failed };
}

function testFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== "fixtures") out.push(...testFiles(path));
    } else if (name.endsWith("_test.ts")) out.push(relative(root, path));
  }
  return out;
}

function ensureNpmPackages() {
  if (existsSync(bin("deno")) && existsSync(bin("bun"))) return;
  console.log("Installing npm packages (the runtimes come from the deno and bun packages)…");
  // `npm install` installs exactly the locked versions and leaves the lockfile as it is (CI
  // checks both); unlike `npm ci`, it keeps a node_modules that is already there.
  const result = spawnSync("npm", ["install", "--no-audit", "--no-fund"], {
    cwd: root,
    stdio: "inherit",
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

function ensureDebianPackages() {
  const missing = [["chromium", "/usr/bin/chromium"], ["redis-server", "/usr/bin/redis-server"]]
    .filter(([, path]) => !existsSync(path))
    .map(([name]) => name);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0 || spawnSync("which", ["apt-get"]).status !== 0) {
    console.error(
      `Missing ${missing.join(" and ")}: install them (Debian: apt-get install ${
        missing.join(" ")
      }); the suites that need them will fail`,
    );
    return;
  }
  console.log(`Installing ${missing.join(" and ")} with apt-get…`);
  spawnSync("apt-get", ["update", "-qq"], { stdio: "inherit" });
  spawnSync("apt-get", ["install", "-y", "-qq", ...missing], {
    stdio: "inherit",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
}
