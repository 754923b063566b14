#!/usr/bin/env node
/**
 * Summarises a `.cpuprofile` (Chrome format, as `deno --cpu-prof` and `bun --cpu-prof` write
 * it): the share of sampled time per category (idle, GC, the library's `src/`, the benchmark's
 * own code, `node_modules`, the runtime's built-ins) and the functions with the most self time.
 *
 *   BENCH_CPU_PROF=prof BENCH_TARGETS=ours BENCH_PACES=immediate \
 *     deno run -A bench/sustained_bench.ts --only=rate
 *   node bench/profile_summary.mjs prof/*.cpuprofile
 */
import { readFileSync } from "node:fs";

const TOP = 15;

function category(frame) {
  const { functionName: name, url } = frame;
  if (name === "(idle)") return "idle";
  if (name === "(garbage collector)") return "GC";
  if (name === "(program)" || name === "(root)") return "runtime (native, unattributed)";
  if (url.includes("/src/")) return "library (src/)";
  if (url.includes("/bench/")) return "benchmark code (floor, hubs, control)";
  if (url.includes("node_modules")) return "node_modules (peers)";
  return "runtime built-ins (streams, timers, HTTP, ext:)";
}

for (const path of process.argv.slice(2)) {
  const profile = JSON.parse(readFileSync(path, "utf8"));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map();
  // Time per sample: the gap to the next one (the profile's own deltas).
  const deltas = profile.timeDeltas ?? [];
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = deltas[i + 1] ?? 0;
    total += dt;
    self.set(id, (self.get(id) ?? 0) + dt);
  });
  const categories = new Map();
  const functions = new Map();
  for (const [id, time] of self) {
    const frame = byId.get(id).callFrame;
    const c = category(frame);
    categories.set(c, (categories.get(c) ?? 0) + time);
    const file = frame.url.split("/").slice(-2).join("/");
    const key = `${frame.functionName || "(anonymous)"} ${file}:${frame.lineNumber + 1}`;
    functions.set(key, (functions.get(key) ?? 0) + time);
  }
  const busy = total - (categories.get("idle") ?? 0);
  const pct = (t, of) => `${((100 * t) / of).toFixed(1)}%`;
  console.log(`${path}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy`);
  for (const [c, t] of [...categories].sort((a, b) => b[1] - a[1])) {
    if (c !== "idle") console.log(`  ${pct(t, busy).padStart(6)} of busy  ${c}`);
  }
  console.log(`  top ${TOP} functions by self time (share of busy):`);
  const top = [...functions].filter(([k]) => !k.startsWith("(idle)"))
    .sort((a, b) => b[1] - a[1]).slice(0, TOP);
  for (const [key, t] of top) console.log(`  ${pct(t, busy).padStart(6)}  ${key}`);
}
