/**
 * One connection over real loopback HTTP: events per second of `EventStream` (publishing
 * 100-byte events as fast as possible, awaiting each publish) against a floor (a `ReadableStream`
 * that enqueues one pre-encoded frame per event, under backpressure) and Hono's `streamSSE`, on
 * the runtime's own server. The reader is `_load_client.ts` in a separate process.
 *
 * Run alone: `deno run -A bench/stream_bench.ts [--quick]` or `bun bench/stream_bench.ts`.
 * @module
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { EventStream } from "../mod.ts";
import { median, quick, report, round, runtime } from "./_report.ts";

const EVENTS = quick ? 100_000 : 1_000_000;
const SECONDS = quick ? 2 : 5;
const RUNS = quick ? 1 : 5;
/** 100 bytes of ASCII: the payload of every event. */
const PAYLOAD = "x".repeat(90) + "0123456789";
const FRAME = new TextEncoder().encode(`data: ${PAYLOAD}\n\n`);

type Handler = (request: Request) => Response | Promise<Response>;

interface Server {
  origin: string;
  close(): Promise<void>;
}

interface ClientResult {
  frames: number;
  bytes: number;
  reads: number;
  ms: number;
  cpuMs: number;
}

// deno-lint-ignore no-explicit-any
const g = globalThis as any;

function serve(handler: Handler): Promise<Server> {
  if (runtime === "bun") {
    const server = g.Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: handler });
    return Promise.resolve({
      origin: `http://127.0.0.1:${server.port}`,
      close: async () => await server.stop(true),
    });
  }
  return new Promise((resolve) => {
    const controller = new AbortController();
    const server = g.Deno.serve({
      port: 0,
      hostname: "127.0.0.1",
      signal: controller.signal,
      onListen({ port }: { port: number }) {
        resolve({
          origin: `http://127.0.0.1:${port}`,
          close: async () => {
            controller.abort();
            await server.finished;
          },
        });
      },
    }, handler);
  });
}

function ours(count: number): Response {
  const stream = new EventStream({ heartbeat: null });
  (async () => {
    try {
      for (let i = 0; i < count; i++) await stream.publish(PAYLOAD);
    } catch {
      // The client left (its time bound): nothing to do.
    }
    stream.close();
  })();
  return stream.response();
}

function floor(count: number): Response {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    // Fill up to the high-water mark on each pull: the runtime's backpressure decides the pace.
    pull(controller) {
      while (sent < count && controller.desiredSize! > 0) {
        controller.enqueue(FRAME);
        sent++;
      }
      if (sent === count) controller.close();
    },
  }, { highWaterMark: 64 });
  return new Response(body, { headers: { "Content-Type": "text/event-stream" } });
}

const hono = new Hono();
hono.get("/hono", (c) =>
  streamSSE(c, async (stream) => {
    const count = Number(c.req.query("n"));
    for (let i = 0; i < count && !stream.aborted; i++) await stream.writeSSE({ data: PAYLOAD });
  }));

const variants = ["ours", "floor", "hono"] as const;

function handler(request: Request): Response | Promise<Response> {
  const url = new URL(request.url);
  const count = Number(url.searchParams.get("n"));
  if (url.pathname === "/ours") return ours(count);
  if (url.pathname === "/floor") return floor(count);
  return hono.fetch(request);
}

const clientPath = fileURLToPath(new URL("./_load_client.ts", import.meta.url));

/**
 * Runs the load client in its own process. Bun by default, whatever the server runs on: its
 * `fetch` reads a fast stream at a fraction of a core, where Deno's needs a whole one (set
 * `BENCH_CLIENT=deno` to compare).
 */
function load(url: string, seconds: number): Promise<ClientResult> {
  const client = process.env.BENCH_CLIENT ?? "bun";
  const exe = client === runtime ? process.execPath : client;
  const args = client === "deno"
    ? ["run", "-A", clientPath, url, String(seconds)]
    : [clientPath, url, String(seconds)];
  return new Promise((resolve, reject) => {
    const child = spawn(exe, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout!.on("data", (data) => out += data);
    // A second bound in case the client hangs before its own timer starts (e.g. a stuck fetch).
    const kill = setTimeout(() => child.kill("SIGKILL"), (seconds + 10) * 1000);
    child.on("close", (code) => {
      clearTimeout(kill);
      if (code === 0) resolve(JSON.parse(out.trim().split("\n").at(-1)!));
      else reject(new Error(`Cannot run load client: it exited with code ${code}`));
    });
  });
}

const server = await serve(handler);
try {
  const rates: Record<string, number[]> = {};
  const clientCpu: Record<string, number[]> = {};
  const serverCpu: Record<string, number[]> = {};
  for (const variant of variants) {
    rates[variant] = [];
    clientCpu[variant] = [];
    serverCpu[variant] = [];
    // Warm-up: JIT the server path before it is timed.
    await load(`${server.origin}/${variant}?n=${EVENTS / 4}`, SECONDS);
  }
  for (let run = 0; run < RUNS; run++) {
    for (const variant of variants) {
      const cpuStart = process.cpuUsage();
      const result = await load(`${server.origin}/${variant}?n=${EVENTS}`, SECONDS);
      const cpu = process.cpuUsage(cpuStart);
      const frames = variant === "ours" ? result.frames - 1 : result.frames; // the opening `:`
      if (frames !== EVENTS && result.ms < SECONDS * 1000 * 0.95) {
        throw new Error(`Cannot benchmark \`${variant}\`: got ${frames} frames of ${EVENTS}`);
      }
      rates[variant].push(frames / (result.ms / 1000));
      clientCpu[variant].push(result.cpuMs / result.ms);
      // Server CPU over the client's whole life (its start-up included): an upper bound.
      serverCpu[variant].push((cpu.user + cpu.system) / 1000 / result.ms);
    }
  }
  const pct = (values: number[]): string => `${Math.round(median(values) * 100)}%`;
  report({
    bench: "stream",
    case: "one connection, 100 B events",
    unit: "events/s",
    ours: round(median(rates.ours)),
    floor: round(median(rates.floor)),
    peer: round(median(rates.hono)),
    note: `peer: Hono streamSSE; CPU (server/client) ours ${pct(serverCpu.ours)}/${
      pct(clientCpu.ours)
    }, floor ${pct(serverCpu.floor)}/${pct(clientCpu.floor)}, hono ${pct(serverCpu.hono)}/${
      pct(clientCpu.hono)
    }; ${EVENTS} events, median of ${RUNS}`,
  });
} finally {
  await server.close();
}
