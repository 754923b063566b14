/**
 * The adapters' `listenMany` (the partitioned mode's many-channel listening) on a real
 * `redis-server` with every client the runtime has, and on a real Redis Cluster (3 masters, 3
 * replicas) with npm `redis` `createCluster()` and ioredis `Cluster`: messages of many channels,
 * 1,000 channels in and out, a slot move, a failover, and nothing left behind after `close()`.
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { adapterFor } from "../../src/redis/_adapters.ts";
import type {
  RedisBridgeChannelListener,
  RedisBridgeSubscription,
} from "../../src/redis/redis_bridge_adapter.ts";
import { waitFor } from "../_helpers.ts";
import { clientKinds, connect, connectCluster } from "./_helpers.ts";
import { type RedisServer, startRedis } from "./_redis_server.ts";
import { type RedisCluster, slotOf, startCluster } from "./_redis_cluster.ts";

// deno-lint-ignore no-explicit-any
type Loose = any;

/** A listener that keeps everything it is told, in order. */
interface Recorder extends RedisBridgeChannelListener {
  /** `[channel, text]` of every message. */
  messages: [string, string][];
  /** `"connected"`, `"error"` and `"moved"` in the order they came. */
  events: string[];
  /** The channels of each `moved` call. */
  moves: string[][];
}

function recorder(): Recorder {
  const messages: [string, string][] = [];
  const events: string[] = [];
  const moves: string[][] = [];
  return {
    messages,
    events,
    moves,
    message: (channel, text) => void messages.push([channel, text]),
    connected: () => void events.push("connected"),
    error: () => void events.push("error"),
    moved: (channels) => {
      events.push("moved");
      moves.push([...channels]);
    },
  };
}

/** The texts received on `channel`, in order. */
function textsOf(seen: Recorder, channel: string): string[] {
  return seen.messages.filter(([c]) => c === channel).map(([, text]) => text);
}

/** Listener counts of an emitter, by event name (EventEmitter or ioredis/node-redis clients). */
function listenerCounts(emitter: Loose): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of emitter.eventNames()) {
    counts[String(name)] = emitter.listenerCount(name);
  }
  return counts;
}

let prefixes = 0;
function freshPrefix(): string {
  return `t${++prefixes}${Math.random().toString(36).slice(2, 6)}:`;
}

