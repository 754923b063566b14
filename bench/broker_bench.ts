/**
 * The `Broker` over real loopback HTTP, against a floor and peers, in four scenarios:
 *
 * - fan-out: 1,000 clients, 1,000 events of 100 bytes published as fast as possible
 *   (`await broker.publish()` in a loop), deliveries per second; the floor, Hono's `streamSSE`
 *   with a set of clients, and better-sse channels on Node (`better_sse_server.mjs`);
 * - memory per idle connection at 5,000 connections;
 * - publish-to-receive latency p50/p99 at 1,000 clients and 20 events/s;
 * - one stalled client among 10, owed 20 MiB: the server memory it costs.
 *
 * This script is the conductor. Servers run as child processes of it (this same file with
 * `--serve`, fresh for each memory measurement, with a GC the conductor can trigger), and all
 * clients of a scenario are one more process, `_fanout_client.ts`, on raw sockets. The conductor
 * drives servers over HTTP (`/ctl/...`) and the client over its stdin.
 *
 * Run alone: `deno run -A bench/broker_bench.ts [--quick]` or `bun bench/broker_bench.ts`.
 * @module
 */
import { setImmediate } from "node:timers";
import process from "node:process";
import { Hono } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import { Broker, type BrokerOptions } from "../mod.ts";
import { args, median, quick, report, round, runtime } from "./_report.ts";
import { ctl, startClient, startServer, waitForCount } from "./_conductor.ts";

/** 100 bytes of ASCII: the payload of every fan-out and stall event. */
const PAYLOAD = "x".repeat(90) + "0123456789";
const encoder = new TextEncoder();
const OPENING = encoder.encode(":\n\n");
const SSE_HEADERS = { "content-type": "text/event-stream", "cache-control": "no-cache" };
const now = (): number => performance.timeOrigin + performance.now();

const FANOUT_CLIENTS = 1_000;
const FANOUT_EVENTS = quick ? 200 : 1_000;
const FANOUT_ROUNDS = Number(process.env.BENCH_ROUNDS ?? (quick ? 1 : 3));
const FANOUT_WARMUP = 200;
const IDLE_CLIENTS = quick ? 1_000 : 5_000;
const IDLE_REPS = quick ? 1 : 2;
const LATENCY_CLIENTS = 1_000;
const LATENCY_RATE = 20;
const LATENCY_MS = quick ? 1_500 : 5_000;
const LATENCY_REPS = quick ? 1 : 2;
const STALL_READERS = 9;
const STALL_BYTES = (quick ? 5 : 20) * 2 ** 20;
/** Stall events are 1 KiB, so that the byte bound of a client's buffer is what holds. */
const STALL_EVENT = 1_024;
/** The stall scenario's buffers: the defaults, dropping frames rather than the client. */
const STALL_OPTIONS: BrokerOptions<Record<string, unknown>> = { overflow: "drop-oldest" };
const STALL_BOUND = 256 * STALL_EVENT;

// deno-lint-ignore no-explicit-any
const g = globalThis as any;

// ---------------------------------------------------------------------------------------------
// The server side: ours, the floor and Hono, on the runtime's own server.
// ---------------------------------------------------------------------------------------------

interface FloorClient {
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** Absolute index in the hub's log of the next frame this client gets. */
  next: number;
}

/**
 * The floor: what a fan-out costs with nothing but web streams. Every published frame is one
 * shared `Uint8Array` in a log; each client's `ReadableStream` is enqueued from the log while
 * its `desiredSize` is positive (so it has the runtime's backpressure), and its `pull` takes up
 * where it stopped. No formatting, no encoding, no coalescing, no timers, no bound.
 */
class FloorHub {
  #log: Uint8Array[] = [];
  #base = 0;
  #clients = new Set<FloorClient>();
  #sinceTrim = 0;

  get size(): number {
    return this.#clients.size;
  }

