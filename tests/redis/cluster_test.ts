/**
 * The single-order bridge on a real Redis Cluster (3 masters, 3 replicas), with npm `redis`
 * `createCluster()` and ioredis `Cluster`: a hash-tagged prefix puts every key and the shard
 * channel on one slot. One cluster for the file; the failover tests run last (they kill masters).
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createCluster } from "redis";
import { Cluster } from "ioredis";
import { type Bridge, Broker } from "../../mod.ts";
import { redisBridge, type RedisBridgeError } from "../../src/redis/mod.ts";
import { delay, waitFor } from "../_helpers.ts";
import { type RedisCluster, slotOf, startCluster } from "./_redis_cluster.ts";
import { type ClusterConnections, collectEvents, connectCluster, dataOf } from "./_helpers.ts";

type Kind = "node-redis" | "ioredis";
const kinds: Kind[] = ["node-redis", "ioredis"];

let cluster: RedisCluster;
before(async () => {
  cluster = await startCluster({ masters: 3, replicas: 1 });
}, { timeout: 30_000 });
after(async () => {
  await cluster?.stop();
});

let prefixes = 0;
/** A fresh hash-tagged prefix per test, so tests never see each other's history. */
function freshPrefix(): string {
  return `{t${++prefixes}${Math.random().toString(36).slice(2, 6)}}:`;
}

/** A command client and a subscriber client of `kind`, connected to the live nodes. */
function clients(kind: Kind): Promise<ClusterConnections> {
  return connectCluster(kind, cluster.nodes.filter((n) => n.alive).map((n) => n.port));
}

interface Worker {
  broker: Broker;
  errors: RedisBridgeError[];
  close(): Promise<void>;
}

async function worker(kind: Kind, prefix: string, history = 100): Promise<Worker> {
  const { client, subscriber, close } = await clients(kind);
  const errors: RedisBridgeError[] = [];
  const bridge = redisBridge({
    client,
    subscriber,
    prefix,
    timeout: 2_000,
    onError: (error) => errors.push(error),
  });
  const broker = new Broker({ heartbeat: null, writeTimeout: null, history, bridge });
  // A publish waits for the bridge to be open; wait here too so tests start subscribed.
  await broker.publish("warmup", "x");
  return {
    broker,
    errors,
    close: async () => {
      await broker.close();
      close();
    },
  };
}

/** How many subscribers `channel` has on each live node, sharded and classic. */
async function subscribers(
  channel: string,
): Promise<{ port: number; sharded: number; classic: number }[]> {
  return await Promise.all(
    cluster.nodes.filter((n) => n.alive).map(async (n) => {
      const sharded = await cluster.command(n.port, ["PUBSUB", "SHARDNUMSUB", channel]);
      const classic = await cluster.command(n.port, ["PUBSUB", "NUMSUB", channel]);
      return {
        port: n.port,
        sharded: Number((sharded as unknown[])[1]),
        classic: Number((classic as unknown[])[1]),
      };
    }),
  );
}

