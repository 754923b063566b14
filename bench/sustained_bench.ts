/**
 * The `Broker` at a sustained event rate (issue 13), over real loopback HTTP, side by side with
 * the floor and the peers in one run:
 *
 * - rate: 1,000 clients on one channel, 1,000 events of 100 B, each publish awaited and
 *   followed by `setImmediate` (one event per macrotask, as events that arrive from their own I/O
 *   callbacks do), deliveries/s from the first publish to the last client's last frame; the
 *   burst of `broker_bench.ts` (no turn of the event loop between publishes) on the same
 *   connections in the same run; ours, the floor, Hono `streamSSE` and better-sse on Node;
 * - stall: the same sustained round with one client of each 1,000 stopped: the others' rate
 *   and the server memory retained;
 * - latency: p50/p99 at 20 and 100 events/s to 1,000 clients, ours against the floor;
 * - idle: memory per idle connection at 5,000 connections (RSS after GC), ours against the
 *   floor; `--only=idle-parts` adds the variants that leave one part of ours out.
 *
 * Servers are the serve role of `broker_bench.ts` (and `better_sse_server.mjs`), clients one
 * `_fanout_client.ts` process (see `_conductor.ts`).
 *
 * Run alone: `deno run -A bench/sustained_bench.ts [--quick] [--only=rate,stall,latency,idle]`
 * or `bun bench/sustained_bench.ts`. `BENCH_STRACE=1` also counts the server's write system
 * calls over one extra round of each kind (Linux, needs `strace`; not timed).
 * @module
 */
import { spawn } from "node:child_process";
import process from "node:process";
import { args, median, quick, report, round, runtime } from "./_report.ts";
import {
  type Child,
  ctl,
  type Server,
  startClient,
  startServer,
  waitForCount,
} from "./_conductor.ts";

const CLIENTS = 1_000;
const EVENTS = quick ? 100 : 1_000;
/**
 * Timed rounds of the burst (median); a sustained round of 10^6 deliveries takes 20–40 s on
 * this machine, so it gets one timed round per target (after a warm-up) unless told otherwise.
 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (quick ? 1 : 3));
const SUSTAINED_ROUNDS = Number(process.env.BENCH_SUSTAINED_ROUNDS ?? 1);
const WARMUP = 100;
/**
 * `BENCH_TARGETS=ours,floor` runs only those (no rows: for a CPU profile of one of them, with
 * `BENCH_CPU_PROF=<dir>`); `BENCH_PACES=immediate` only the sustained rounds.
 */
const TARGETS = process.env.BENCH_TARGETS?.split(",");
const PACES = (process.env.BENCH_PACES?.split(",") ?? ["immediate", "burst"]) as (
  | "immediate"
  | "burst"
)[];
/** Events of a stalled round: half a sustained round is enough to compare rates. */
const STALL_EVENTS = EVENTS / 2;
const LATENCY_RATES = [20, 100];
const LATENCY_MS = quick ? 1_500 : 4_000;
const LATENCY_REPS = quick ? 1 : 2;
const IDLE_CLIENTS = quick ? 1_000 : 5_000;
const IDLE_REPS = quick ? 1 : 2;

const pct = (value: number): string => `${Math.round(value * 100)}%`;
const kb = (bytes: number): number => round(bytes / 1024);
const mb = (bytes: number): number => round(bytes / 2 ** 20);

interface Target {
  name: string;
  server: Server;
  path: string;
  variant: string;
  peer: boolean;
  set: number;
}

interface RoundResult {
  rate: number;
  serverCpu: number;
  clientCpu: number;
  /** Socket reads per client per event: how many chunks an event costs (at least). */
  readsPerEvent: number;
}

/** One timed round of `events` events to every reading client of `target`. */
async function oneRound(
  client: Child,
  target: Target,
  events: number,
  pace: string,
  readers = CLIENTS,
): Promise<RoundResult> {
  await client.ask({ cmd: "expect", set: target.set, frames: events });
  const { t0 } = await ctl<{ t0: number }>(
    target.server,
    `publish?variant=${target.variant}&events=${events}&pace=${pace}`,
    120_000,
  );
  const done = JSON.parse(await client.next(120_000));
  const cpu = await ctl<number>(target.server, "cpu");
  const ms = done.last - t0;
  return {
    rate: readers * events / (ms / 1000),
    serverCpu: cpu / ms,
    clientCpu: done.cpuMs / ms,
    readsPerEvent: done.reads / readers / events,
  };
}

