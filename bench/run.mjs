#!/usr/bin/env node
/**
 * Runs every benchmark on Deno and Bun, each in its own bounded subprocess, and refreshes the
 * results table in bench/README.md.
 *
 *   node bench/run.mjs                 everything, then rewrite the table
 *   node bench/run.mjs --quick         a short smoke run: prints the table, leaves README alone
 *   node bench/run.mjs parser stream   only the benchmarks whose name contains a filter
 *   node bench/run.mjs --runtime=bun   one runtime only
 *   node bench/run.mjs --write / --no-write   force or skip the README update
 *
 * A benchmark is a script that prints one line per result row: `RESULT {json}`, where the JSON
 * holds `bench`, `case`, `unit`, `ours` and optionally `floor`, `peer` and `note` (see
 * `_report.ts`). Everything else it prints is passed through. Adding one is one line in BENCHES.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { cpus, totalmem } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);

/** The benchmarks, in run order. `timeout` bounds one run on one runtime, in seconds. */
const BENCHES = [
  { name: "parser", file: "parser_bench.ts", timeout: 150 },
  { name: "wire", file: "wire_bench.ts", timeout: 60 },
  { name: "stream", file: "stream_bench.ts", timeout: 150 },
  { name: "client", file: "client_bench.ts", timeout: 150 },
  { name: "broker", file: "broker_bench.ts", timeout: 180 },
  { name: "sustained", file: "sustained_bench.ts", timeout: 420 },
  { name: "redis", file: "redis_bench.ts", timeout: 150 },
  { name: "partitioned", file: "partitioned_bench.ts", timeout: 300 },
  { name: "chaos", file: "chaos_bench.ts", timeout: 300 },
];

function binary(name) {
  const local = join(root, "node_modules", ".bin", name);
  return existsSync(local) ? local : name;
}

const RUNTIMES = {
  deno: { bin: binary("deno"), args: (file, flags) => ["run", "-A", file, ...flags] },
  bun: { bin: binary("bun"), args: (file, flags) => [file, ...flags] },
};

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const write = argv.includes("--write") || (!quick && !argv.includes("--no-write"));
const only = argv.find((arg) => arg.startsWith("--runtime="))?.slice("--runtime=".length);
const filters = argv.filter((arg) => !arg.startsWith("--"));
const flags = quick ? ["--quick"] : [];
const runtimes = Object.keys(RUNTIMES).filter((name) => !only || name === only);
const benches = BENCHES.filter((bench) =>
  existsSync(join(here, bench.file)) &&
  (filters.length === 0 || filters.some((filter) => bench.name.includes(filter)))
);
if (benches.length === 0 || runtimes.length === 0) {
  console.error(`Cannot run benchmarks: nothing matches ${argv.join(" ") || "(no arguments)"}`);
  process.exit(2);
}

/** Runs one script on one runtime; resolves with its result rows. */
function runOne(bench, runtime) {
  const { bin, args } = RUNTIMES[runtime];
  const timeout = (quick ? Math.ceil(bench.timeout / 3) : bench.timeout) * 1000;
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(bin, args(join(here, bench.file), flags), {
      cwd: root,
      // The local runtimes first on PATH: a benchmark may start the other one (a load client).
      env: {
        ...process.env,
        NO_COLOR: "1",
        PATH: `${join(root, "node_modules", ".bin")}${delimiter}${process.env.PATH}`,
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const rows = [];
    let buffered = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeout);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (text) => {
      buffered += text;
      const lines = buffered.split("\n");
      buffered = lines.pop();
      for (const line of lines) {
        if (!line.startsWith("RESULT ")) {
          if (line.trim() !== "") console.log(`  ${line}`);
          continue;
        }
        try {
          const row = { ...JSON.parse(line.slice("RESULT ".length)), runtime };
          rows.push(row);
          console.log(
            `  ${row.case}: ours ${fmt(row.ours)} ${row.unit}` +
              (row.floor === undefined ? "" : `, floor ${fmt(row.floor)}`) +
              (row.peer === undefined ? "" : `, peer ${fmt(row.peer)}`),
          );
        } catch {
          console.error(`  Cannot read result line: ${line}`);
        }
      }
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const ok = code === 0 && !timedOut;
      if (!ok) {
        console.error(
          `  ${bench.name} on ${runtime} ${
            timedOut ? `timed out after ${timeout / 1000} s` : `failed with code ${code}`
          }`,
        );
      }
      console.log(`  (${seconds} s)`);
      resolve({ ok, rows });
    });
  });
}