  response(): Response {
    const client = { next: this.#base + this.#log.length } as FloorClient;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        client.controller = controller;
        controller.enqueue(OPENING);
        this.#clients.add(client);
      },
      pull: () => this.#pump(client),
      cancel: () => {
        this.#clients.delete(client);
      },
    }, { highWaterMark: 64 });
    return new Response(body, { headers: SSE_HEADERS });
  }

  publish(frame: Uint8Array): void {
    this.#log.push(frame);
    for (const client of this.#clients) this.#pump(client);
    // Frames every client has passed are let go, as any real floor would.
    if (++this.#sinceTrim >= 1_024) this.trim();
  }

  trim(): void {
    this.#sinceTrim = 0;
    let min = this.#base + this.#log.length;
    for (const client of this.#clients) if (client.next < min) min = client.next;
    if (min > this.#base) {
      this.#log = this.#log.slice(min - this.#base);
      this.#base = min;
    }
  }

  #pump(client: FloorClient): void {
    const controller = client.controller;
    const end = this.#base + this.#log.length;
    while (client.next < end && controller.desiredSize! > 0) {
      controller.enqueue(this.#log[client.next++ - this.#base]);
    }
  }
}

/** Hono's `streamSSE`, fanned out by hand: a set of open streams, one `writeSSE` per client. */
class HonoHub {
  clients = new Set<SSEStreamingApi>();
  app = new Hono();

  constructor() {
    this.app.get("/sse/hono", (c) =>
      streamSSE(c, async (stream) => {
        this.clients.add(stream);
        await stream.write(":\n\n");
        await new Promise<void>((resolve) => stream.onAbort(resolve));
        this.clients.delete(stream);
      }));
  }

  /** One event to every client; waits until every client's writer took it. */
  publish(data: string): Promise<unknown> {
    const writes: Promise<void>[] = [];
    for (const stream of this.clients) writes.push(stream.writeSSE({ data }));
    return Promise.all(writes);
  }
}

type Variant = "ours" | "floor" | "hono";

/**
 * Idle-memory variants of ours (`sustained_bench.ts --only=idle-parts`), each a broker of its
 * own, so that one part of a connection's cost is left out at a time: the listener on
 * `request.signal` (`subscribe()` + `stream.response()` instead of `broker.response()`), the
 * heartbeat and write-timeout timers (both `null`), or both.
 */
const PARTS: Record<string, { timers: boolean; signal: boolean }> = {
  "ours-no-signal": { timers: true, signal: false },
  "ours-no-timers": { timers: false, signal: true },
  "ours-bare": { timers: false, signal: false },
};

function serveRole(): void {
  const scenario = args[args.indexOf("--serve") + 1];
  const options: BrokerOptions<Record<string, unknown>> = scenario === "fanout"
    // A burst of 1,000 events with no turn of the event loop in between must fit in a buffer.
    ? { bufferSize: 2_048 }
    : scenario === "stall"
    ? STALL_OPTIONS
    : {};
  const broker = new Broker(options);
  const parts = new Map(
    Object.entries(PARTS).map(([name, part]) => [name, {
      ...part,
      broker: new Broker(
        part.timers ? options : { ...options, heartbeat: null, writeTimeout: null },
      ),
    }]),
  );
  const floor = new FloorHub();
  /** The floor plus a listener on `request.signal`, as ours has on Bun: what the listener costs. */
  let floorSignals = 0;
  const hono = new HonoHub();
  let cpuStart = process.cpuUsage();

  const count = (variant: string): number =>
    variant === "ours"
      ? broker.clientCount()
      : variant === "floor"
      ? floor.size
      : variant === "floor-signal"
      ? floorSignals
      : parts.get(variant)?.broker.clientCount() ?? hono.clients.size;

  /**
   * `events` events of 100 B. A burst awaits each publish only (no turn of the event loop in
   * between); `immediate` also waits for `setImmediate` after each, so that every event is
   * published in its own macrotask, as one that arrives from its own I/O callback is.
   */
  async function publishBurst(variant: Variant, events: number, pace: string): Promise<void> {
    const turn = pace === "immediate"
      ? (): Promise<unknown> => new Promise((resolve) => setImmediate(resolve))
      : null;
    if (variant === "ours") {
      for (let i = 0; i < events; i++) {
        await broker.publish("all", PAYLOAD);
        if (turn) await turn();
      }
    } else if (variant === "floor") {
      for (let i = 0; i < events; i++) {
        // One array per event, shared by every client (as the broker's own frame is).
        floor.publish(encoder.encode(`data: ${PAYLOAD}\n\n`));
        await Promise.resolve(); // as `await publish()` does: a turn of the microtask queue
        if (turn) await turn();
      }
    } else {
      for (let i = 0; i < events; i++) {
        await hono.publish(PAYLOAD);
        if (turn) await turn();
      }
    }
  }

  /** Events stamped with their send time, at a steady rate: an unsaturated server. */
  async function tick(variant: Variant, rate: number, ms: number): Promise<number> {
    const start = performance.now();
    let sent = 0;
    while (sent < ms * rate / 1000) {
      const data = now().toFixed(3).padEnd(100, "x");
      if (variant === "ours") await broker.publish("all", data);
      else floor.publish(encoder.encode(`data: ${data}\n\n`));
      sent++;
      // On a fixed schedule, so that a slow fan-out does not lower the rate.
      const wait = start + sent * 1000 / rate - performance.now();
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
    }
    return sent;
  }

  /** `bytes` of 1 KiB events, yielding to I/O every few events so that readers keep up. */
  async function publishPaced(variant: Variant, bytes: number): Promise<number> {
    const data = "y".repeat(STALL_EVENT - 8);
    const events = Math.ceil(bytes / STALL_EVENT);
    for (let i = 0; i < events; i++) {
      if (variant === "ours") await broker.publish("all", data);
      else floor.publish(encoder.encode(`data: ${data}\n\n`));
      if (i % 16 === 15) await new Promise((resolve) => setImmediate(resolve));
    }
    floor.trim();
    return events;
  }

  async function memory(): Promise<Record<string, number>> {
    for (let i = 0; i < 3; i++) {
      if (runtime === "bun") g.Bun.gc(true);
      else g.gc?.();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const usage = runtime === "deno" ? g.Deno.memoryUsage() : process.memoryUsage();
    return { rss: usage.rss, heap: usage.heapUsed + usage.external };
  }

  async function control(url: URL): Promise<unknown> {
    const variant = url.searchParams.get("variant") as Variant;
    const number = (name: string): number => Number(url.searchParams.get(name));
    switch (url.pathname) {
      case "/ctl/pid":
        return process.pid;
      case "/ctl/count":
        return count(variant);
      case "/ctl/publish": {
        cpuStart = process.cpuUsage();
        const t0 = now();
        await publishBurst(variant, number("events"), url.searchParams.get("pace") ?? "burst");
        return { t0, publishMs: now() - t0 };
      }
      case "/ctl/cpu": {
        const cpu = process.cpuUsage(cpuStart);
        return (cpu.user + cpu.system) / 1000;
      }
      case "/ctl/tick":
        return await tick(variant, number("rate"), number("ms"));
      case "/ctl/stall":
        return await publishPaced(variant, number("bytes"));
      case "/ctl/memory":
        return await memory();
    }
    throw new Error(`Cannot answer: no control ${url.pathname}`);
  }

  const handler = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    if (url.pathname === "/sse/ours") return broker.response("all", request);
    if (url.pathname === "/sse/floor") return floor.response();
    if (url.pathname === "/sse/floor-signal") {
      floorSignals++;
      request.signal.addEventListener("abort", () => floorSignals--, { once: true });
      return floor.response();
    }
    const part = parts.get(url.pathname.slice("/sse/".length));
    if (part) {
      return part.signal
        ? part.broker.response("all", request)
        : part.broker.subscribe("all").response();
    }
    if (url.pathname === "/sse/hono") return await hono.app.fetch(request);
    return Response.json(await control(url));
  };

  const listening = (port: number): void => console.log(`LISTEN ${port}`);
  if (runtime === "bun") {
    // No idle timeout: a connection of a variant that waits for its turn must stay open.
    const server = g.Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, fetch: handler });
    listening(server.port);
  } else {
    g.Deno.serve({
      port: 0,
      hostname: "127.0.0.1",
      onListen: ({ port }: { port: number }) => listening(port),
    }, handler);
  }
  // The conductor kills this process; this is the bound in case it cannot.
  setTimeout(() => process.exit(3), 300_000).unref?.();
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}

