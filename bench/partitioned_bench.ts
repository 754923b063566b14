/**
 * The partitioned mode of the Redis bridge against the single-order mode (issue 15): the
 * issue's load of four workers whose clients are on disjoint quarters of 10,000 channels,
 * 20,000 publishes spread over every channel from every worker, on one `redis-server` and on a
 * Redis Cluster of three masters (no replicas: the bench measures the masters' own work).
 *
 * For each mode and server it reports deliveries/s (first publish to the last client's last
 * frame), Redis CPU per publish (`INFO cpu` user + sys of every master, delta over the
 * publishes, divided by them; and the busiest master's alone), the share of the publishes each
 * worker received (`metrics().eventsPublished`: events through its `deliver`), and from the
 * busiest master's cost the publish rate that would keep it at 70% of one core: the projection
 * of bench/README.md ("Partitioned mode").
 *
 * The four workers are four brokers in this process, each with its own two connections (npm
 * `redis`, `createClient` or `createCluster`): every Redis round trip and every decode counts,
 * but the workers share one CPU with Redis, on a 2-core machine. Clients are broker streams read
 * in-process (no HTTP). Frames carry 256 bytes of data.
 *
 * Run alone: `deno run -A bench/partitioned_bench.ts [--quick]` or `bun bench/partitioned_bench.ts`.
 * @module
 */
import { createClient, createCluster } from "redis";
import { Broker, type EventStream } from "../mod.ts";
import { redisBridge } from "../src/redis/mod.ts";
import { startRedis } from "../tests/redis/_redis_server.ts";
import { command, startCluster } from "../tests/redis/_redis_cluster.ts";
import { quick, report, round } from "./_report.ts";

const WORKERS = 4;
const CHANNELS = quick ? 2_000 : 10_000;
const QUARTER = CHANNELS / WORKERS;
const PER_STREAM = 10;
const STREAMS = QUARTER / PER_STREAM;
const PUBLISHES = quick ? 4_000 : 20_000;
/** Publishes in flight per worker. */
const WINDOW = 64;
const PARTITIONS = 16;
/** The share of one core a Redis may use in the projection. */
const BUDGET = 0.7;
const PAD = "x".repeat(240);

interface Servers {
  name: string;
  /** The masters' ports (CPU is read on each). */
  masters: number[];
  cluster: boolean;
  urls: string[];
}

interface Mode {
  name: string;
  partitions: number | null;
  history: number;
}

interface Connection {
  destroy(): void;
}

/** A small deterministic generator: every run publishes the same channels in the same order. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

async function connections(
  servers: Servers,
): Promise<{ client: object; subscriber: object; all: Connection[] }> {
  if (servers.cluster) {
    const client = createCluster({ rootNodes: servers.urls.map((url) => ({ url })) });
    const subscriber = client.duplicate();
    for (const c of [client, subscriber]) c.on("error", () => {});
    await Promise.all([client.connect(), subscriber.connect()]);
    return { client, subscriber, all: [client, subscriber] };
  }
  const client = createClient({ url: servers.urls[0]! });
  const subscriber = client.duplicate();
  for (const c of [client, subscriber]) c.on("error", () => {});
  await Promise.all([client.connect(), subscriber.connect()]);
  return { client, subscriber, all: [client, subscriber] };
}

/** `used_cpu_user + used_cpu_sys` of a server, in µs. */
async function cpuOf(port: number): Promise<number> {
  const info = await command(port, ["INFO", "cpu"]);
  if (typeof info !== "string") throw new Error(`INFO cpu failed on ${port}`);
  const field = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, "m").exec(info)?.[1]);
  return (field("used_cpu_user") + field("used_cpu_sys")) * 1e6;
}

/** Reads a stream, counting frames of the load (not the probes). */
function drain(stream: EventStream, onFrame: () => void): Promise<void> {
  const reader = stream.readable.getReader();
  const decoder = new TextDecoder();
  return (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      for (const _ of decoder.decode(value).matchAll(/^data: \d+:/gm)) onFrame();
    }
  })();
}

/** Runs `count` publishes, `window` at a time. */
async function windowed(count: number, window: number, publish: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: window }, async () => {
    while (next < count) await publish(next++);
  }));
}

interface Outcome {
  ms: number;
  deliveries: number;
  /** Redis CPU µs per publish: all masters, and the busiest one. */
  cpu: number;
  busiest: number;
  perMaster: number[];
  /** Events through each worker's `deliver`, per publish. */
  shares: number[];
}

