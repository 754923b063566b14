import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Broker, type BrokerOptions } from "../../mod.ts";
import {
  redisBridge,
  type RedisBridgeError,
  type RedisBridgeOptions,
} from "../../src/redis/mod.ts";
import { adapterFor } from "../../src/redis/_adapters.ts";
import { partitionOf } from "../../src/redis/_partition.ts";
import { delay, waitFor } from "../_helpers.ts";
import { settle, VirtualClock } from "../_clock.ts";
import { type RedisServer, startRedis } from "./_redis_server.ts";
import { clientKinds, collectEvents, connect, type Connections, dataOf } from "./_helpers.ts";

const N = 16;

let redis: RedisServer;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.stop();
});

let prefixes = 0;
/** A fresh key prefix per test, so tests never see each other's history. */
function freshPrefix(): string {
  return `pt${++prefixes}${Math.random().toString(36).slice(2, 6)}:`;
}

/** Channels named `<stem><i>`, each in a partition of its own (and none in `avoid`). */
function channelsInDistinctPartitions(stem: string, count: number, avoid: number[] = []): string[] {
  const used = new Set(avoid);
  const names: string[] = [];
  for (let i = 0; names.length < count; i++) {
    const name = `${stem}${i}`;
    const p = partitionOf(name, N);
    if (used.has(p)) continue;
    used.add(p);
    names.push(name);
  }
  return names;
}

interface Worker {
  broker: Broker;
  connections: Connections;
  errors: RedisBridgeError[];
  close(): Promise<void>;
}

async function worker(
  kind: (typeof clientKinds)[number],
  prefix: string,
  options: BrokerOptions<Record<string, unknown>> = {},
  bridgeOptions: Partial<RedisBridgeOptions> = {},
  url = redis.url,
): Promise<Worker> {
  const connections = await connect(kind, url);
  const errors: RedisBridgeError[] = [];
  const bridge = redisBridge({
    client: connections.client,
    subscriber: connections.subscriber,
    prefix,
    partitions: N,
    timeout: 2_000,
    onError: (error) => errors.push(error),
    ...bridgeOptions,
  });
  const broker = new Broker({ heartbeat: null, writeTimeout: null, ...options, bridge });
  // A broadcast waits for the bridge to be open (and comes back on every worker).
  await broker.broadcast("warm");
  return {
    broker,
    connections,
    errors,
    close: async () => {
      await broker.close();
      await connections.close();
    },
  };
}

async function pubsubIds(c: Connections): Promise<string[]> {
  const list = String(await c.command(["CLIENT", "LIST", "TYPE", "pubsub"]));
  return [...list.matchAll(/(?:^|\s)id=(\d+)/g)].map((m) => m[1]!);
}

/** The id of the partitioned mode: one `<part>-<epoch>-<seq>` component per partition. */
const COMPOSITE = /^[0-9a-z]{1,2}-[0-9a-z]{6}-[0-9a-z]+(?:\.[0-9a-z]{1,2}-[0-9a-z]{6}-[0-9a-z]+)*$/;