// ---------------------------------------------------------------------------------------------
// The conductor.
// ---------------------------------------------------------------------------------------------

const pct = (value: number): string => `${Math.round(value * 100)}%`;
const kb = (bytes: number): number => round(bytes / 1024);
const mb = (bytes: number): number => round(bytes / 2 ** 20);

async function fanout(): Promise<void> {
  const [server, node] = await Promise.all([startServer("fanout"), startServer("fanout", true)]);
  const client = startClient();
  try {
    const targets = [
      { name: "ours", server, path: "/sse/ours", variant: "ours", peer: false },
      { name: "floor", server, path: "/sse/floor", variant: "floor", peer: false },
      { name: "hono", server, path: "/sse/hono", variant: "hono", peer: true },
      { name: "better-sse", server: node, path: "/sse", variant: "better", peer: true },
    ];
    const sets: Record<string, number> = {};
    for (const target of targets) {
      const answer = await client.ask({
        cmd: "connect",
        port: target.server.port,
        path: target.path,
        count: FANOUT_CLIENTS,
      }, 60_000);
      sets[target.name] = answer.set;
      await waitForCount(target.server, target.variant, FANOUT_CLIENTS);
    }
    const rates: Record<string, number[]> = {};
    const serverCpu: Record<string, number[]> = {};
    const clientCpu: Record<string, number[]> = {};
    for (let round = 0; round <= FANOUT_ROUNDS; round++) {
      for (const target of targets) {
        // The peers are 4–10 times slower: one timed round each keeps the run short.
        if (round > 1 && target.peer) continue;
        // Round 0 is a short warm-up: JIT the server path before it is timed.
        const events = round === 0 ? FANOUT_WARMUP : FANOUT_EVENTS;
        await client.ask({ cmd: "expect", set: sets[target.name], frames: events });
        const { t0, publishMs } = await ctl<{ t0: number; publishMs: number }>(
          target.server,
          `publish?variant=${target.variant}&events=${events}`,
        );
        const done = JSON.parse(await client.next(60_000));
        const cpu = await ctl<number>(target.server, "cpu");
        if (process.env.BENCH_DEBUG) {
          console.error(
            `${target.name}: publish ${publishMs.toFixed(0)} ms, first ${
              (done.first - t0).toFixed(0)
            } ms, last ${(done.last - t0).toFixed(0)} ms, server CPU ${cpu.toFixed(0)} ms`,
          );
        }
        if (round === 0) continue;
        const ms = done.last - t0;
        (rates[target.name] ??= []).push(FANOUT_CLIENTS * FANOUT_EVENTS / (ms / 1000));
        (serverCpu[target.name] ??= []).push(cpu / ms);
        (clientCpu[target.name] ??= []).push(done.cpuMs / ms);
      }
    }
    const cpuNote = targets.map((t) =>
      `${t.name} ${pct(median(serverCpu[t.name]))}/${pct(median(clientCpu[t.name]))}`
    ).join(", ");
    const common = `${FANOUT_CLIENTS} clients × ${FANOUT_EVENTS} events`;
    report({
      bench: "broker",
      case: `fan-out, ${common}`,
      unit: "deliveries/s",
      ours: round(median(rates.ours)),
      floor: round(median(rates.floor)),
      peer: round(median(rates.hono)),
      note: `peer: Hono streamSSE, awaiting each event's writes; CPU (server/client) ${cpuNote}; ` +
        `ours and floor median of ${FANOUT_ROUNDS} rounds, peers 1`,
    });
    report({
      bench: "broker",
      case: `fan-out vs better-sse on Node, ${common}`,
      unit: "deliveries/s",
      ours: round(median(rates.ours)),
      floor: round(median(rates.floor)),
      peer: round(median(rates["better-sse"])),
      note: "peer: better-sse channel on Node 20 (its frames carry `event:` and `id:`, " +
        "about 160 B); same run as the row above",
    });
  } finally {
    client.kill();
    server.child.kill();
    node.child.kill();
  }
}