/**
 * Write system calls of the server process over one round, by `strace -c` (Linux only; the
 * tracer slows the server down, so this round is not timed). Undefined when strace cannot run.
 */
async function traceWrites(
  client: Child,
  target: Target,
  events: number,
  pace: string,
): Promise<number | undefined> {
  const pid = await ctl<number>(target.server, "pid").catch(() => undefined);
  if (!pid) return undefined;
  const tracer = spawn("strace", [
    "-f",
    "-c",
    "-e",
    "trace=write,writev,sendto,sendmsg",
    "-p",
    String(pid),
  ], { stdio: ["ignore", "ignore", "pipe"] });
  let text = "";
  tracer.stderr!.setEncoding("utf8");
  tracer.stderr!.on("data", (chunk: string) => text += chunk);
  const exited = new Promise((resolve) => tracer.on("close", resolve));
  await new Promise((resolve) => setTimeout(resolve, 500)); // attached
  await oneRound(client, target, events, pace);
  tracer.kill("SIGINT");
  await exited;
  let calls = 0;
  for (const line of text.split("\n")) {
    const cells = line.trim().split(/\s+/);
    if (/^(write|writev|sendto|sendmsg)$/.test(cells.at(-1) ?? "")) {
      // % time, seconds, usecs/call, calls, [errors], syscall
      calls += Number(cells[3]);
    }
  }
  return calls > 0 ? calls / CLIENTS / events : undefined;
}

async function rate(): Promise<void> {
  const [server, node] = await Promise.all([startServer("fanout"), startServer("fanout", true)]);
  const client = startClient();
  try {
    const targets: Target[] = [
      { name: "ours", server, path: "/sse/ours", variant: "ours", peer: false, set: -1 },
      { name: "floor", server, path: "/sse/floor", variant: "floor", peer: false, set: -1 },
      { name: "hono", server, path: "/sse/hono", variant: "hono", peer: true, set: -1 },
      { name: "better-sse", server: node, path: "/sse", variant: "better", peer: true, set: -1 },
    ].filter((target) => !TARGETS || TARGETS.includes(target.name));
    for (const target of targets) {
      const answer = await client.ask({
        cmd: "connect",
        port: target.server.port,
        path: target.path,
        count: CLIENTS,
      }, 60_000);
      target.set = answer.set!;
      await waitForCount(target.server, target.variant, CLIENTS);
    }
    const results: Record<"immediate" | "burst", Record<string, RoundResult[]>> = {
      immediate: {},
      burst: {},
    };
    for (const pace of PACES) {
      const rounds = pace === "immediate" ? SUSTAINED_ROUNDS : ROUNDS;
      for (let r = 0; r <= rounds; r++) {
        for (const target of targets) {
          // The peers are several times slower: one timed round each keeps the run short.
          if (r > 1 && target.peer) continue;
          // Round 0 is a short warm-up: JIT the server path before it is timed.
          const result = await oneRound(client, target, r === 0 ? WARMUP : EVENTS, pace);
          if (r > 0) (results[pace][target.name] ??= []).push(result);
        }
      }
    }
    const syscalls: Record<string, string> = {};
    if (TARGETS) {
      // A profiling or debugging run (`BENCH_TARGETS`): no rows, which need every target.
      for (const pace of PACES) {
        for (const [name, found] of Object.entries(results[pace])) {
          console.log(`${pace} ${name}: ${round(median(found.map((r) => r.rate)))} deliveries/s`);
        }
      }
      return;
    }
    if (process.env.BENCH_STRACE) {
      for (const pace of PACES) {
        const parts: string[] = [];
        for (const target of targets.slice(0, 3)) {
          const calls = await traceWrites(client, target, Math.min(EVENTS, 200), pace);
          if (calls !== undefined) parts.push(`${target.name} ${calls.toFixed(3)}`);
        }
        syscalls[pace] = parts.length ? `; write syscalls per delivery ${parts.join(", ")}` : "";
      }
    }
    const common = `${CLIENTS} clients × ${EVENTS} events of 100 B`;
    for (const pace of PACES) {
      const of = (name: string, key: keyof RoundResult): number =>
        median(results[pace][name]!.map((result) => result[key]));
      const cpu = targets.map((t) =>
        `${t.name} ${pct(of(t.name, "serverCpu"))}/${pct(of(t.name, "clientCpu"))}`
      ).join(", ");
      const reads = targets.map((t) => `${t.name} ${of(t.name, "readsPerEvent").toFixed(3)}`)
        .join(", ");
      const what = pace === "immediate"
        ? "sustained, one event per macrotask (publish, then setImmediate)"
        : "burst, awaited publishes in one turn";
      report({
        bench: "sustained",
        case: `${what}, ${common}`,
        unit: "deliveries/s",
        ours: round(of("ours", "rate")),
        floor: round(of("floor", "rate")),
        peer: round(of("hono", "rate")),
        note: `peer: Hono streamSSE; better-sse (Node) ${round(of("better-sse", "rate"))}, ` +
          `ours / better-sse ${(of("ours", "rate") / of("better-sse", "rate")).toFixed(2)}x; ` +
          `client reads per delivery ${reads}${syscalls[pace] ?? ""}; ` +
          `CPU (server/client) ${cpu}; ours and floor median of ` +
          `${pace === "immediate" ? SUSTAINED_ROUNDS : ROUNDS} rounds, peers 1`,
      });
    }
    await stall(client, targets.slice(0, 2), results.immediate);
  } finally {
    client.kill();
    server.child.kill();
    node.child.kill();
  }
}

