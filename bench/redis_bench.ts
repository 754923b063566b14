/**
 * The Redis bridge: cross-worker fan-out against the in-memory broker, publish-to-receive
 * latency through Redis at a steady rate, and where a publish's time goes. Starts its own
 * `redis-server` (no persistence) on a free port of 127.0.0.1. Prints `RESULT` rows for
 * `run.mjs`.
 *
 * The three "workers" are three brokers in this process, each with its own pair of Redis
 * connections (npm `redis`), so the numbers count every Redis round trip and every decode a
 * worker does, but the workers share one CPU: on real workers (processes) fan-out runs in
 * parallel. Clients are broker streams read in-process (no HTTP), so what is measured is the
 * bridge and the broker, not the network stack.
 *
 * Run alone: `deno run -A bench/redis_bench.ts [--quick]` or `bun bench/redis_bench.ts`.
 * @module
 */
import { createClient } from "redis";
import { Broker, type EventStream } from "../mod.ts";
import { redisBridge } from "../src/redis/mod.ts";
import { startRedis } from "../tests/redis/_redis_server.ts";
import { quick, report, round } from "./_report.ts";

const CLIENTS = quick ? 300 : 1_000;
const EVENTS = quick ? 200 : 1_000;
const RATE = 100; // events per second for the latency run
const LATENCY_EVENTS = quick ? 100 : 500;
const WORKERS = 3;

const redis = await startRedis();
const connections: { destroy(): void; sendCommand(args: string[]): Promise<unknown> }[] = [];

async function bridged(prefix: string): Promise<Broker> {
  const client = createClient({ url: redis.url });
  const subscriber = client.duplicate();
  for (const c of [client, subscriber]) c.on("error", () => {});
  await Promise.all([client.connect(), subscriber.connect()]);
  connections.push(client, subscriber);
  const broker = new Broker({
    heartbeat: null,
    writeTimeout: null,
    bufferSize: EVENTS + 16,
    bufferBytes: 64 * 1024 * 1024,
    bridge: redisBridge({ client, subscriber, prefix }),
  });
  await broker.publish("warmup", "x");
  return broker;
}

/** Reads a stream, calling `onFrame` with the arrival time and the number in `data: <n>`. */
function drain(stream: EventStream, onFrame?: (n: number, at: number) => void): Promise<number> {
  const reader = stream.readable.getReader();
  const decoder = new TextDecoder();
  let frames = 0;
  return (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return frames;
      const at = performance.now();
      const text = decoder.decode(value);
      for (const match of text.matchAll(/^data: (\d+)$/gm)) {
        frames++;
        onFrame?.(Number(match[1]), at);
      }
    }
  })();
}

/** Publishes `count` events with at most `window` in flight; resolves when all are received. */
async function fanOut(
  publishers: Broker[],
  streams: EventStream[],
  count: number,
): Promise<number> {
  let received = 0;
  const total = count * streams.length;
  let done!: () => void;
  const all = new Promise<void>((resolve) => done = resolve);
  const readers = streams.map((s) =>
    drain(s, () => {
      if (++received === total) done();
    })
  );
  const started = performance.now();
  let next = 0;
  const window = 64;
  await Promise.all(Array.from({ length: window }, async () => {
    while (next < count) {
      const n = next++;
      await publishers[n % publishers.length].publish("fan", String(n));
    }
  }));
  await all;
  const elapsed = performance.now() - started;
  for (const s of streams) s.close();
  await Promise.all(readers);
  return elapsed;
}

/**
 * Publishes at `RATE` on rotating brokers; returns the sorted publish-to-receive times at every
 * client, and at the first client to get each event (the hop alone, without the queueing of
 * 1,000 readers in one process).
 */