/** Memory of `count` idle connections of one variant, in a fresh server. */
async function idleOnce(variant: Variant, count: number): Promise<number> {
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

async function idle(): Promise<void> {
  const perConnection: Record<string, number[]> = { ours: [], floor: [] };
  for (let rep = 0; rep < IDLE_REPS; rep++) {
    for (const variant of ["ours", "floor"] as const) {
      perConnection[variant].push(await idleOnce(variant, IDLE_CLIENTS));
    }
  }
  report({
    bench: "broker",
    case: `memory per idle connection, ${IDLE_CLIENTS} connections`,
    unit: "KiB, lower is better",
    ours: kb(median(perConnection.ours)),
    floor: kb(median(perConnection.floor)),
    note: `server RSS after GC, with minus without the connections, fresh server each; ` +
      `runs: ours ${perConnection.ours.map(kb).join(", ")}, floor ${
        perConnection.floor.map(kb).join(", ")
      }`,
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
        count: LATENCY_CLIENTS,
      }, 60_000);
      sets[variant] = answer.set;
      await waitForCount(server, variant, LATENCY_CLIENTS);
    }
    // Warm-up, then alternate so that both see the same machine.
    for (const variant of ["ours", "floor"] as const) {
      await ctl(server, `tick?variant=${variant}&rate=${LATENCY_RATE}&ms=500`);
    }
    const stats: Record<string, Record<string, number>> = {};
    let cpu = 0;
    for (let rep = 0; rep < LATENCY_REPS; rep++) {
      for (const variant of ["ours", "floor"] as const) {
        await client.ask({ cmd: "latency", set: sets[variant], on: true });
        const started = process.cpuUsage();
        await ctl(server, `tick?variant=${variant}&rate=${LATENCY_RATE}&ms=${LATENCY_MS}`);
        await new Promise((resolve) => setTimeout(resolve, 200)); // the last event's arrival
        const used = process.cpuUsage(started);
        cpu = Math.max(cpu, used.user + used.system);
        stats[variant] = await client.ask({ cmd: "latency", set: sets[variant], on: false });
      }
    }
    const { ours, floor } = stats;
    for (const p of ["p50", "p99"] as const) {
      report({
        bench: "broker",
        case: `latency ${p}, ${LATENCY_CLIENTS} clients at ${LATENCY_RATE} events/s`,
        unit: "ms, lower is better",
        ours: round(ours[p]),
        floor: round(floor[p]),
        note: `publish to receipt in the client process; ${ours.count} and ${floor.count} ` +
          `samples; max ours ${round(ours.max)}, floor ${round(floor.max)}`,
      });
    }
  } finally {
    client.kill();
    server.child.kill();
  }
}

