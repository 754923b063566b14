/**
 * The partitioned mode of the Redis bridge on a real Redis Cluster (3 masters, 3 replicas), with
 * npm `redis` `createCluster()` and ioredis `Cluster`: each partition's keys and shard channels
 * on one slot, the partitions spread over the masters, and one `Last-Event-ID` that resumes
 * channels of three partitions on three masters on another worker.
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Broker } from "../../mod.ts";
import { redisBridge, type RedisBridgeError } from "../../src/redis/mod.ts";
import { partitionOf, partitionTag } from "../../src/redis/_partition.ts";
import { delay, waitFor } from "../_helpers.ts";
import { type RedisCluster, slotOf, startCluster } from "./_redis_cluster.ts";
import { type ClusterConnections, collectEvents, connectCluster, dataOf } from "./_helpers.ts";

type Kind = "node-redis" | "ioredis";
const kinds: Kind[] = ["node-redis", "ioredis"];
const N = 16;

let cluster: RedisCluster;
before(async () => {
  cluster = await startCluster({ masters: 3, replicas: 1 });
}, { timeout: 30_000 });
after(async () => {
  await cluster?.stop();
});

let prefixes = 0;
/** A fresh prefix per test (no braces: the bridge puts each partition's tag around it). */
function freshPrefix(): string {
  return `pc${++prefixes}${Math.random().toString(36).slice(2, 6)}:`;
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

async function worker(kind: Kind, prefix: string): Promise<Worker> {
  const { client, subscriber, close } = await clients(kind);
  const errors: RedisBridgeError[] = [];
  const bridge = redisBridge({
    client,
    subscriber,
    prefix,
    partitions: N,
    timeout: 3_000,
    onError: (error) => errors.push(error),
  });
  const broker = new Broker({ heartbeat: null, writeTimeout: null, history: 100, bridge });
  await broker.broadcast("warm");
  return {
    broker,
    errors,
    close: async () => {
      await broker.close();
      close();
    },
  };
}

/** Three channels whose partitions are on three different masters. */
async function channelsOnThreeMasters(prefix: string): Promise<string[]> {
  const byMaster = new Map<number, string>();
  for (let i = 0; byMaster.size < 3 && i < 1_000; i++) {
    const name = `ch${i}`;
    const master = await cluster.masterOf(`${partitionTag(prefix, partitionOf(name, N), N)}meta`);
    if (!byMaster.has(master)) byMaster.set(master, name);
  }
  assert.equal(byMaster.size, 3);
  return [...byMaster.values()];
}

for (const kind of kinds) {
  describe(`redisBridge({ partitions }) on a Redis Cluster with ${kind}`, () => {
    it("resumes on another worker across three partitions on three masters", async () => {
      const prefix = freshPrefix();
      const channels = await channelsOnThreeMasters(prefix);
      const [a, b] = [await worker(kind, prefix), await worker(kind, prefix)];
      try {
        const first = collectEvents(a.broker.subscribe(channels));
        for (const name of channels) await a.broker.publish(name, `${name}:1`);
        // (The other worker's warm-up broadcast may reach the client too.)
        const own = () => first.events.filter((e) => e.data !== "warm");
        await waitFor(() => own().length === 3, 3_000, "3 events");
        const lastEventId = own()[2]!.lastEventId;
        // Three partitions and the broadcast one.
        assert.equal(lastEventId.split(".").length, 4);
        await first.cancel();
        const missed: string[] = [];
        for (let i = 2; i <= 4; i++) {
          for (const name of channels) {
            missed.push(`${name}:${i}`);
            await b.broker.publish(name, `${name}:${i}`);
          }
        }
        const resumed = collectEvents(b.broker.subscribe(channels, { lastEventId }));
        const got = () => dataOf(resumed.events).filter((d) => d !== "warm");
        await waitFor(() => got().length >= missed.length, 3_000, "the replay");
        await a.broker.publish(channels[0]!, `${channels[0]}:5`);
        await waitFor(() => got().length >= missed.length + 1, 3_000, "a live event");
        await delay(100);
        const all = got();
        assert.equal(resumed.events.filter((e) => e.type === "stream-reset").length, 0);
        assert.deepEqual([...all].sort(), [...missed, `${channels[0]}:5`].sort());
        for (const name of channels) {
          const mine = all.filter((d) => d.startsWith(`${name}:`));
          assert.deepEqual(mine, [...mine].sort());
        }
        assert.equal(all.at(-1), `${channels[0]}:5`);
        await resumed.cancel();
        assert.deepEqual([...a.errors, ...b.errors].map(String), []);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}

for (const kind of kinds) {
  describe(`redisBridge({ partitions }) on a Redis Cluster with ${kind}, when a slot moves`, () => {
    it("goes on on the new master: every confirmed event once, in order, no gap signal", {
      timeout: 40_000,
    }, async () => {
      const prefix = freshPrefix();
      const room = "room";
      const tag = partitionTag(prefix, partitionOf(room, N), N);
      const from = await cluster.masterOf(`${tag}meta`);
      const to = cluster.nodes.find((n) => n.alive && n.role === "master" && n.port !== from)!
        .port;
      const [a, b] = [await worker(kind, prefix), await worker(kind, prefix)];
      try {
        const readers = [a, b].map((w) => collectEvents(w.broker.subscribe(room)));
        const confirmed: string[] = [];
        const rejected: string[] = [];
        let n = 0;
        const publish = async (w: Worker) => {
          const data = `e${++n}`;
          try {
            await w.broker.publish(room, data);
            confirmed.push(data);
          } catch {
            rejected.push(data);
            await delay(50);
          }
        };
        for (let i = 0; i < 10; i++) await publish(i % 2 ? a : b);
        assert.equal(confirmed.length, 10);
        let over = false;
        const done = (async () => {
          await delay(100);
          // The keys and the shard channels move whole to a master that was never a replica.
          await cluster.moveSlot(slotOf(`${tag}meta`), to);
        })().finally(() => over = true);
        while (!over) await publish(n % 2 ? a : b);
        await done;
        const after = confirmed.length;
        const deadline = Date.now() + 20_000;
        while (confirmed.length < after + 10) {
          assert.ok(Date.now() < deadline, `publishes after the move: ${rejected.length} rejected`);
          await publish(n % 2 ? a : b);
        }
        assert.equal(await cluster.masterOf(`${tag}meta`), to);
        const last = confirmed.at(-1)!;
        const real = (r: (typeof readers)[number]) => dataOf(r.events).filter((d) => d !== "warm");
        await waitFor(
          () => readers.every((r) => real(r).includes(last)),
          8_000,
          "the last confirmed event everywhere",
        );
        await delay(100);
        for (const reader of readers) {
          const order = real(reader);
          assert.equal(new Set(order).size, order.length, `no duplicate: ${order.join()}`);
          for (const data of confirmed) assert.ok(order.includes(data), `${data} delivered`);
          for (const data of order) assert.ok(confirmed.includes(data) || rejected.includes(data));
          const ns = order.map((d) => Number(d.slice(1)));
          assert.deepEqual(ns, [...ns].sort((x, y) => x - y), "in publish order");
          assert.equal(reader.events.filter((e) => e.type === "stream-reset").length, 0);
          await reader.cancel();
        }
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}

// Last: it kills a master (the cluster then has one master without a replica).
for (const kind of kinds) {
  describe(`redisBridge({ partitions }) on a Redis Cluster with ${kind}, when a master dies`, () => {
    it("signals a gap only to the clients of its partitions, and goes on", {
      timeout: 60_000,
    }, async () => {
      const prefix = freshPrefix();
      const broadcasts = await cluster.masterOf(`${partitionTag(prefix, N, N)}meta`);
      const replicated = new Set<number>();
      for (const node of cluster.nodes.filter((n) => n.alive && n.role === "master")) {
        if ((await cluster.replicasOf(node.port)).length > 0) replicated.add(node.port);
      }
      // x on a replicated master that does not hold the broadcasts, y on another master.
      let x = "", y = "", doomed = 0;
      for (let i = 0; i < 1_000 && !(x && y); i++) {
        const name = `k${i}`;
        const master = await cluster.masterOf(
          `${partitionTag(prefix, partitionOf(name, N), N)}meta`,
        );
        if (!x && master !== broadcasts && replicated.has(master)) [x, doomed] = [name, master];
        else if (x && !y && master !== doomed) y = name;
      }
      assert.ok(x && y, "channels on two masters");
      const [a, b] = [await worker(kind, prefix), await worker(kind, prefix)];
      try {
        const onX = collectEvents(b.broker.subscribe(x));
        const onY = collectEvents(b.broker.subscribe(y));
        // B's publishes wait for B's subscriptions: its clients are subscribed after them.
        await b.broker.publish(x, "warm");
        await b.broker.publish(y, "warm");
        const confirmed: Record<string, string[]> = { [x]: [], [y]: [] };
        let n = 0;
        const publish = async (channel: string) => {
          const data = `${channel}:${++n}`;
          try {
            await a.broker.publish(channel, data);
            confirmed[channel]!.push(data);
          } catch {
            await delay(50);
          }
        };
        for (let i = 0; i < 6; i++) await publish(i % 2 ? x : y);
        let over = false;
        const done = cluster.killMaster(doomed).finally(() => over = true);
        while (!over) await publish(n % 2 ? x : y);
        await done;
        const after = confirmed[x]!.length;
        const deadline = Date.now() + 30_000;
        while (confirmed[x]!.length < after + 5) {
          assert.ok(Date.now() < deadline, "publishes on the promoted replica");
          await publish(n % 2 ? x : y);
        }
        const lastX = confirmed[x]!.at(-1)!;
        const lastY = confirmed[y]!.at(-1)!;
        await waitFor(() => dataOf(onX.events).includes(lastX), 8_000, "the last x event");
        await waitFor(() => dataOf(onY.events).includes(lastY), 8_000, "the last y event");
        await delay(100);
        // y's partition is on a master that lived: nothing missing, no gap signal.
        const gotY = dataOf(onY.events).filter((d) => d !== "warm");
        assert.deepEqual(gotY, confirmed[y]);
        assert.equal(onY.events.filter((e) => e.type === "stream-reset").length, 0);
        // x's: at most one gap signal (a promoted replica starts a new epoch), for x only;
        // every event confirmed after the failover arrives.
        const resets = onX.events.filter((e) => e.type === "stream-reset");
        assert.ok(resets.length <= 1, `${resets.length} gap signals`);
        for (const reset of resets) {
          assert.deepEqual((JSON.parse(reset.data) as { channels: string[] }).channels, [x]);
        }
        const gotX = dataOf(onX.events).filter((d) => d !== "warm");
        assert.equal(new Set(gotX).size, gotX.length, "no duplicate");
        for (const data of confirmed[x]!.slice(after)) assert.ok(gotX.includes(data), data);
        await onX.cancel();
        await onY.cancel();
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}
