/**
 * The partitioned mode of the Redis bridge through Redis Cluster faults, with two real worker
 * processes of the running runtime (one on npm `redis`, one on ioredis) publishing all along:
 * slots resharded during traffic (nothing lost, nothing twice, no gap signal), then a master
 * killed with SIGKILL (its replica takes over; only clients with channels in its slots may get a
 * gap signal, for those channels only; every other stream is untouched; no worker crashes). One
 * cluster for the file: the reshard runs first, as a slot moved onto a promoted replica would
 * cost a gap (docs: lineage rule).
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { partitionOf, partitionTag } from "../../src/redis/_partition.ts";
import { delay, runtime } from "../_helpers.ts";
import { type RedisCluster, slotOf, startCluster } from "./_redis_cluster.ts";
import {
  describeList,
  type LoadResult,
  received,
  resetsOf,
  startWorker,
  type StreamDump,
  strictlyRising,
  waitUntil,
  type WorkerMetrics,
  type WorkerProcess,
} from "./fixtures/partitioned_control.ts";

const PARTITIONS = 16;
/** Channels `f0` … `f23`: worker 0 publishes the even ones, worker 1 the odd ones. */
const CHANNELS = Array.from({ length: 24 }, (_, i) => `f${i}`);
/** Publishes per second, per worker. */
const RATE = 120;
/**
 * Rejections after which a publish is made again: none. A kill -9 can drop the connection after
 * the script ran, so even `"unavailable"` may hide an event that went out; each refused publish
 * counts as maybe delivered (never twice), and the load goes on with the channel's next `n`.
 */
const RETRY: string[] = [];

let cluster: RedisCluster;
let workers: WorkerProcess[] = [];
let prefix = "";

before(async () => {
  cluster = await startCluster({ masters: 3, replicas: 1 });
  prefix = `pf${Math.random().toString(36).slice(2, 6)}:`;
  const urls = cluster.urls;
  workers = await Promise.all(
    (["node-redis", "ioredis"] as const).map((kind, w) =>
      startWorker(`${w}/${kind}`, {
        urls,
        cluster: true,
        kind,
        prefix,
        partitions: PARTITIONS,
        history: 1_000,
        timeout: 3_000,
      })
    ),
  );
}, { timeout: 40_000 });

after(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await cluster?.stop();
});

/** The tag of a channel's partition (its keys' slot). */
function tagOf(channel: string | null): string {
  return partitionTag(prefix, partitionOf(channel, PARTITIONS), PARTITIONS);
}

/** Each worker's clients: one per channel, and three on eight channels each. */
function layout(): string[][] {
  return [
    ...CHANNELS.map((channel) => [channel]),
    CHANNELS.filter((_, i) => i % 3 === 0),
    CHANNELS.filter((_, i) => i % 3 === 1),
    CHANNELS.filter((_, i) => i % 3 === 2),
  ];
}

/** Opens the clients on both workers; each worker's own probes make its subscriptions sure. */
async function openClients(): Promise<number[]> {
  return await Promise.all(workers.map(async (worker) => {
    const { first } = await worker.post<{ first: number }>("/streams", {
      streams: layout().map((channels) => ({ channels })),
    });
    const { failed } = await worker.post<{ failed: unknown[] }>("/publish-many", {
      events: CHANNELS.map((channel) => [channel, `${channel}:0`]),
      window: 32,
      retry: [],
    });
    assert.deepEqual(failed, [], `${worker.name}: probes`);
    return first;
  }));
}

async function closeClients(): Promise<void> {
  await Promise.all(workers.map((w) => w.delete("/streams")));
}

async function startLoad(): Promise<void> {
  await Promise.all(workers.map((worker, w) =>
    worker.post("/load/start", {
      channels: CHANNELS.filter((_, i) => i % 2 === w),
      rate: RATE,
      window: 16,
      retry: RETRY,
    })
  ));
}

interface Published {
  confirmed: Map<string, number[]>;
  failed: Map<string, number[]>;
  rejected: Record<string, number>;
}

async function stopLoad(): Promise<Published> {
  const results = await Promise.all(workers.map((w) => w.post<LoadResult>("/load/stop", {})));
  const published: Published = { confirmed: new Map(), failed: new Map(), rejected: {} };
  for (const result of results) {
    for (const [channel, ns] of Object.entries(result.confirmed)) {
      published.confirmed.set(channel, ns);
    }
    for (const [channel, ns] of Object.entries(result.failed)) published.failed.set(channel, ns);
    for (const [reason, n] of Object.entries(result.rejected)) {
      published.rejected[reason] = (published.rejected[reason] ?? 0) + n;
    }
  }
  return published;
}

