/**
 * Encoding cost of many-line data: `formatEvent` on 1 MiB and 10 MB of nothing but line breaks
 * (LF, CRLF, lone CR, mixed), the worst case for a splitter. MB/s of data, median of several
 * runs; the Notes give the time of one call, which is the figure we bound (1 MiB of LF in about
 * 20 ms or less), and that of the same size on one line for scale (no split: a string
 * concatenation that copies nothing, so it is no floor).
 * Prints `RESULT` rows for `run.mjs`.
 *
 * Run alone: `deno run -A bench/wire_bench.ts [--quick]` or `bun bench/wire_bench.ts`.
 * @module
 */
import { formatEvent } from "../mod.ts";
import { median, quick, report, round } from "./_report.ts";

const MiB = 1_048_576;
const CASES: [string, string, number][] = [
  ["1 MiB of LF", "\n", MiB],
  ["1 MiB of CRLF", "\r\n", MiB],
  ["1 MiB of lone CR", "\r", MiB],
  ["1 MiB of mixed line ends and text", "a\r\n\n\rb\n", MiB],
  ["10 MB of LF", "\n", 10_000_000],
];

/** Median ms of one call of `fn` over `runs` runs, after one warm-up call. */
function time(fn: () => string, runs: number): number {
  let sink = fn().length;
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    sink += fn().length;
    times.push(performance.now() - start);
  }
  if (sink < 0) throw new Error("unreachable");
  return median(times);
}

for (const [name, unit, size] of CASES) {
  const data = unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
  const line = "x".repeat(size);
  const runs = quick ? 3 : size > MiB ? 7 : 21;
  const ours = time(() => formatEvent({ data }), runs);
  const oneLine = time(() => formatEvent({ data: line }), runs);
  const mbps = (ms: number): number => round(size / 1e6 / (ms / 1e3));
  report({
    bench: "wire",
    case: `formatEvent, ${name}`,
    unit: "MB/s",
    ours: mbps(ours),
    note: `${round(ours)} ms per call (the same size on one line: ${round(oneLine)} ms); ` +
      `median of ${runs}`,
  });
}