/** Extra server memory while one client of 10 stalls and is owed `bytes`. */
interface Memory {
  rss: number;
  heap: number;
}

async function stallOnce(variant: Variant): Promise<Record<string, number>> {
  const server = await startServer("stall");
  const client = startClient();
  try {
    const path = `/sse/${variant}`;
    const readers = await client.ask({
      cmd: "connect",
      port: server.port,
      path,
      count: STALL_READERS,
    });
    const stalled = await client.ask({ cmd: "connect", port: server.port, path, count: 1 });
    await client.ask({ cmd: "pause", set: stalled.set, index: 0 });
    await waitForCount(server, variant, STALL_READERS + 1);
    const before = await ctl<Memory>(server, "memory");
    const events = Math.ceil(STALL_BYTES / STALL_EVENT);
    await client.ask({ cmd: "expect", set: readers.set, frames: events });
    const sent = await ctl<number>(server, `stall?variant=${variant}&bytes=${STALL_BYTES}`);
    if (sent !== events) throw new Error(`Cannot benchmark: sent ${sent} events, not ${events}`);
    await client.next(60_000); // every reader has every event
    const after = await ctl<Memory>(server, "memory");
    const connected = await ctl<number>(server, `count?variant=${variant}`);
    if (connected !== STALL_READERS + 1) {
      throw new Error(`Cannot benchmark: the stalled ${variant} client was dropped`);
    }
    return { rss: after.rss - before.rss, heap: after.heap - before.heap, events };
  } finally {
    client.kill();
    server.child.kill();
  }
}

async function stall(): Promise<void> {
  const ours = await stallOnce("ours");
  const floor = await stallOnce("floor");
  report({
    bench: "broker",
    case: `one stalled client of 10, owed ${mb(STALL_BYTES)} MiB`,
    unit: "MiB retained, lower is better",
    ours: mb(ours.heap),
    floor: mb(floor.heap),
    note: `heap used + external after GC, after minus before publishing ${ours.events} events ` +
      `of 1 KiB (RSS: ours ${mb(ours.rss)}, floor ${mb(floor.rss)}, mostly allocator churn, ` +
      `see below); ours: "drop-oldest", bound 256 frames (${kb(STALL_BOUND)} KiB); about ` +
      `4.5 MiB of it waits in the kernel's socket buffers`,
  });
}

if (args.includes("--serve")) {
  serveRole();
} else {
  const only = args.find((arg) => arg.startsWith("--only="))?.slice("--only=".length);
  const scenarios = { fanout, idle, latency, stall };
  for (const [name, run] of Object.entries(scenarios)) {
    if (only && !only.split(",").includes(name)) continue;
    const started = Date.now();
    await run();
    console.log(`${name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  process.exit(0);
}