/** The last `n` issued (`issued`) or confirmed (`confirmed`) per channel, over both workers. */
async function loadState(): Promise<
  { issued: Map<string, number>; confirmed: Map<string, number> }
> {
  const states = await Promise.all(
    workers.map((w) =>
      w.get<{ issued: Record<string, number>; confirmed: Record<string, number> }>("/load")
    ),
  );
  const issued = new Map<string, number>();
  const confirmed = new Map<string, number>();
  for (const state of states) {
    for (const [c, n] of Object.entries(state.issued)) issued.set(c, n);
    for (const [c, n] of Object.entries(state.confirmed)) confirmed.set(c, n);
  }
  return { issued, confirmed };
}

/** Waits until the load confirmed, on every channel, an event issued after `issued`. */
async function confirmedPast(issued: Map<string, number>, timeout: number): Promise<void> {
  await waitUntil(
    async () => {
      const state = await loadState();
      return CHANNELS.every((c) => (state.confirmed.get(c) ?? 0) > (issued.get(c) ?? 0));
    },
    timeout,
    "publishes confirmed again on every channel",
  );
}

async function dumps(firsts: readonly number[]): Promise<StreamDump[][]> {
  return await Promise.all(
    workers.map((w, i) => w.get<StreamDump[]>(`/streams?from=${firsts[i]}`)),
  );
}

async function metrics(): Promise<WorkerMetrics[]> {
  return await Promise.all(workers.map((w) => w.get<WorkerMetrics>("/metrics")));
}

function assertAlive(): void {
  for (const w of workers) {
    assert.ok(w.alive, `worker ${w.name} is running: ${w.stderr.join("")}`);
    assert.ok(!w.stderr.join("").includes("CRASH"), `worker ${w.name}: ${w.stderr.join("")}`);
  }
}

/** Whether every client has every confirmed event of its channels above `from` (per channel). */
function complete(
  list: readonly StreamDump[][],
  confirmed: Map<string, number[]>,
  from: (channel: string) => number = () => 0,
): boolean {
  return list.every((ds) =>
    ds.every((d) => {
      const got = received(d.events);
      return d.channels.every((c) => {
        const have = new Set(got.get(c) ?? []);
        return (confirmed.get(c) ?? []).every((n) => n <= from(c) || have.has(n));
      });
    })
  );
}