for (const kind of kinds) {
  describe(`redisBridge on a Redis Cluster with ${kind}`, () => {
    it("delivers a publish on any worker once to every subscriber, in publish order, over the slot's shard channel", async () => {
      const prefix = freshPrefix();
      const [a, b] = [await worker(kind, prefix), await worker(kind, prefix)];
      try {
        const readers = [a, a, b, b].map((w) => collectEvents(w.broker.subscribe("room")));
        const sent: string[] = [];
        for (let i = 0; i < 20; i++) {
          const from = i % 2 === 0 ? a : b;
          sent.push(`${i % 2 === 0 ? "a" : "b"}${i}`);
          await from.broker.publish("room", sent[i]);
        }
        // Concurrent publishes from both workers: one order everywhere, whatever it is.
        await Promise.all(
          Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).broker.publish("room", `c${i}`)),
        );
        await waitFor(() => readers.every((r) => r.events.length >= 40), 5_000, "40 events");
        await delay(50);
        const first = dataOf(readers[0]!.events);
        assert.deepEqual(first.slice(0, 20), sent);
        assert.deepEqual(
          [...first.slice(20)].sort(),
          Array.from({ length: 20 }, (_, i) => `c${i}`).sort(),
        );
        for (const reader of readers) assert.deepEqual(dataOf(reader.events), first);
        // Both bridges listen on the shard channel, on the master of the prefix's slot only.
        const master = await cluster.masterOf(prefix);
        const counts = await subscribers(`${prefix}events`);
        for (const { port, sharded, classic } of counts) {
          assert.equal(sharded, port === master ? 2 : 0, `shard subscribers on ${port}`);
          assert.equal(classic, 0, `classic subscribers on ${port}`);
        }
        for (const reader of readers) await reader.cancel();
        assert.deepEqual([...a.errors, ...b.errors], []);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("replays on another worker exactly what a client missed, by its Last-Event-ID", async () => {
      const prefix = freshPrefix();
      const [a, b] = [await worker(kind, prefix), await worker(kind, prefix)];
      try {
        const first = collectEvents(a.broker.subscribe(["x", "y"]));
        await a.broker.publish("x", "x1");
        await b.broker.publish("y", "y1");
        await waitFor(() => first.events.length === 2, 3_000, "2 events");
        const lastEventId = first.events[1]!.lastEventId;
        assert.match(lastEventId, /^[0-9a-z]+-\d+$/);
        await first.cancel();
        await a.broker.publish("x", "x2");
        await b.broker.publish("z", "z1");
        await a.broker.broadcast("all");
        await b.broker.publish("y", "y2");
        const resumed = collectEvents(b.broker.subscribe(["x", "y"], { lastEventId }));
        await waitFor(() => resumed.events.length === 3, 3_000, "3 replayed events");
        await a.broker.publish("x", "x3");
        await waitFor(() => resumed.events.length === 4, 3_000, "1 live event");
        await delay(50);
        assert.deepEqual(dataOf(resumed.events), ["x2", "all", "y2", "x3"]);
        await resumed.cancel();
        assert.deepEqual([...a.errors, ...b.errors], []);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("starts a new epoch when a publish reaches another server than the one that handed out the epoch", async () => {
      // What a failover to a replica that lacks the last events looks like to the publish
      // script, when a publish gets there before any worker's checkpoint: the epoch's server
      // is not this one. It must not hand out that epoch's seqs again. (A real promoted replica
      // is in the partitioned scripts' suite; here, a node it cannot tell and another run id.)
      const prefix = freshPrefix();
      const [a, b] = [await worker(kind, prefix), await worker(kind, prefix)];
      try {
        const readers = [a, b].map((w) => collectEvents(w.broker.subscribe("room")));
        await a.broker.publish("room", "before");
        await waitFor(() => readers.every((r) => r.events.length === 1), 3_000, "1 event");
        const master = await cluster.masterOf(prefix);
        const meta = `${prefix}meta`;
        assert.equal(await cluster.command(master, ["HSET", meta, "run", "0123abcd"]), 0);
        assert.equal(await cluster.command(master, ["HDEL", meta, "node"]), 1);
        // As if the replica lacked the last event: its seq would come again.
        assert.equal(
          typeof await cluster.command(master, ["HINCRBY", meta, "seq", "-1"]),
          "number",
        );
        await b.broker.publish("room", "after");
        await waitFor(() => readers.every((r) => r.events.length === 3), 3_000, "3 events");
        for (const reader of readers) {
          assert.deepEqual(reader.events.map((e) => [e.type, e.data]).slice(0, 1), [[
            "message",
            "before",
          ]]);
          assert.equal(reader.events[1]!.type, "stream-reset");
          assert.deepEqual([reader.events[2]!.type, reader.events[2]!.data], ["message", "after"]);
          assert.notEqual(
            reader.events[2]!.lastEventId.split("-")[0],
            reader.events[0]!.lastEventId.split("-")[0],
          );
        }
        for (const reader of readers) await reader.cancel();
        for (const error of [...a.errors, ...b.errors]) {
          assert.equal(error.reason, "lost", error.message);
        }
        assert.equal(a.errors.length, 1);
        assert.equal(b.errors.length, 1);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("refuses a prefix without a hash tag", async () => {
      const { client, subscriber, close } = await clients(kind);
      try {
        for (const prefix of [undefined, "flume:", "{}:", "app{:"]) {
          assert.throws(
            () => redisBridge({ client, subscriber, ...(prefix === undefined ? {} : { prefix }) }),
            (error) =>
              error instanceof TypeError &&
              error.message ===
                `Cannot create Redis bridge: on a Redis Cluster \`prefix\` must contain a hash tag, e.g. \`{myapp}:\`, so that every key lands on one slot, got \`${
                  prefix ?? "flume:"
                }\``,
            String(prefix),
          );
        }
        // A tag anywhere before the first `}` counts, as Redis reads it.
        redisBridge({ client, subscriber, prefix: "app:{tenant}:" });
      } finally {
        close();
      }
    });
  });
}

describe("redisBridge on a Redis Cluster with ioredis", () => {
  it("refuses a Cluster subscriber without shardedSubscribers", () => {
    const nodes = cluster.nodes.filter((n) => n.alive).map((n) => ({
      host: "127.0.0.1",
      port: n.port,
    }));
    const client = new Cluster(nodes, { lazyConnect: true });
    const subscriber = new Cluster(nodes, { lazyConnect: true });
    assert.throws(
      () => redisBridge({ client, subscriber, prefix: "{app}:" }),
      {
        name: "TypeError",
        message:
          "Cannot create Redis bridge: an ioredis `Cluster` subscriber needs the option `shardedSubscribers: true` (the bridge listens with SSUBSCRIBE)",
      },
    );
    client.disconnect();
    subscriber.disconnect();
  });
});

describe("the Redis Cluster examples of docs/scaling-out.md", () => {
  /** Two brokers over the bridges of the example's code: a publish reaches both. */
  async function check(bridges: Bridge[]): Promise<void> {
    const brokers = bridges.map((bridge) => new Broker({ heartbeat: null, bridge }));
    try {
      // A publish waits for its broker's bridge to be open: then both are subscribed.
      for (const broker of brokers) await broker.publish("warmup", "x");
      const readers = brokers.map((b) => collectEvents(b.subscribe("news")));
      await brokers[0]!.publish("news", "hello");
      await waitFor(() => readers.every((r) => r.events.length === 1), 3_000, "1 event");
      for (const reader of readers) assert.deepEqual(dataOf(reader.events), ["hello"]);
    } finally {
      for (const broker of brokers) await broker.close();
    }
  }
  it("runs with npm `redis`", async () => {
    const [p0, p1] = cluster.nodes.filter((n) => n.alive).map((n) => n.port);
    const bridges: Bridge[] = [];
    const all: { destroy(): void }[] = [];
    for (let i = 0; i < 2; i++) {
      // The example, with the test cluster's ports.
      const client = createCluster({
        rootNodes: [{ url: `redis://127.0.0.1:${p0}` }, { url: `redis://127.0.0.1:${p1}` }],
      });
      const subscriber = client.duplicate();
      await Promise.all([client.connect(), subscriber.connect()]);
      const bridge = redisBridge({ client, subscriber, prefix: "{myapp}:" });
      bridges.push(bridge);
      all.push(client, subscriber);
    }
    try {
      await check(bridges);
    } finally {
      for (const c of all) c.destroy();
    }
  });

  it("runs with ioredis", async () => {
    const [p0, p1] = cluster.nodes.filter((n) => n.alive).map((n) => n.port);
    const bridges: Bridge[] = [];
    const all: Cluster[] = [];
    for (let i = 0; i < 2; i++) {
      // The example, with the test cluster's ports.
      const nodes = [{ host: "127.0.0.1", port: p0! }, { host: "127.0.0.1", port: p1! }];
      const client = new Cluster(nodes);
      const subscriber = new Cluster(nodes, { shardedSubscribers: true });
      const bridge = redisBridge({ client, subscriber, prefix: "{myapp}:" });
      bridges.push(bridge);
      all.push(client, subscriber);
    }
    try {
      await check(bridges);
    } finally {
      for (const c of all) c.disconnect();
    }
  });
});

/** A hash-tagged prefix whose slot is on a live master that has a live replica. */
async function prefixOnReplicatedMaster(name: string): Promise<string> {
  const replicated = new Set<number>();
  for (const n of cluster.nodes.filter((n) => n.alive && n.role === "master")) {
    if ((await cluster.replicasOf(n.port)).length > 0) replicated.add(n.port);
  }
  for (let i = 0; i < 1_000; i++) {
    const prefix = `{${name}${i}}:`;
    if (replicated.has(await cluster.masterOf(slotOf(prefix)))) return prefix;
  }
  throw new Error("No master with a replica left");
}

/**
 * Two workers publish one at a time, alternating, while `fault` runs, then until 10 more are
 * confirmed; every confirmed event must reach both workers' clients once, in publish order, the
 * same everywhere, with at most `gapSignals` gap signals, and a Last-Event-ID from before and
 * after must resume right.
 */
async function rideOut(
  kind: Kind,
  prefix: string,
  fault: () => Promise<void>,
  gapSignals = 1,
): Promise<void> {
  // History for every event of the test: a resume from before the fault must get them all.
  const [a, b] = [await worker(kind, prefix, 10_000), await worker(kind, prefix, 10_000)];
  try {
    const readers = [a, b].map((w) => collectEvents(w.broker.subscribe("room")));
    const confirmed: string[] = [];
    const rejected: string[] = [];
    let n = 0;
    const publish = async (w: Worker) => {
      const data = `e${++n}`;
      try {
        await w.broker.publish("room", data);
        confirmed.push(data);
      } catch {
        rejected.push(data);
        await delay(50);
      }
    };
    for (let i = 0; i < 10; i++) await publish(i % 2 ? a : b);
    assert.equal(confirmed.length, 10);
    await waitFor(() => readers.every((r) => r.events.length === 10), 3_000, "10 events");
    const before = readers[0]!.events.at(-1)!.lastEventId;
    // Publish all along the fault, from both workers.
    let over = false;
    const done = fault().finally(() => over = true);
    while (!over) await publish(n % 2 ? a : b);
    await done;
    // The brokers keep going: publishes are confirmed again (the clients find the new master).
    const after = confirmed.length;
    const deadline = Date.now() + 20_000;
    while (confirmed.length < after + 10) {
      assert.ok(Date.now() < deadline, `publishes after the fault: ${rejected.length} rejected`);
      await publish(n % 2 ? a : b);
    }
    const last = confirmed.at(-1)!;
    await waitFor(
      () => readers.every((r) => dataOf(r.events).includes(last)),
      5_000,
      "the last confirmed event everywhere",
    );
    await delay(100);
    const orders = readers.map((r) => dataOf(r.events));
    for (const order of orders) {
      // Nothing twice, nothing confirmed missing, one order everywhere.
      assert.equal(new Set(order).size, order.length, `no duplicate: ${order.join()}`);
      for (const data of confirmed) assert.ok(order.includes(data), `${data} delivered`);
      for (const data of order) assert.ok(confirmed.includes(data) || rejected.includes(data));
      const ns = order.map((d) => Number(d.slice(1)));
      // Each worker publishes one at a time, so publish order is delivery order.
      assert.deepEqual(ns, [...ns].sort((x, y) => x - y), "in publish order");
    }
    assert.deepEqual(orders[1], orders[0]);
    for (const reader of readers) {
      assert.equal(reader.done, false, "the stream is still open");
      const resets = reader.events.filter((e) => e.type === "stream-reset");
      assert.ok(resets.length <= gapSignals, `${resets.length} gap signals`);
    }
    // A client from before the fault resumes with the gap signal when the epoch changed (or
    // exactly what it missed when it did not); one from after it, with exactly what it missed.
    const old = collectEvents(b.broker.subscribe("room", { lastEventId: before }));
    const resets = readers[0]!.events.filter((e) => e.type === "stream-reset").length;
    await waitFor(() => old.events.length >= 1, 3_000, "the replay from before the fault");
    if (resets === 1) assert.equal(old.events[0]!.type, "stream-reset");
    else assert.equal(old.events[0]!.data, orders[0]![10], "the first event it missed");
    await old.cancel();
    const recent = readers[0]!.events.at(-3)!.lastEventId;
    const resumed = collectEvents(a.broker.subscribe("room", { lastEventId: recent }));
    await waitFor(() => resumed.events.length >= 2, 3_000, "2 replayed events");
    await delay(50);
    assert.deepEqual(dataOf(resumed.events), orders[0]!.slice(-2));
    await resumed.cancel();
    for (const reader of readers) await reader.cancel();
    // What the bridges reported: only outages, timeouts and the new epoch.
    for (const error of [...a.errors, ...b.errors]) {
      assert.ok(["unavailable", "timeout", "lost"].includes(error.reason), error.message);
    }
  } finally {
    await a.close();
    await b.close();
  }
}

for (const kind of kinds) {
  describe(`redisBridge on a Redis Cluster with ${kind}, when the prefix's slot moves`, () => {
    it(
      "goes on on the new master: every confirmed event once, in one order, no gap signal",
      {
        timeout: 40_000,
      },
      async () => {
        const prefix = freshPrefix();
        const from = await cluster.masterOf(prefix);
        const to = cluster.nodes.find((n) =>
          n.alive && n.role === "master" && n.port !== from
        )!.port;
        // The keys move whole (MIGRATE) to a master that was never a replica: same epoch.
        await rideOut(kind, prefix, async () => {
          await delay(100);
          await cluster.moveSlot(slotOf(prefix), to);
        }, 0);
        assert.equal(await cluster.masterOf(prefix), to);
      },
    );
  });
}

for (const kind of kinds) {
  describe(`redisBridge on a Redis Cluster with ${kind}, when a master dies`, () => {
    // A failover takes 2 to 3 s, and node-redis finds the new master some seconds later.
    it(
      "goes on on the promoted replica: every confirmed event once, in one order, at most a gap signal",
      {
        timeout: 40_000,
      },
      async () => {
        const prefix = await prefixOnReplicatedMaster(`kill-${kind}-`);
        const master = await cluster.masterOf(prefix);
        let promoted = 0;
        await rideOut(kind, prefix, async () => {
          promoted = await cluster.killMaster(master);
        });
        assert.notEqual(promoted, master);
        assert.equal(await cluster.masterOf(prefix), promoted);
      },
    );
  });
}