describe("listenMany on one redis-server", () => {
  let server: RedisServer;
  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    await server?.stop();
  });

  for (const kind of clientKinds) {
    describe(kind, () => {
      it("delivers the messages of many channels once each, in publish order", async () => {
        const conn = await connect(kind, server.url);
        const seen = recorder();
        const handle = await adapterFor(conn.client, conn.subscriber).listenMany!(seen);
        try {
          const p = freshPrefix();
          const channels = Array.from({ length: 40 }, (_, i) => `${p}c${i}`);
          for (let i = 0; i < 40; i += 10) await handle.subscribe(channels.slice(i, i + 10));
          const sent: [string, string][] = [];
          for (let i = 0; i < 1_000; i++) sent.push([channels[i % 40]!, `m${i}`]);
          // Pipelined on one connection: Redis runs them, and so sends them, in this order.
          const receivers = await Promise.all(
            sent.map(([channel, text]) => conn.command(["PUBLISH", channel, text])),
          );
          assert.ok(receivers.every((n) => Number(n) === 1));
          await waitFor(() => seen.messages.length >= 1_000, 10_000, "1,000 messages");
          assert.deepEqual(seen.messages, sent);
          assert.deepEqual(seen.events, []);
        } finally {
          await handle.close();
          await conn.close();
        }
      });

      it("subscribes and unsubscribes 1,000 channels", async () => {
        const conn = await connect(kind, server.url);
        const seen = recorder();
        const handle = await adapterFor(conn.client, conn.subscriber).listenMany!(seen);
        try {
          const p = freshPrefix();
          const channels = Array.from({ length: 1_000 }, (_, i) => `${p}${i}`);
          await handle.subscribe(channels);
          const listed = async () =>
            ((await conn.command(["PUBSUB", "CHANNELS", `${p}*`])) as string[]).length;
          assert.equal(await listed(), 1_000);
          const first = await Promise.all(channels.map((c) => conn.command(["PUBLISH", c, "a"])));
          assert.ok(first.every((n) => Number(n) === 1));
          await waitFor(() => seen.messages.length === 1_000, 10_000, "1,000 messages");
          await handle.unsubscribe(channels.slice(0, 500));
          assert.equal(await listed(), 500);
          const second = await Promise.all(channels.map((c) => conn.command(["PUBLISH", c, "b"])));
          assert.deepEqual(second.map(Number), channels.map((_, i) => i < 500 ? 0 : 1));
          await waitFor(() => seen.messages.length === 1_500, 10_000, "500 more messages");
          assert.deepEqual(
            seen.messages.slice(1_000).map(([c]) => c),
            channels.slice(500),
          );
          await handle.unsubscribe(channels.slice(500));
          assert.equal(await listed(), 0);
        } finally {
          await handle.close();
          await conn.close();
        }
      });

      it("asks Redis once per channel however often it is asked", async () => {
        const conn = await connect(kind, server.url);
        const seen = recorder();
        const handle = await adapterFor(conn.client, conn.subscriber).listenMany!(seen);
        try {
          const p = freshPrefix();
          const [a, b] = [`${p}a`, `${p}b`];
          await Promise.all([handle.subscribe([a]), handle.subscribe([a, a, b])]);
          await handle.subscribe([a]);
          await handle.unsubscribe([`${p}never`]);
          assert.deepEqual(await conn.command(["PUBSUB", "NUMSUB", a, b]), [a, 1, b, 1]);
          assert.equal(Number(await conn.command(["PUBLISH", a, "once"])), 1);
          await waitFor(() => seen.messages.length === 1, 5_000, "the message");
          await new Promise((resolve) => setTimeout(resolve, 50));
          assert.deepEqual(seen.messages, [[a, "once"]]);
          // Unsubscribed, then subscribed again: it is asked for again.
          await handle.unsubscribe([a]);
          await handle.subscribe([a]);
          assert.deepEqual(await conn.command(["PUBSUB", "NUMSUB", a]), [a, 1]);
        } finally {
          await handle.close();
          await conn.close();
        }
      });

      it("reports a dropped connection, then subscribes again once Redis is back", {
        timeout: 30_000,
      }, async () => {
        const conn = await connect(kind, server.url);
        const seen = recorder();
        const handle = await adapterFor(conn.client, conn.subscriber).listenMany!(seen);
        try {
          const p = freshPrefix();
          const channels = [`${p}a`, `${p}b`, `${p}c`];
          await handle.subscribe(channels);
          await server.kill();
          await server.restart();
          // Bun's client calls no `onclose` while it reconnects: only the reconnect is told.
          await waitFor(
            () =>
              kind === "bun"
                ? seen.events.filter((e) => e === "connected").length >= 2
                : seen.events.includes("error") &&
                  seen.events.lastIndexOf("connected") > seen.events.indexOf("error"),
            15_000,
            "error, then connected",
          ).catch((error) => {
            throw new Error(`${error.message}; got ${seen.events.join(" ")}`);
          });
          // `connected` may come from the command connection first: wait for the subscriber.
          let receivers = 0;
          const deadline = Date.now() + 10_000;
          while (receivers === 0 && Date.now() < deadline) {
            receivers = Number(
              await conn.command(["PUBSUB", "NUMSUB", channels[2]!]).then(
                (reply) => (reply as unknown[])[1],
              ),
            );
            if (receivers === 0) await new Promise((resolve) => setTimeout(resolve, 20));
          }
          for (const channel of channels) {
            assert.equal(Number(await conn.command(["PUBLISH", channel, "back"])), 1);
          }
          await waitFor(() => seen.messages.length === 3, 5_000, "the messages");
          assert.deepEqual(seen.messages, channels.map((c) => [c, "back"]));
          assert.ok(!seen.events.includes("moved"));
        } finally {
          await handle.close();
          await conn.close();
        }
      });

      it("leaves no listener and no subscription after close", async () => {
        const conn = await connect(kind, server.url);
        const clients = [conn.client, conn.subscriber] as Loose[];
        const before = kind === "bun"
          ? clients.map((c) => [c.onconnect, c.onclose])
          : clients.map(listenerCounts);
        const seen = recorder();
        const adapter = adapterFor(conn.client, conn.subscriber);
        const handle = await adapter.listenMany!(seen);
        const p = freshPrefix();
        const channels = Array.from({ length: 20 }, (_, i) => `${p}${i}`);
        try {
          await handle.subscribe(channels.slice(0, 10));
          await handle.subscribe(channels.slice(10));
          const during = kind === "bun"
            ? clients.map((c) => [c.onconnect, c.onclose])
            : clients.map(listenerCounts);
          assert.notDeepEqual(during, before);
        } finally {
          await handle.close();
        }
        try {
          const after = kind === "bun"
            ? clients.map((c) => [c.onconnect, c.onclose])
            : clients.map(listenerCounts);
          assert.deepEqual(after, before);
          const counts = await conn.command(["PUBSUB", "NUMSUB", ...channels]) as unknown[];
          assert.ok(counts.filter((_, i) => i % 2 === 1).every((n) => Number(n) === 0));
          assert.equal(Number(await conn.command(["PUBLISH", channels[0]!, "late"])), 0);
          await assert.rejects(
            handle.subscribe([channels[0]!]),
            new TypeError("Cannot subscribe to Redis channels: the listener is closed"),
          );
          await handle.close();
          assert.deepEqual(seen.messages, []);
        } finally {
          await conn.close();
        }
      });
    });
  }
});