describe(`the partitioned Redis bridge on a Redis Cluster, 2 ${runtime} workers publishing all along`, () => {
  it("loses nothing and repeats nothing while slots are resharded, and sends no gap signal", {
    timeout: 45_000,
  }, async () => {
    const firsts = await openClients();
    const before = await metrics();
    const owners = new Map(
      await Promise.all(
        CHANNELS.map(async (c) => [c, await cluster.masterOf(tagOf(c))] as const),
      ),
    );
    await startLoad();
    await delay(500);
    // `redis-cli --cluster reshard` of a third of one master's slots, and one partition's slot
    // moved on its own, step by step.
    const masters = cluster.nodes.filter((n) => n.alive && n.role === "master").map((n) => n.port);
    const from = owners.get(CHANNELS[0]!)!;
    const to = masters.find((p) => p !== from)!;
    await cluster.reshard(from, to, 1_000);
    const alone = CHANNELS.find((c) => owners.get(c) !== from)!;
    const third = masters.find((p) => p !== owners.get(alone) && p !== to) ??
      masters.find((p) => p !== owners.get(alone))!;
    await cluster.moveSlot(slotOf(tagOf(alone)), third);
    const { issued } = await loadState();
    await confirmedPast(issued, 15_000);
    const published = await stopLoad();
    const now = new Map(
      await Promise.all(
        CHANNELS.map(async (c) => [c, await cluster.masterOf(tagOf(c))] as const),
      ),
    );
    const movedPartitions = new Set(
      CHANNELS.filter((c) => now.get(c) !== owners.get(c)).map((c) => partitionOf(c, PARTITIONS)),
    );
    assert.ok(movedPartitions.size >= 1, "a partition moved");
    let list: StreamDump[][] = [];
    await waitUntil(
      async () => {
        list = await dumps(firsts);
        return complete(list, published.confirmed);
      },
      10_000,
      "every confirmed event at every client",
    ).catch(async (error) => {
      throw new Error(
        `${error.message}: ${JSON.stringify((await metrics()).map((m) => m.samples))}`,
      );
    });
    await delay(200);
    list = await dumps(firsts);
    const problems: string[] = [];
    for (const [w, ds] of list.entries()) {
      for (const d of ds) {
        const got = received(d.events);
        if (d.done) problems.push(`worker ${w} [${d.channels}]: ended`);
        if (resetsOf(d.events).length > 0) problems.push(`worker ${w} [${d.channels}]: gap signal`);
        for (const c of d.channels) {
          const ns = got.get(c) ?? [];
          const sent = new Set([
            ...published.confirmed.get(c) ?? [],
            ...published.failed.get(c) ?? [],
          ]);
          if (!strictlyRising(ns)) {
            problems.push(`worker ${w}: ${c} out of order or twice: ${describeList(ns)}`);
          }
          if (ns.some((n) => !sent.has(n))) {
            problems.push(`worker ${w}: ${c} got unpublished events`);
          }
        }
      }
    }
    if (problems.length > 0) {
      const samples = (await metrics()).map((m) => m.samples);
      assert.deepEqual(
        problems.slice(0, 10),
        [],
        `${problems.length} problems; bridges: ${JSON.stringify(samples)}`,
      );
    }
    const after = await metrics();
    const gapSignals = after.reduce(
      (s, m, i) => s + m.metrics.gapSignals! - before[i]!.metrics.gapSignals!,
      0,
    );
    const healed = after.reduce(
      (s, m, i) => s + m.metrics.eventsHealed! - before[i]!.metrics.eventsHealed!,
      0,
    );
    const total = [...published.confirmed.values()].reduce((s, ns) => s + ns.length, 0);
    console.log(
      `[${runtime}] reshard: ${total} events confirmed, ${movedPartitions.size} partitions moved, ` +
        `${healed} healed, rejected ${JSON.stringify(published.rejected)}`,
    );
    assert.equal(gapSignals, 0, "gap signals");
    assert.ok(total > 0);
    for (const m of after) {
      for (const reason of Object.keys(m.errors)) {
        assert.ok(["unavailable", "timeout"].includes(reason), m.samples.join("; "));
      }
    }
    await closeClients();
    assertAlive();
  });

  it(
    "signals a gap, after a master's kill -9, only to clients with channels in its slots, for those channels, and touches no other stream",
    {
      timeout: 60_000,
    },
    async () => {
      // A master that holds some of the channels and has a replica, but not the broadcast
      // partition (a loss there concerns every client).
      const broadcastMaster = await cluster.masterOf(tagOf(null));
      const masterOfChannel = new Map(
        await Promise.all(
          CHANNELS.map(async (c) => [c, await cluster.masterOf(tagOf(c))] as const),
        ),
      );
      let victim = 0;
      for (const n of cluster.nodes.filter((n) => n.alive && n.role === "master")) {
        if (n.port === broadcastMaster) continue;
        if ((await cluster.replicasOf(n.port)).length === 0) continue;
        if (CHANNELS.some((c) => masterOfChannel.get(c) === n.port)) victim = n.port;
      }
      assert.notEqual(victim, 0, "a master to kill");
      const hit = new Set(CHANNELS.filter((c) => masterOfChannel.get(c) === victim));
      const firsts = await openClients();
      await startLoad();
      await delay(1_000);
      // Where each client was before the failover: its last id, and its last n per channel.
      const early = await dumps(firsts);
      const promoted = await cluster.killMaster(victim);
      assert.notEqual(promoted, victim);
      const { issued } = await loadState();
      await confirmedPast(issued, 25_000);
      await delay(500);
      const published = await stopLoad();
      // Every event issued after the failover, confirmed, reaches every client.
      let list: StreamDump[][] = [];
      await waitUntil(
        async () => {
          list = await dumps(firsts);
          return complete(list, published.confirmed, (c) => issued.get(c) ?? 0);
        },
        15_000,
        "every event confirmed after the failover at every client",
      );
      await delay(200);
      list = await dumps(firsts);
      const problems: string[] = [];
      let touched = 0;
      for (const [w, ds] of list.entries()) {
        for (const d of ds) {
          const got = received(d.events);
          const resets = resetsOf(d.events);
          const mine = d.channels.filter((c) => hit.has(c));
          const where = `worker ${w} [${d.channels}]`;
          if (d.done) problems.push(`${where}: ended`);
          if (mine.length === 0 && resets.length > 0) {
            problems.push(`${where}: a gap signal, none of its channels on the dead master`);
          }
          const partitions = new Set(mine.map((c) => partitionOf(c, PARTITIONS)));
          if (resets.length > partitions.size) {
            problems.push(
              `${where}: ${resets.length} gap signals for ${partitions.size} partitions: ${
                JSON.stringify(d.events.filter(([type]) => type === "stream-reset"))
              }`,
            );
          }
          for (const channels of resets) {
            touched++;
            if (!channels.every((c) => hit.has(c) && d.channels.includes(c))) {
              problems.push(`${where}: a gap signal for ${channels}`);
            }
            if (new Set(channels.map((c) => partitionOf(c, PARTITIONS))).size !== 1) {
              problems.push(`${where}: a gap signal across partitions: ${channels}`);
            }
          }
          const signalled = new Set(resets.flat());
          for (const c of d.channels) {
            const ns = got.get(c) ?? [];
            const sent = new Set([
              ...published.confirmed.get(c) ?? [],
              ...published.failed.get(c) ?? [],
            ]);
            if (!strictlyRising(ns)) {
              problems.push(
                `${where}: ${c} out of order or twice: ${describeList(ns)}`,
              );
            }
            if (ns.some((n) => !sent.has(n))) {
              problems.push(`${where}: ${c} got unpublished events`);
            }
            const have = new Set(ns);
            const missing = (published.confirmed.get(c) ?? []).filter((n) => !have.has(n));
            if (missing.length > 0 && !signalled.has(c)) {
              problems.push(`${where}: ${c} misses ${describeList(missing)} with no gap signal`);
            }
          }
        }
      }
      if (problems.length > 0) {
        const samples = (await metrics()).map((m) => m.samples);
        assert.deepEqual(
          problems.slice(0, 10),
          [],
          `${problems.length} problems; bridges: ${JSON.stringify(samples)}`,
        );
      }
      // A client that comes back with an id from before the failover, on the other worker: the
      // gap signal for its channels on the dead master only, and exactly what it missed on the
      // others.
      const mixedIndex = layout().findIndex((channels) =>
        channels.length > 1 && channels.some((c) => hit.has(c)) && channels.some((c) => !hit.has(c))
      );
      assert.notEqual(mixedIndex, -1, "a client with channels on both sides");
      const old = early[0]![mixedIndex]!;
      const lastEventId = old.events.at(-1)![2];
      const lastSeen = received(old.events);
      const { first } = await workers[1]!.post<{ first: number }>("/streams", {
        streams: [{ channels: old.channels, lastEventId }],
      });
      const others = old.channels.filter((c) => !hit.has(c));
      const from = (c: string) => lastSeen.get(c)?.at(-1) ?? 0;
      let resumed: StreamDump | undefined;
      await waitUntil(
        async () => {
          [resumed] = await workers[1]!.get<StreamDump[]>(`/streams?from=${first}`);
          const got = received(resumed!.events);
          return others.every((c) =>
            (published.confirmed.get(c) ?? []).every((n) => n <= from(c) || got.get(c)?.includes(n))
          );
        },
        10_000,
        "the replay of the channels on other masters",
      );
      await delay(200);
      [resumed] = await workers[1]!.get<StreamDump[]>(`/streams?from=${first}`);
      const got = received(resumed!.events);
      for (const channels of resetsOf(resumed!.events)) {
        assert.ok(
          channels.every((c) => hit.has(c)),
          `the gap signal names only ${[...hit]}: ${channels}`,
        );
      }
      for (const c of others) {
        const ns = got.get(c) ?? [];
        assert.ok(strictlyRising(ns), `${c}: ${describeList(ns)}`);
        assert.ok(
          ns.every((n) => n > from(c)),
          `${c} replayed from after ${from(c)}: ${describeList(ns)}`,
        );
      }
      const after = await metrics();
      console.log(
        `[${runtime}] kill -9 of a master with ${hit.size} of ${CHANNELS.length} channels: ` +
          `${touched} gap signals, healed ${after.map((m) => m.metrics.eventsHealed)}, ` +
          `rejected ${JSON.stringify(published.rejected)}`,
      );
      for (const m of after) {
        for (const reason of Object.keys(m.errors)) {
          assert.ok(["unavailable", "timeout", "lost"].includes(reason), m.samples.join("; "));
        }
      }
      await closeClients();
      assertAlive();
    },
  );
});