async function latency(brokers: Broker[]): Promise<{ all: number[]; first: number[] }> {
  const sentAt = new Map<number, number>();
  const latencies: number[] = [];
  const firsts = new Map<number, number>();
  const streams = Array.from(
    { length: CLIENTS },
    (_, i) => brokers[i % brokers.length].subscribe("steady"),
  );
  const readers = streams.map((s) =>
    drain(s, (n, at) => {
      const ms = at - sentAt.get(n)!;
      latencies.push(ms);
      if (!firsts.has(n)) firsts.set(n, ms);
    })
  );
  const interval = 1000 / RATE;
  const start = performance.now();
  const publishes: Promise<void>[] = [];
  for (let n = 0; n < LATENCY_EVENTS; n++) {
    const wait = start + n * interval - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    sentAt.set(n, performance.now());
    publishes.push(brokers[n % brokers.length].publish("steady", String(n)));
  }
  await Promise.all(publishes);
  const deadline = performance.now() + 5_000;
  while (latencies.length < LATENCY_EVENTS * CLIENTS && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  for (const s of streams) s.close();
  await Promise.all(readers);
  const sort = (values: number[]) => values.sort((a, b) => a - b);
  return { all: sort(latencies), first: sort([...firsts.values()]) };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

try {
  // 1. Fan-out: the same load on one in-memory broker and on three bridged brokers.
  const memory = new Broker({
    heartbeat: null,
    writeTimeout: null,
    bufferSize: EVENTS + 16,
    bufferBytes: 64 * 1024 * 1024,
  });
  const memoryMs = await fanOut(
    [memory],
    Array.from({ length: CLIENTS }, () => memory.subscribe("fan")),
    EVENTS,
  );
  await memory.close();
  const prefix = `bench${Date.now()}:`;
  const workers = await Promise.all(Array.from({ length: WORKERS }, () => bridged(prefix)));
  const streams = Array.from(
    { length: CLIENTS },
    (_, i) => workers[i % WORKERS].subscribe("fan"),
  );
  const redisMs = await fanOut(workers, streams, EVENTS);
  const frames = CLIENTS * EVENTS;
  report({
    bench: "redis",
    case: `fan-out, ${EVENTS} events to ${CLIENTS} clients`,
    unit: "frames/s",
    ours: round(frames / (redisMs / 1000)),
    floor: round(frames / (memoryMs / 1000)),
    note: `ours: ${WORKERS} bridged brokers in one process; floor: one in-memory broker (${
      round(memoryMs)
    } ms vs ${round(redisMs)} ms)`,
  });

  // 2. Latency at a steady rate: publish on a rotating worker, receive on every client. The
  // floor is the same run on one in-memory broker: the part of the latency that is the
  // clients' own reading (1,000 streams in one process), not Redis.
  const bridgedLatency = await latency(workers);
  const memoryBroker = new Broker({ heartbeat: null, writeTimeout: null });
  const memoryLatency = await latency([memoryBroker]);
  await memoryBroker.close();
  for (const [p, label] of [[0.5, "p50"], [0.99, "p99"]] as const) {
    for (const [which, what] of [["all", "every client"], ["first", "first client"]] as const) {
      report({
        bench: "redis",
        case: `publish-to-receive ${label} at ${what}, ${RATE} events/s, ${CLIENTS} clients`,
        unit: "ms",
        ours: round(percentile(bridgedLatency[which], p)),
        floor: round(percentile(memoryLatency[which], p)),
        note: `ours: ${WORKERS} bridged brokers; floor: one in-memory broker; ${
          bridgedLatency[which].length
        } samples; lower is better`,
      });
    }
  }

  // 3. Where the time goes, per publish with no client: the Redis round trip alone (PING),
  // the publish script alone, and a whole bridged publish (script + the echo on the
  // subscription + deliver).
  const probe = connections[0];
  const timeIt = async (runs: number, f: () => Promise<unknown>): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < runs; i++) await f();
    return ((performance.now() - t0) / runs) * 1000;
  };
  const runs = quick ? 300 : 2_000;
  const ping = await timeIt(runs, () => probe.sendCommand(["PING"]));
  const script = await timeIt(runs, () =>
    probe.sendCommand([
      "EVAL",
      "redis.call('HINCRBY', KEYS[1], 'seq', 1); redis.call('PUBLISH', KEYS[2], ARGV[1]); return 1",
      "2",
      "benchraw:meta",
      "benchraw:events",
      "f1 x 1 1 -1 adata: 1\n\n",
    ]));
  const whole = await timeIt(runs, () => workers[0].publish("nobody", "1"));
  for (
    const [name, value] of [["PING round trip", ping], ["a minimal publish script", script], [
      "a whole bridged publish, no clients",
      whole,
    ]] as const
  ) {
    report({
      bench: "redis",
      case: `time per sequential call: ${name}`,
      unit: "µs",
      ours: round(value),
      note: `${runs} calls one after another; lower is better`,
    });
  }
  for (const worker of workers) await worker.close();
} finally {
  for (const c of connections) c.destroy();
  await redis.stop();
}