/** The sustained round again with one client of each set stopped: the others' rate, memory. */
async function stall(
  client: Child,
  targets: Target[],
  unstalled: Record<string, RoundResult[]>,
): Promise<void> {
  const found: Record<string, { rate: number; heap: number; rss: number; connected: number }> = {};
  for (const target of targets) {
    await client.ask({ cmd: "pause", set: target.set, index: 0 });
    const before = await ctl<{ rss: number; heap: number }>(target.server, "memory");
    const rates: number[] = [];
    for (let r = 0; r < SUSTAINED_ROUNDS; r++) {
      rates.push((await oneRound(client, target, STALL_EVENTS, "immediate", CLIENTS - 1)).rate);
    }
    const after = await ctl<{ rss: number; heap: number }>(target.server, "memory");
    const connected = await ctl<number>(target.server, `count?variant=${target.variant}`);
    found[target.name] = {
      rate: median(rates),
      heap: after.heap - before.heap,
      rss: after.rss - before.rss,
      connected,
    };
  }
  const ours = found.ours!;
  const floor = found.floor!;
  const base = (name: string): number => median(unstalled[name]!.map((result) => result.rate));
  report({
    bench: "sustained",
    case: `one stalled client of ${CLIENTS}, sustained: the others' rate`,
    unit: "deliveries/s",
    ours: round(ours.rate),
    floor: round(floor.rate),
    note: `${CLIENTS - 1} readers; against the same run with nobody stalled: ours ` +
      `${(ours.rate / base("ours")).toFixed(2)}x, floor ${
        (floor.rate / base("floor")).toFixed(2)
      }x; ` +
      `still connected: ours ${ours.connected}, floor ${floor.connected}`,
  });
  const owed = SUSTAINED_ROUNDS * STALL_EVENTS * 108;
  report({
    bench: "sustained",
    case: `one stalled client of ${CLIENTS}, owed ${kb(owed)} KiB: memory retained`,
    unit: "MiB, lower is better",
    ours: mb(ours.heap),
    floor: mb(floor.heap),
    note: `heap used + external after GC, after minus before (RSS: ours ${mb(ours.rss)}, ` +
      `floor ${mb(floor.rss)}); what it is owed fits in the kernel's socket buffers (about ` +
      `4.5 MiB), so this row shows nothing grows with 1,000 clients; the buffer bound itself ` +
      `is the broker bench's stall row (20 MiB owed)`,
  });
}