for (const kind of clientKinds) {
  describe(`redisBridge({ partitions }) with ${kind}`, () => {
    it("delivers each channel's events in order, and a worker only its clients' channels", async () => {
      const prefix = freshPrefix();
      const [x, y] = channelsInDistinctPartitions("room", 2);
      const [a, b] = [
        await worker(kind, prefix, { history: 10 }),
        await worker(kind, prefix, { history: 10 }),
      ];
      try {
        const onA = collectEvents(a.broker.subscribe([x!, y!]));
        const yOnB = collectEvents(b.broker.subscribe(y!));
        // A publish waits for the publisher's own subscription to the channel: after these,
        // both workers are subscribed to what their clients are on.
        await a.broker.publish(x!, "warm-x");
        await a.broker.publish(y!, "warm-ya");
        await b.broker.publish(y!, "warm-yb");
        const before = b.broker.metrics().eventsPublished;
        const sent = { [x!]: [] as string[], [y!]: [] as string[] };
        for (let i = 0; i < 30; i++) {
          const from = i % 3 === 0 ? b : a;
          const channel = i % 2 === 0 ? x! : y!;
          const data = `${channel}:${i}`;
          sent[channel]!.push(data);
          await from.broker.publish(channel, data);
        }
        const real = (events: typeof onA.events) =>
          dataOf(events).filter((d) => !d.startsWith("warm"));
        await waitFor(() => real(onA.events).length >= 30, 3_000, "30 events on A");
        await waitFor(() => real(yOnB.events).length >= 15, 3_000, "15 events on B");
        await delay(50);
        const gotA = real(onA.events);
        assert.deepEqual(gotA.filter((d) => d.startsWith(`${x}:`)), sent[x!]);
        assert.deepEqual(gotA.filter((d) => d.startsWith(`${y}:`)), sent[y!]);
        assert.deepEqual(real(yOnB.events), sent[y!]);
        // B's bridge delivered only the channel its client is on: x's events never reached it.
        assert.equal(b.broker.metrics().eventsPublished - before, 15);
        for (const event of onA.events) assert.match(event.lastEventId, COMPOSITE);
        await onA.cancel();
        await yOnB.cancel();
        assert.deepEqual([...a.errors, ...b.errors].map(String), []);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("resumes on another worker across two partitions with exactly what was missed", async () => {
      const prefix = freshPrefix();
      const [x, y] = channelsInDistinctPartitions("chan", 2);
      const [z] = channelsInDistinctPartitions("other", 1, [
        partitionOf(x!, N),
        partitionOf(y!, N),
      ]);
      const [a, b] = [
        await worker(kind, prefix, { history: 50 }),
        await worker(kind, prefix, { history: 50 }),
      ];
      try {
        const first = collectEvents(a.broker.subscribe([x!, y!]));
        // (A's publishes wait for A's subscriptions: the client is subscribed after them.)
        await a.broker.publish(x!, "x1");
        await a.broker.publish(y!, "y1");
        // (Another worker's warm-up broadcast may reach the client too.)
        const own = () => first.events.filter((e) => e.data !== "warm");
        await waitFor(() => own().length === 2, 2_000, "2 events");
        assert.deepEqual(dataOf(own()), ["x1", "y1"]);
        const lastEventId = own()[1]!.lastEventId;
        // x's partition, y's and the broadcast one.
        assert.match(lastEventId, COMPOSITE);
        assert.equal(lastEventId.split(".").length, 3);
        await first.cancel();
        // Missed while away: both channels, a broadcast, and a channel the client is not on.
        await a.broker.publish(x!, "x2");
        await b.broker.publish(z!, "z1");
        await b.broker.broadcast("all1");
        // B has no client on y: its publish resolves once ordered and stored.
        await b.broker.publish(y!, "y2");
        await a.broker.publish(x!, "x3");
        const resumed = collectEvents(b.broker.subscribe([x!, y!], { lastEventId }));
        const seen = () => dataOf(resumed.events).filter((d) => d !== "warm").length;
        await waitFor(() => seen() >= 4, 2_000, "the replay");
        await b.broker.publish(y!, "y3");
        await waitFor(() => seen() >= 5, 2_000, "a live event after it");
        await delay(50);
        const got = dataOf(resumed.events).filter((d) => d !== "warm");
        assert.equal(resumed.events.filter((e) => e.type === "stream-reset").length, 0);
        // Order holds per partition; the replay goes partition by partition.
        assert.deepEqual([...got].sort(), ["all1", "x2", "x3", "y2", "y3"]);
        assert.deepEqual(got.filter((d) => d.startsWith("x")), ["x2", "x3"]);
        assert.deepEqual(got.filter((d) => d.startsWith("y")), ["y2", "y3"]);
        assert.equal(got.at(-1), "y3");
        assert.equal(b.broker.metrics().replayHits, 1);
        // The resumed client's id resumes on the first worker: nothing missed, nothing twice.
        const again = resumed.events.at(-1)!.lastEventId;
        assert.match(again, COMPOSITE);
        await resumed.cancel();
        await b.broker.publish(x!, "x4");
        const back = collectEvents(a.broker.subscribe([x!, y!], { lastEventId: again }));
        await waitFor(() => back.events.length >= 1, 2_000, "the second replay");
        await delay(100);
        assert.deepEqual(dataOf(back.events), ["x4"]);
        await back.cancel();
        assert.deepEqual([...a.errors, ...b.errors].map(String), []);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("heals what a dropped subscription missed: every event once, in order, no gap signal", {
      timeout: 20_000,
    }, async () => {
      const prefix = freshPrefix();
      const [x, y] = channelsInDistinctPartitions("heal", 2);
      const [a] = [await worker(kind, prefix, { history: 10 })];
      const before = new Set(await pubsubIds(a.connections));
      const b = await worker(kind, prefix, { history: 10 });
      try {
        const mine = (await pubsubIds(a.connections)).filter((id) => !before.has(id));
        assert.equal(mine.length, 1, "one new subscriber: b's");
        const reader = collectEvents(b.broker.subscribe([x!, y!]));
        await b.broker.publish(x!, "warm-x");
        await b.broker.publish(y!, "warm-y");
        // As `client-output-buffer-limit pubsub` does to a slow subscriber; the burst follows
        // the kill on the same connection, so Redis runs it before b can be back.
        const kill = a.connections.command(["CLIENT", "KILL", "ID", mine[0]!]);
        const sent: Record<string, string[]> = { [x!]: [], [y!]: [] };
        await Promise.all([
          kill,
          ...Array.from({ length: 120 }, (_, i) => {
            const channel = i % 3 === 0 ? x! : i % 3 === 1 ? y! : "elsewhere";
            sent[channel]?.push(`${channel}:${i}`);
            return a.broker.publish(channel, `${channel}:${i}`);
          }),
        ]);
        const real = () => dataOf(reader.events).filter((d) => !d.startsWith("warm"));
        await waitFor(() => real().length >= 80, 8_000, "every event on b");
        await delay(100);
        const got = real();
        assert.deepEqual(got.filter((d) => d.startsWith(`${x}:`)), sent[x!]);
        assert.deepEqual(got.filter((d) => d.startsWith(`${y}:`)), sent[y!]);
        assert.equal(got.length, 80);
        assert.equal(reader.events.filter((e) => e.type === "stream-reset").length, 0);
        const metrics = b.broker.metrics();
        assert.ok(metrics.eventsHealed > 0, "some events came from the log");
        assert.equal(metrics.bridgeLosses, 0);
        assert.equal(metrics.messagesRefused, 0);
        await reader.cancel();
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("signals the gap once Redis restarted empty, then delivers every later event", {
      timeout: 30_000,
    }, async () => {
      const own = await startRedis();
      const prefix = freshPrefix();
      const [x, y] = channelsInDistinctPartitions("gone", 2);
      const a = await worker(kind, prefix, { history: 10 }, {}, own.url);
      const b = await worker(kind, prefix, { history: 10 }, {}, own.url);
      try {
        const reader = collectEvents(b.broker.subscribe([x!, y!]));
        await b.broker.publish(x!, "s0");
        await b.broker.publish(y!, "t0");
        await own.kill();
        await own.restart();
        const deadline = Date.now() + 10_000;
        for (;;) {
          try {
            await a.broker.publish(x!, "after");
            break;
          } catch (error) {
            if (Date.now() > deadline) throw error;
            await delay(50);
          }
        }
        await a.broker.publish(y!, "last");
        const real = () => dataOf(reader.events).filter((d) => d !== "warm");
        await waitFor(() => real().includes("last"), 8_000, "the last event on b");
        await delay(100);
        assert.deepEqual(real(), ["s0", "t0", "after", "last"]);
        const resets = reader.events.filter((e) => e.type === "stream-reset");
        // One per partition of the client at most (x's, y's and the broadcasts'), before the
        // first event of the new epoch, each naming only the client's channels.
        assert.ok(resets.length >= 1 && resets.length <= 3, String(resets.length));
        const types = reader.events.map((e) => e.type === "stream-reset" ? "reset" : e.data);
        assert.ok(types.indexOf("reset") < types.indexOf("after"), types.join());
        for (const reset of resets) {
          const { channels } = JSON.parse(reset.data) as { channels: string[] };
          assert.ok(channels.every((c) => c === x || c === y), reset.data);
          assert.match(reset.lastEventId, COMPOSITE);
        }
        assert.ok(b.broker.metrics().bridgeLosses >= 1);
        await reader.cancel();
      } finally {
        await a.close();
        await b.close();
        await own.stop();
      }
    });

    it("subscribes a channel while it has clients, and unsubscribes it after the delay", async () => {
      const prefix = freshPrefix();
      const w = await worker(kind, prefix, {}, { unsubscribeDelay: 1_000 });
      try {
        const [name] = channelsInDistinctPartitions("solo", 1);
        const shard = `{${prefix}p${partitionOf(name!, N)}}e:${name}`;
        const count = async () => {
          const reply = await w.connections.command(["PUBSUB", "NUMSUB", shard]);
          return Number((reply as unknown[])[1]);
        };
        assert.equal(await count(), 0);
        const reader = collectEvents(w.broker.subscribe(name!));
        await w.broker.publish(name!, "one");
        assert.equal(await count(), 1);
        await waitFor(() => reader.events.length === 1, 2_000, "the event");
        await reader.cancel();
        // It lingers, so that a client that comes straight back finds it subscribed...
        assert.equal(await count(), 1);
        // ...then goes.
        const deadline = Date.now() + 5_000;
        while ((await count()) !== 0) {
          assert.ok(Date.now() < deadline, "the channel is still subscribed after 5 s");
          await delay(20);
        }
        assert.deepEqual(w.errors.map(String), []);
      } finally {
        await w.close();
      }
    });

    it("unsubscribes exactly unsubscribeDelay ms after the last client left, counted again from a return (virtual clock)", async () => {
      const clock = new VirtualClock().install();
      const prefix = freshPrefix();
      let w: Worker | undefined;
      try {
        w = await worker(kind, prefix, {}, { unsubscribeDelay: 30_000, auditInterval: 60_000 });
        const [name] = channelsInDistinctPartitions("linger", 1);
        const shard = `{${prefix}p${partitionOf(name!, N)}}e:${name}`;
        const count = async () => {
          const reply = await w!.connections.command(["PUBSUB", "NUMSUB", shard]);
          return Number((reply as unknown[])[1]);
        };
        const first = collectEvents(w.broker.subscribe(name!));
        await w.broker.publish(name!, "one");
        await waitFor(() => first.events.length === 1, 2_000, "the event");
        await first.cancel();
        await clock.advance(29_999);
        assert.equal(await count(), 1, "still subscribed 1 ms before the delay ends");
        // A client comes back and leaves again: the delay counts from its leaving.
        const second = collectEvents(w.broker.subscribe(name!));
        await settle();
        await second.cancel();
        await clock.advance(29_999);
        assert.equal(await count(), 1, "the return moved the deadline");
        await clock.advance(1);
        const deadline = Date.now() + 5_000;
        while ((await count()) !== 0) {
          assert.ok(Date.now() < deadline, "the channel is still subscribed 5 s after the delay");
          await delay(20);
        }
        assert.deepEqual(w.errors.map(String), []);
      } finally {
        await w?.close();
        clock.uninstall();
      }
    });

    it("refuses a caller's id, a braced prefix, a one-channel adapter and another partition count", async () => {
      const prefix = freshPrefix();
      const w = await worker(kind, prefix);
      const other = await connect(kind, redis.url);
      const errors: RedisBridgeError[] = [];
      const broker = new Broker({
        heartbeat: null,
        writeTimeout: null,
        onError: () => {},
        bridge: redisBridge({
          client: other.client,
          subscriber: other.subscriber,
          prefix,
          partitions: 8,
          timeout: 2_000,
          onError: (error) => errors.push(error),
        }),
      });
      try {
        // The bridge writes each partition's hash tag around the prefix.
        assert.throws(
          () => redisBridge({ ...other, prefix: "{app}:", partitions: N }),
          (error) => error instanceof TypeError && /must not contain/.test(error.message),
        );
        assert.throws(
          () => redisBridge({ ...other, partitions: 0 }),
          (error) => error instanceof RangeError && /from 1 to 256/.test(error.message),
        );
        for (
          const [name, value, rule] of [
            ["unsubscribeDelay", -1, "non-negative integer"],
            ["unsubscribeDelay", 1.5, "non-negative integer"],
            ["auditInterval", 0, "positive integer"],
            ["auditInterval", Number.NaN, "positive integer"],
            ["healWindow", -1, "non-negative integer"],
            ["timeout", 0, "positive integer"],
          ] as const
        ) {
          assert.throws(
            () => redisBridge({ ...other, partitions: N, [name]: value }),
            {
              name: "RangeError",
              message:
                `Cannot create Redis bridge: \`${name}\` must be a ${rule}, got \`${value}\``,
            },
          );
        }
        // An adapter that can only listen on one channel cannot serve this mode.
        const { listenMany: _, ...single } = adapterFor(other.client, other.subscriber);
        assert.throws(
          () => redisBridge({ adapter: single, partitions: N }),
          (error) => error instanceof TypeError && /listenMany/.test(error.message),
        );
        await assert.rejects(
          w.broker.publish("news", "x", { id: "mine" }),
          (error) => error instanceof TypeError && /makes every id itself/.test(error.message),
        );
        await assert.rejects(
          broker.publish("news", "x"),
          (error) => /16 partitions in Redis, this bridge 8/.test(String(error)),
        );
      } finally {
        await broker.close();
        await other.close();
        await w.close();
      }
    });
  });
}