async function run(servers: Servers, mode: Mode): Promise<Outcome> {
  const prefix = servers.cluster && mode.partitions === null
    ? `{b${Date.now().toString(36)}}:`
    : `b${Date.now().toString(36)}:`;
  const opened: Connection[] = [];
  const brokers: Broker[] = [];
  for (let w = 0; w < WORKERS; w++) {
    const { client, subscriber, all } = await connections(servers);
    opened.push(...all);
    brokers.push(
      new Broker({
        heartbeat: null,
        writeTimeout: null,
        history: mode.history,
        bufferSize: 4_096,
        bridge: redisBridge({
          client,
          subscriber,
          prefix,
          timeout: 20_000,
          ...(mode.partitions === null ? {} : { partitions: mode.partitions }),
        }),
      }),
    );
  }
  try {
    let delivered = 0;
    let done!: () => void;
    const all = new Promise<void>((resolve) => done = resolve);
    const streams: EventStream[] = [];
    for (const [w, broker] of brokers.entries()) {
      for (let s = 0; s < STREAMS; s++) {
        streams.push(broker.subscribe(
          Array.from({ length: PER_STREAM }, (_, j) => `c${QUARTER * w + s * PER_STREAM + j}`),
        ));
      }
    }
    const readers = streams.map((stream) =>
      drain(stream, () => {
        if (++delivered === PUBLISHES) done();
      })
    );
    // Each worker's own publish on each channel of its quarter waits for its subscription.
    await Promise.all(
      brokers.map((broker, w) =>
        windowed(QUARTER, 256, (i) => broker.publish(`c${QUARTER * w + i}`, "probe"))
      ),
    );
    const before = await Promise.all(servers.masters.map(cpuOf));
    const published = brokers.map((b) => b.metrics().eventsPublished);
    const next = random(7);
    const channels = Array.from({ length: PUBLISHES }, () => `c${Math.floor(next() * CHANNELS)}`);
    const started = performance.now();
    await Promise.all(brokers.map((broker, w) => {
      const mine = channels.filter((_, i) => i % WORKERS === w);
      return windowed(
        mine.length,
        WINDOW,
        (i) => broker.publish(mine[i]!, `${i * WORKERS + w}:${PAD}`),
      );
    }));
    await all;
    const ms = performance.now() - started;
    const after = await Promise.all(servers.masters.map(cpuOf));
    const perMaster = after.map((cpu, i) => (cpu - before[i]!) / PUBLISHES);
    const shares = brokers.map((b, w) => (b.metrics().eventsPublished - published[w]!) / PUBLISHES);
    for (const stream of streams) stream.close();
    await Promise.all(readers);
    return {
      ms,
      deliveries: delivered,
      cpu: perMaster.reduce((a, b) => a + b, 0),
      busiest: Math.max(...perMaster),
      perMaster,
      shares,
    };
  } finally {
    for (const broker of brokers) await broker.close();
    for (const c of opened) c.destroy();
  }
}

function reportRun(servers: Servers, mode: Mode, outcome: Outcome): void {
  const label = `${mode.name}, ${servers.name}, history ${mode.history}`;
  const load = `${WORKERS} workers, ${CHANNELS.toLocaleString("en-US")} channels, ${
    PUBLISHES.toLocaleString("en-US")
  } publishes`;
  report({
    bench: "partitioned",
    case: `deliveries/s, ${label}`,
    unit: "deliveries/s",
    ours: round(outcome.deliveries / (outcome.ms / 1000)),
    note: `${load}; ${round(outcome.ms)} ms; one client per channel; workers in one process`,
  });
  report({
    bench: "partitioned",
    case: `Redis CPU per publish, ${label}`,
    unit: "µs",
    ours: round(outcome.cpu),
    note: `INFO cpu user+sys delta / publishes, every master; per master ${
      outcome.perMaster.map(round).join(" / ")
    } µs; lower is better`,
  });
  report({
    bench: "partitioned",
    case: `events received per worker, ${label}`,
    unit: "% of publishes",
    ours: round(Math.max(...outcome.shares) * 100),
    note: `most of any worker; all four: ${
      outcome.shares.map((s) => `${round(s * 100)}%`).join(" ")
    } (events through deliver); lower is better`,
  });
  report({
    bench: "partitioned",
    case: `projected publishes/s at ${BUDGET * 100}% of a core on the busiest master, ${label}`,
    unit: "events/s",
    ours: round((BUDGET * 1e6) / outcome.busiest),
    note: `${BUDGET} × 10^6 / ${
      round(outcome.busiest)
    } µs (the busiest master's CPU per publish); ${
      round(outcome.busiest * PUBLISHES / 1e6 / (outcome.ms / 1000) * 100)
    }% of a core during the run`,
  });
}

const single = { name: "single-order", partitions: null, history: 0 } satisfies Mode;
const partitioned = { name: "partitioned", partitions: PARTITIONS, history: 0 } satisfies Mode;

const redis = await startRedis();
try {
  const one: Servers = {
    name: "1 redis-server",
    masters: [redis.port],
    cluster: false,
    urls: [redis.url],
  };
  for (const mode of [single, partitioned]) reportRun(one, mode, await run(one, mode));
  if (!quick) {
    for (const mode of [single, partitioned]) {
      const withHistory = { ...mode, history: 100 };
      reportRun(one, withHistory, await run(one, withHistory));
    }
  }
} finally {
  await redis.stop();
}

const cluster = await startCluster({ masters: 3, replicas: 0 });
try {
  const three: Servers = {
    name: "Cluster of 3 masters",
    masters: cluster.nodes.map((n) => n.port),
    cluster: true,
    urls: cluster.urls,
  };
  for (const mode of [single, partitioned]) reportRun(three, mode, await run(three, mode));
} finally {
  await cluster.stop();
}
