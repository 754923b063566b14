/**
 * What every benchmark script shares: the runtime's name, the `--quick` flag, and the one output
 * format `run.mjs` collects (`RESULT {json}` lines).
 * @module
 */
import process from "node:process";

/** One row of the results table. `run.mjs` adds the runtime and computes the ratios. */
export interface ResultRow {
  /** The benchmark's name, e.g. `"parser"`. */
  bench: string;
  /** What this row measures, e.g. `"stream, 16–112 B chunks"`. */
  case: string;
  /** The unit of `ours`, `floor` and `peer`, e.g. `"MB/s"`. Higher is better. */
  unit: string;
  /** Our implementation. */
  ours: number;
  /** The reference that ours is measured against from below or above (see the README). */
  floor?: number;
  /** The peer library. */
  peer?: number;
  /** Anything a reader needs to judge the row: which peer path, CPU use, sample counts. */
  note?: string;
}

/** The runtime running the script. */
export const runtime: "deno" | "bun" | "node" = "Bun" in globalThis
  ? "bun"
  : "Deno" in globalThis
  ? "deno"
  : "node";

/** The script's arguments (after the script path). */
export const args: string[] = process.argv.slice(2);

/** Whether this is a short smoke run. */
export const quick: boolean = args.includes("--quick");

/** Prints one result row for `run.mjs`. */
export function report(row: ResultRow): void {
  console.log(`RESULT ${JSON.stringify(row)}`);
}

/** The median of some numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Rounds to 3 significant digits: benchmark noise is larger than that. */
export function round(value: number): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(value))));
  return Number(value.toFixed(digits));
}