async function latency(): Promise<void> {
  const server = await startServer("latency");
  const client = startClient();
  try {
    const sets: Record<string, number> = {};
    for (const variant of ["ours", "floor"] as const) {
      const answer = await client.ask({
        cmd: "connect",
        port: server.port,
        path: `/sse/${variant}`,
        count: CLIENTS,
      }, 60_000);
      sets[variant] = answer.set!;
      await waitForCount(server, variant, CLIENTS);
    }
    for (const rate of LATENCY_RATES) {
      // Warm-up, then alternate so that both see the same machine.
      for (const variant of ["ours", "floor"] as const) {
        await ctl(server, `tick?variant=${variant}&rate=${rate}&ms=500`);
      }
      const samples: Record<string, Record<string, number>[]> = { ours: [], floor: [] };
      for (let rep = 0; rep < LATENCY_REPS; rep++) {
        for (const variant of ["ours", "floor"] as const) {
          await client.ask({ cmd: "latency", set: sets[variant], on: true });
          await ctl(server, `tick?variant=${variant}&rate=${rate}&ms=${LATENCY_MS}`);
          await new Promise((resolve) => setTimeout(resolve, 300)); // the last event's arrival
          samples[variant]!.push(
            await client.ask({ cmd: "latency", set: sets[variant], on: false }),
          );
        }
      }
      const of = (variant: string, p: string): number =>
        median(samples[variant]!.map((s) => s[p]!));
      report({
        bench: "sustained",
        case: `latency p99, ${CLIENTS} clients at ${rate} events/s`,
        unit: "ms, lower is better",
        ours: round(of("ours", "p99")),
        floor: round(of("floor", "p99")),
        note: `publish to receipt in the client process; p50 ours ${round(of("ours", "p50"))}, ` +
          `floor ${round(of("floor", "p50"))}; median of ${LATENCY_REPS} runs of ` +
          `${LATENCY_MS / 1000} s each (${samples.ours![0]!.count} samples a run)`,
      });
    }
  } finally {
    client.kill();
    server.child.kill();
  }
}

/** Memory of `count` idle connections of one variant, in a fresh server. */
async function idleOnce(variant: string, count: number): Promise<number> {
  const server = await startServer("idle");
  const client = startClient();
  try {
    // Warm the path first (a few connections, closed), so that code and pools are not counted.
    const warm = await client.ask({
      cmd: "connect",
      port: server.port,
      path: `/sse/${variant}`,
      count: 50,
    });
    await client.ask({ cmd: "close", set: warm.set });
    await waitForCount(server, variant, 0);
    const before = await ctl<{ rss: number }>(server, "memory");
    await client.ask({ cmd: "connect", port: server.port, path: `/sse/${variant}`, count }, 60_000);
    await waitForCount(server, variant, count);
    const after = await ctl<{ rss: number }>(server, "memory");
    return (after.rss - before.rss) / count;
  } finally {
    client.kill();
    server.child.kill();
  }
}

async function idle(variants: string[]): Promise<void> {
  const perConnection: Record<string, number[]> = {};
  for (let rep = 0; rep < IDLE_REPS; rep++) {
    for (const variant of variants) {
      (perConnection[variant] ??= []).push(await idleOnce(variant, IDLE_CLIENTS));
    }
  }
  const at = (variant: string): number => median(perConnection[variant]!);
  const runs = (variant: string): string => perConnection[variant]!.map(kb).join(", ");
  const extra = variants.filter((v) => v !== "ours" && v !== "floor")
    .map((v) => `${v} ${kb(at(v))} (${runs(v)})`).join("; ");
  report({
    bench: "sustained",
    case: `memory per idle connection, ${IDLE_CLIENTS} connections`,
    unit: "KiB, lower is better",
    ours: kb(at("ours")),
    floor: kb(at("floor")),
    note: `server RSS after GC, with minus without the connections, fresh server each, median ` +
      `of ${IDLE_REPS}; runs: ours ${runs("ours")}, floor ${runs("floor")}` +
      (extra ? `; ${extra}` : ""),
  });
}

const only = args.find((arg) => arg.startsWith("--only="))?.slice("--only=".length).split(",");
const PART_VARIANTS = ["ours-no-signal", "ours-no-timers", "ours-bare"];
const scenarios: Record<string, () => Promise<void>> = {
  rate,
  latency,
  idle: () => idle(["ours", "floor"]),
  "idle-parts": () =>
    idle([
      "ours",
      "floor",
      ...PART_VARIANTS,
      ...(runtime === "bun" ? ["floor-signal"] : []),
    ]),
};
for (const [name, run] of Object.entries(scenarios)) {
  if (only ? !only.includes(name) : name === "idle-parts") continue;
  const started = Date.now();
  await run();
  console.log(`${name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
}
process.exit(0);