function fmt(value) {
  if (value === undefined || value === null) return "–";
  return value >= 100 ? Math.round(value).toLocaleString("en-US") : String(value);
}

function ratio(a, b) {
  return a === undefined || b === undefined || b === 0 ? "–" : `${(a / b).toFixed(2)}x`;
}

function version(bin, args) {
  try {
    return execFileSync(bin, args, { encoding: "utf8" }).split("\n")[0].trim();
  } catch {
    return "unknown";
  }
}

const HEADER =
  "| Benchmark | Case | Runtime | Ours | Floor | Peer | Ours / floor | Ours / peer | Notes |";
const SEPARATOR = "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |";

function tableRow(row) {
  const cells = [
    row.bench,
    `${row.case} (${row.unit})`,
    row.runtime,
    fmt(row.ours),
    fmt(row.floor),
    fmt(row.peer),
    ratio(row.ours, row.floor),
    ratio(row.ours, row.peer),
    (row.note ?? "").replaceAll("|", "\\|"),
  ];
  return `| ${cells.join(" | ")} |`;
}

const START = "<!-- results:start -->";
const END = "<!-- results:end -->";

const allRows = [];
let failed = false;
const t0 = Date.now();
for (const bench of benches) {
  for (const runtime of runtimes) {
    console.log(`${bench.name} on ${runtime}${quick ? " (quick)" : ""}`);
    const { ok, rows } = await runOne(bench, runtime);
    failed ||= !ok;
    allRows.push({ bench: bench.name, runtime, ok, rows });
  }
}
console.log(`All done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);

const fresh = allRows.flatMap((run) => run.rows).map(tableRow);
const machine = `${cpus().length} cores (${cpus()[0]?.model.trim() ?? "unknown CPU"}), ` +
  `${Math.round(totalmem() / 2 ** 30)} GiB; ` +
  `${version(RUNTIMES.deno.bin, ["--version"])}; bun ${version(RUNTIMES.bun.bin, ["--version"])}`;
const stamp = `Last written ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC` +
  `${quick ? " (quick run)" : ""} on ${machine}.`;

let readme = "";
const readmePath = join(here, "README.md");
if (existsSync(readmePath)) readme = readFileSync(readmePath, "utf8");
const at = readme.indexOf(START);
const end = readme.indexOf(END);

/** The cells of a Markdown table row, trimmed (a formatter may have padded them). */
function cells(line) {
  return line.trim().slice(1, -1).split(/(?<!\\)\|/).map((cell) => cell.trim());
}

// Rows of benchmarks and runtimes that did not run this time are kept from the last table.
const ran = new Set(allRows.filter((run) => run.ok).map((run) => `${run.bench}|${run.runtime}`));
let kept = [];
if (at !== -1 && end > at) {
  kept = readme.slice(at, end).split("\n").filter((line) => line.trim().startsWith("|"))
    .map(cells)
    .filter(([bench, , runtime]) =>
      bench !== "Benchmark" && !/^-+$/.test(bench) && !ran.has(`${bench}|${runtime}`)
    )
    .map((row) => `| ${row.join(" | ")} |`);
}
const order = (line) => {
  const [bench, , runtime] = cells(line);
  const b = BENCHES.findIndex((x) => x.name === bench);
  return (b === -1 ? 99 : b) * 10 + (runtime === "deno" ? 0 : 1);
};
const lines = [...kept, ...fresh].map((line, i) => ({ line, i }))
  .sort((a, b) => order(a.line) - order(b.line) || a.i - b.i).map((x) => x.line);
const table = [stamp, "", HEADER, SEPARATOR, ...lines].join("\n");

console.log(`\n${table}\n`);
if (write) {
  if (at === -1 || end < at) {
    readme += `\n${START}\n${table}\n${END}\n`;
  } else {
    readme = `${readme.slice(0, at + START.length)}\n${table}\n${readme.slice(end)}`;
  }
  writeFileSync(readmePath, readme);
  // Keep the file as `deno fmt` wants it (aligned table), so that `deno fmt --check` stays clean.
  try {
    execFileSync(RUNTIMES.deno.bin, ["fmt", "--quiet", readmePath], { cwd: root, stdio: "ignore" });
  } catch {
    // Formatting is a nicety; the table is valid Markdown either way.
  }
  console.log(`Wrote ${fresh.length} rows to bench/README.md`);
}
process.exit(failed ? 1 : 0);