type ClusterKind = "node-redis" | "ioredis";
const clusterKinds: ClusterKind[] = ["node-redis", "ioredis"];

describe("listenMany on a Redis Cluster", () => {
  let cluster: RedisCluster;
  before(async () => {
    cluster = await startCluster({ masters: 3, replicas: 1 });
    // The roles it recorded may be from before every replica had attached: `moveSlot` would
    // send SETSLOT to a replica.
    const deadline = Date.now() + 10_000;
    while ((await cluster.roles()).filter((n) => n.role === "master").length !== 3) {
      if (Date.now() > deadline) throw new Error("The replicas never attached");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }, { timeout: 30_000 });
  after(async () => {
    await cluster?.stop();
  });

  interface Clients {
    client: Loose;
    subscriber: Loose;
    /** SPUBLISH through the command client (routed by the channel's slot). */
    publish(channel: string, text: string): Promise<number>;
    close(): void;
  }

  async function clients(kind: ClusterKind): Promise<Clients> {
    const connections = await connectCluster(
      kind,
      cluster.nodes.filter((n) => n.alive).map((n) => n.port),
    );
    const { client } = connections;
    return {
      ...connections,
      publish: async (channel, text) =>
        Number(
          await (kind === "node-redis"
            ? client.sPublish(channel, text)
            : client.spublish(channel, text)),
        ),
    };
  }

  interface Listening {
    clients: Clients;
    seen: Recorder;
    handle: RedisBridgeSubscription;
    close(): Promise<void>;
  }

  async function listening(kind: ClusterKind): Promise<Listening> {
    const c = await clients(kind);
    const seen = recorder();
    const handle = await adapterFor(c.client, c.subscriber, { sharded: true }).listenMany!(seen);
    return {
      clients: c,
      seen,
      handle,
      close: async () => {
        await handle.close();
        c.close();
      },
    };
  }

  /** `count` channels under each of `tags` hash tags: one array per tag (one slot each). */
  function channelsOf(tags: string[], count: number): string[][] {
    return tags.map((tag) => Array.from({ length: count }, (_, i) => `{${tag}}e:${i}`));
  }

  /** How many shard subscriptions each channel has, summed over the live nodes. */
  async function shardSubscribers(channels: string[]): Promise<number[]> {
    const total = channels.map(() => 0);
    for (const node of cluster.nodes.filter((n) => n.alive)) {
      const reply = await cluster.command(node.port, ["PUBSUB", "SHARDNUMSUB", ...channels]);
      if (!Array.isArray(reply)) throw new Error(`PUBSUB SHARDNUMSUB failed on ${node.port}`);
      channels.forEach((_, i) => total[i]! += Number(reply[2 * i + 1]));
    }
    return total;
  }

  /** Publishes until `channel` has a subscriber on its master again, then once more. */
  async function publishUntilHeard(
    c: Clients,
    channel: string,
    text: string,
  ): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const receivers = await c.publish(channel, text).catch(() => 0);
      if (receivers > 0) return;
      if (Date.now() > deadline) throw new Error(`Nobody listens on ${channel} any more`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  for (const kind of clusterKinds) {
    describe(kind, () => {
      it("delivers many channels across slots once each, in each connection's order", async () => {
        const l = await listening(kind);
        try {
          const p = freshPrefix();
          const tags = Array.from({ length: 9 }, (_, i) => `${p}${i}`);
          const groups = channelsOf(tags, 5);
          for (const group of groups) await l.handle.subscribe(group);
          const masters = new Map<string, number>();
          for (const group of groups) {
            const port = await cluster.masterOf(group[0]!);
            for (const channel of group) masters.set(channel, port);
          }
          assert.ok(new Set(masters.values()).size > 1, "the channels span several masters");
          const all = groups.flat();
          const sent: [string, string][] = [];
          for (let i = 0; i < 900; i++) sent.push([all[(i * 7) % all.length]!, `m${i}`]);
          // In order per node connection: the command client has one connection per master.
          const receivers = await Promise.all(sent.map(([c, t]) => l.clients.publish(c, t)));
          assert.ok(receivers.every((n) => n === 1));
          await waitFor(() => l.seen.messages.length >= 900, 10_000, "900 messages");
          await new Promise((resolve) => setTimeout(resolve, 50));
          assert.equal(l.seen.messages.length, 900);
          for (const port of new Set(masters.values())) {
            const on = ([channel]: [string, string]) => masters.get(channel) === port;
            assert.deepEqual(l.seen.messages.filter(on), sent.filter(on));
          }
          assert.deepEqual(l.seen.events.filter((e) => e !== "connected"), []);
        } finally {
          await l.close();
        }
      });

      it("subscribes and unsubscribes 1,000 channels of 20 slots", async () => {
        const l = await listening(kind);
        try {
          const p = freshPrefix();
          const groups = channelsOf(Array.from({ length: 20 }, (_, i) => `${p}${i}`), 50);
          const all = groups.flat();
          await Promise.all(groups.map((group) => l.handle.subscribe(group)));
          assert.deepEqual(await shardSubscribers(all), all.map(() => 1));
          const first = await Promise.all(all.map((c) => l.clients.publish(c, "a")));
          assert.ok(first.every((n) => n === 1));
          await waitFor(() => l.seen.messages.length === 1_000, 10_000, "1,000 messages");
          assert.deepEqual(l.seen.messages.map(([c]) => c).sort(), [...all].sort());
          await Promise.all(groups.slice(0, 10).map((group) => l.handle.unsubscribe(group)));
          const kept = groups.slice(10).flat();
          assert.deepEqual(await shardSubscribers(all), all.map((c) => kept.includes(c) ? 1 : 0));
          const second = await Promise.all(all.map((c) => l.clients.publish(c, "b")));
          assert.deepEqual(second, all.map((c) => kept.includes(c) ? 1 : 0));
          await waitFor(() => l.seen.messages.length === 1_500, 10_000, "500 more messages");
          assert.deepEqual(l.seen.messages.slice(1_000).map(([c]) => c).sort(), [...kept].sort());
          await Promise.all(groups.slice(10).map((group) => l.handle.unsubscribe(group)));
          assert.deepEqual(await shardSubscribers(all), all.map(() => 0));
        } finally {
          await l.close();
        }
      });

      it("refuses channels of two slots in one call and keeps none of them", async () => {
        const l = await listening(kind);
        try {
          const p = freshPrefix();
          const [a, b] = [`{${p}a}e:x`, `{${p}b}e:x`];
          assert.notEqual(slotOf(a), slotOf(b));
          await assert.rejects(l.handle.subscribe([a, b]), /CROSSSLOT/);
          assert.deepEqual(await shardSubscribers([a, b]), [0, 0]);
          // Not held: asking again really subscribes.
          await l.handle.subscribe([a]);
          await l.handle.subscribe([b]);
          assert.deepEqual(await shardSubscribers([a, b]), [1, 1]);
          await l.clients.publish(b, "one");
          await waitFor(() => l.seen.messages.length === 1, 5_000, "the message");
          assert.deepEqual(l.seen.messages, [[b, "one"]]);
        } finally {
          await l.close();
        }
      });

      it("reports a slot move, and the new owner's messages come", async () => {
        const l = await listening(kind);
        try {
          const p = freshPrefix();
          const [moving, staying] = channelsOf([`${p}m`, `${p}s`], 4) as [string[], string[]];
          await l.handle.subscribe(moving);
          await l.handle.subscribe(staying);
          const slot = slotOf(moving[0]!);
          const from = await cluster.masterOf(slot);
          // Another master, found by a slot it serves (a node's recorded role may be stale
          // right after the cluster was created).
          let to = from;
          for (let i = 0; to === from; i++) to = await cluster.masterOf(`{${p}to${i}}`);
          await cluster.moveSlot(slot, to);
          await waitFor(
            () =>
              l.seen.events.includes("moved") &&
              l.seen.events.lastIndexOf("connected") > l.seen.events.indexOf("moved"),
            15_000,
            "moved, then connected",
          );
          const reported = new Set(l.seen.moves.flat());
          for (const channel of moving) assert.ok(reported.has(channel), `${channel} moved`);
          // node-redis names exactly the channels of the moved slot; ioredis names them all.
          if (kind === "node-redis") assert.deepEqual([...reported].sort(), [...moving].sort());
          for (const channel of moving) await publishUntilHeard(l.clients, channel, "after");
          for (const channel of staying) await l.clients.publish(channel, "after");
          await waitFor(
            () => [...moving, ...staying].every((c) => textsOf(l.seen, c).includes("after")),
            10_000,
            "every channel's message after the move",
          );
          for (const channel of [...moving, ...staying]) {
            assert.deepEqual(textsOf(l.seen, channel), ["after"], channel);
          }
          assert.deepEqual(await shardSubscribers(moving), moving.map(() => 1));
          assert.equal(await cluster.masterOf(slot), to);
        } finally {
          await l.close();
        }
      });

      it("leaves no listener and no subscription after close", async () => {
        const c = await clients(kind);
        try {
          const p = freshPrefix();
          const groups = channelsOf([`${p}a`, `${p}b`, `${p}c`], 5);
          const emitters = (): Loose[] =>
            kind === "node-redis"
              ? [
                c.client,
                c.subscriber,
                ...c.subscriber.masters.map((m: Loose) => m.pubSub?.client).filter(Boolean),
              ]
              : [c.client, c.subscriber, c.subscriber.subscriberGroupEmitter];
          const counts = () => emitters().map(listenerCounts);
          const seen = recorder();
          const before = counts();
          const handle = await adapterFor(c.client, c.subscriber, { sharded: true })
            .listenMany!(seen);
          for (const group of groups) await handle.subscribe(group);
          // node-redis makes one pub/sub connection per master: hooked, and left at close.
          const hooked = emitters().length;
          assert.notDeepEqual(counts(), before);
          await handle.close();
          if (kind === "node-redis") {
            // Every pub/sub connection is gone with its last subscription.
            assert.equal(emitters().length, 2, `${hooked} emitters while subscribed`);
          }
          assert.deepEqual(counts(), before);
          assert.deepEqual(await shardSubscribers(groups.flat()), groups.flat().map(() => 0));
          assert.equal(await c.publish(groups[0]![0]!, "late"), 0);
          assert.deepEqual(seen.messages, []);
        } finally {
          c.close();
        }
      });
    });
  }

  // Last: each kills a master (one with a replica left), for good.
  for (const kind of clusterKinds) {
    it(`${kind}: reports a failover, and the promoted replica's messages come`, {
      timeout: 60_000,
    }, async () => {
      const l = await listening(kind);
      try {
        const p = freshPrefix();
        let tag = "";
        let master = 0;
        for (let i = 0; !tag; i++) {
          const port = await cluster.masterOf(`{${p}${i}}`);
          if ((await cluster.replicasOf(port)).length > 0) [tag, master] = [`${p}${i}`, port];
        }
        const [dying, other] = channelsOf([tag, `${p}o`], 4) as [string[], string[]];
        await l.handle.subscribe(dying);
        await l.handle.subscribe(other);
        for (const channel of dying) await l.clients.publish(channel, "before");
        await waitFor(() => l.seen.messages.length === 4, 5_000, "the messages before");
        const promoted = await cluster.killMaster(master);
        await waitFor(
          () => {
            const down = Math.min(
              ...["error", "moved"].map((e) => l.seen.events.indexOf(e)).filter((i) => i >= 0),
            );
            return Number.isFinite(down) && l.seen.events.lastIndexOf("connected") > down;
          },
          20_000,
          "error or moved, then connected",
        );
        assert.ok(l.seen.events.includes("moved"), `moved in ${l.seen.events.join(" ")}`);
        const reported = new Set(l.seen.moves.flat());
        for (const channel of dying) assert.ok(reported.has(channel), `${channel} moved`);
        for (const channel of dying) await publishUntilHeard(l.clients, channel, "after");
        for (const channel of other) await publishUntilHeard(l.clients, channel, "after");
        await waitFor(
          () => [...dying, ...other].every((c) => textsOf(l.seen, c).includes("after")),
          10_000,
          "every channel's message after the failover",
        );
        for (const channel of dying) {
          assert.deepEqual(textsOf(l.seen, channel), ["before", "after"], channel);
        }
        assert.equal(await cluster.masterOf(dying[0]!), promoted);
      } finally {
        await l.close();
      }
    });
  }
});
