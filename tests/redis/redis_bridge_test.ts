import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Broker, type BrokerOptions } from "../../mod.ts";
import { redisBridge, type RedisBridgeError } from "../../src/redis/mod.ts";
import { delay, waitFor } from "../_helpers.ts";
import { type RedisServer, startRedis } from "./_redis_server.ts";
import { clientKinds, collectEvents, connect, type Connections, dataOf } from "./_helpers.ts";

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
  return `t${++prefixes}${Math.random().toString(36).slice(2, 6)}:`;
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
): Promise<Worker> {
  const connections = await connect(kind, redis.url);
  const errors: RedisBridgeError[] = [];
  const bridge = redisBridge({
    client: connections.client,
    subscriber: connections.subscriber,
    prefix,
    timeout: 2_000,
    onError: (error) => errors.push(error),
  });
  const broker = new Broker({ heartbeat: null, writeTimeout: null, ...options, bridge });
  // A publish waits for the bridge to be open; wait here too so tests start subscribed.
  await broker.publish("warmup", "x");
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

for (const kind of clientKinds) {
  describe(`redisBridge with ${kind}`, () => {
    it("delivers a publish on any worker once to every subscriber, in publish order", async () => {
      const prefix = freshPrefix();
      const [a, b] = [await worker(kind, prefix), await worker(kind, prefix)];
      try {
        const readers = [a, a, b, b].map((w) => collectEvents(w.broker.subscribe("room")));
        const other = collectEvents(b.broker.subscribe("elsewhere"));
        const sent: string[] = [];
        for (let i = 0; i < 20; i++) {
          const from = i % 2 === 0 ? a : b;
          sent.push(`${i % 2 === 0 ? "a" : "b"}${i}`);
          await from.broker.publish("room", sent[i]);
        }
        await waitFor(() => readers.every((r) => r.events.length >= 20), 3_000, "20 events");
        await delay(50);
        for (const reader of readers) assert.deepEqual(dataOf(reader.events), sent);
        assert.equal(other.events.length, 0);
        for (const reader of [...readers, other]) await reader.cancel();
        assert.deepEqual([...a.errors, ...b.errors], []);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("resolves publish() only when local subscribers have the frame queued", async () => {
      const w = await worker(kind, freshPrefix());
      try {
        const stream = w.broker.subscribe("news");
        const reader = collectEvents(stream);
        // Many concurrent publishes: each must find its frame already queued when it settles.
        await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            w.broker.publish("news", `n${i}`).then(() => {
              assert.ok(w.broker.metrics().eventsDelivered >= 1);
            })),
        );
        assert.equal(w.broker.metrics().eventsDelivered, 30);
        await waitFor(() => reader.events.length === 30, 2_000, "30 events");
        await reader.cancel();
      } finally {
        await w.close();
      }
    });

    it("replays on another worker exactly what a client missed, on several channels", async () => {
      const prefix = freshPrefix();
      const [a, b] = [
        await worker(kind, prefix, { history: 50 }),
        await worker(kind, prefix, { history: 50 }),
      ];
      try {
        const first = collectEvents(a.broker.subscribe(["x", "y"]));
        await a.broker.publish("x", "x1");
        await b.broker.publish("y", "y1");
        await waitFor(() => first.events.length === 2, 2_000, "2 events");
        const lastEventId = first.events[1]!.lastEventId;
        assert.match(lastEventId, /^[0-9a-z]+-\d+$/);
        await first.cancel();
        // Missed while away: on both channels, a broadcast, and one on a channel it has not.
        await a.broker.publish("x", "x2");
        await b.broker.publish("z", "z1");
        await b.broker.broadcast("all1");
        await a.broker.publish("y", "y2");
        const resumed = collectEvents(b.broker.subscribe(["x", "y"], { lastEventId }));
        await waitFor(() => resumed.events.length >= 3, 2_000, "the replay");
        await b.broker.publish("x", "x3");
        await waitFor(() => resumed.events.length >= 4, 2_000, "a live event after it");
        await delay(50);
        assert.deepEqual(resumed.events.map((e) => e.data), ["x2", "all1", "y2", "x3"]);
        // Ids are the same on every worker: the resumed client's ids continue the first's.
        const ids = resumed.events.map((e) => Number(e.lastEventId.split("-")[1]));
        assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]!));
        await resumed.cancel();
        assert.equal(b.broker.metrics().replayHits, 1);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("sends the gap signal when the missed events fell out of the capped history", async () => {
      const prefix = freshPrefix();
      const [a, b] = [
        await worker(kind, prefix, { history: 3 }),
        await worker(kind, prefix, { history: 3 }),
      ];
      try {
        const first = collectEvents(a.broker.subscribe("c"));
        await a.broker.publish("c", "c1");
        await waitFor(() => first.events.length === 1, 2_000, "1 event");
        const lastEventId = first.events[0]!.lastEventId;
        await first.cancel();
        for (let i = 2; i <= 6; i++) await a.broker.publish("c", `c${i}`);
        // The stream keeps exactly `history` entries.
        assert.equal(Number(await a.connections.command(["XLEN", `${prefix}c:c`])), 3);
        const resumed = collectEvents(b.broker.subscribe("c", { lastEventId }));
        await waitFor(() => resumed.events.length >= 4, 2_000, "replay and gap");
        assert.deepEqual(resumed.events.map((e) => e.type), [
          "message",
          "message",
          "message",
          "stream-reset",
        ]);
        assert.deepEqual(JSON.parse(resumed.events[3]!.data).channels, ["c"]);
        // Still within history: no gap.
        const near = collectEvents(
          b.broker.subscribe("c", { lastEventId: resumed.events[0]!.lastEventId }),
        );
        await waitFor(() => near.events.length >= 2, 2_000, "near replay");
        await delay(50);
        assert.deepEqual(near.events.map((e) => e.data), ["c5", "c6"]);
        await resumed.cancel();
        await near.cancel();
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("resumes from an id the publisher chose, and answers a forged id with the gap signal", async () => {
      const prefix = freshPrefix();
      const w = await worker(kind, prefix, { history: 10 });
      try {
        await w.broker.publish("o", "o1", { id: "order-1" });
        await w.broker.publish("o", "o2", { id: "order-2" });
        await w.broker.publish("o", "o3");
        const resumed = collectEvents(w.broker.subscribe("o", { lastEventId: "order-1" }));
        await waitFor(() => resumed.events.length >= 2, 2_000, "replay");
        assert.deepEqual(resumed.events.map((e) => e.data), ["o2", "o3"]);
        assert.equal(resumed.events[0]!.lastEventId, "order-2");
        for (const forged of ["zzz-1", "nope", "0-999999999", "x".repeat(10_000)]) {
          const r = collectEvents(w.broker.subscribe("o", { lastEventId: forged }));
          await waitFor(() => r.events.length >= 1, 2_000, "gap signal");
          assert.equal(r.events[0]!.type, "stream-reset");
          await r.cancel();
        }
        await resumed.cancel();
      } finally {
        await w.close();
      }
    });

    it("skips and reports a malformed message on its Redis channel", async () => {
      const prefix = freshPrefix();
      const w = await worker(kind, prefix, { history: 5 });
      try {
        const reader = collectEvents(w.broker.subscribe("m"));
        const junk = [
          "hello",
          "f1 abc 99999 1 -1 mdata: x\n\n",
          "f1 abc 1 1 -1 mevent: a\n\nevent: b\n\n",
          "f1 ABC 2 1 -1 mdata: x\n\n",
          "f1 abc 3 5 -1 m",
          '{"channel":"m","data":"x"}',
        ];
        for (const text of junk) await w.connections.command(["PUBLISH", `${prefix}events`, text]);
        await w.broker.publish("m", "real");
        await waitFor(() => reader.events.length >= 1, 2_000, "the real event");
        await delay(50);
        assert.deepEqual(reader.events.map((e) => e.data), ["real"]);
        const malformed = w.errors.filter((e) => e.reason === "malformed");
        assert.equal(malformed.length, junk.length, malformed.map((e) => e.message).join("\n"));
        assert.match(malformed[0]!.message, /^Cannot deliver message from `t\d+\w*:events`: /);
        assert.match(malformed[1]!.message, /: Redis is at epoch `[0-9a-z]+`, got `f1 abc 99999 /);
        assert.equal(reader.done, false);
        await reader.cancel();
      } finally {
        await w.close();
      }
    });

    it("keeps apps with different prefixes apart on one Redis", async () => {
      const [a, b] = [await worker(kind, freshPrefix()), await worker(kind, freshPrefix())];
      try {
        const ra = collectEvents(a.broker.subscribe("shared"));
        const rb = collectEvents(b.broker.subscribe("shared"));
        await a.broker.publish("shared", "for-a");
        await b.broker.publish("shared", "for-b");
        await waitFor(() => ra.events.length === 1 && rb.events.length === 1, 2_000, "events");
        await delay(50);
        assert.deepEqual([ra.events.map((e) => e.data), rb.events.map((e) => e.data)], [
          ["for-a"],
          ["for-b"],
        ]);
        await ra.cancel();
        await rb.cancel();
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("removes every listener it added when the broker closes", async () => {
      const connections = await connect(kind, redis.url);
      try {
        // deno-lint-ignore no-explicit-any
        const c = connections.client as any, s = connections.subscriber as any;
        const count = () =>
          kind === "bun"
            ? [c.onconnect, s.onconnect]
            : ["ready", "error", "message"].flatMap((n) => [
              c.listenerCount(n),
              s.listenerCount(n),
            ]);
        const before = count();
        const broker = new Broker({
          bridge: redisBridge({ ...connections, prefix: freshPrefix() }),
        });
        await broker.publish("a", "b");
        assert.notDeepEqual(count(), before);
        await broker.close();
        assert.deepEqual(count(), before);
        await assert.rejects(broker.publish("a", "b"));
      } finally {
        await connections.close();
      }
    });
  });
}

describe("redisBridge options", () => {
  it("refuses what is not a pair of known Redis clients", () => {
    assert.throws(() => redisBridge({}), TypeError);
    assert.throws(() => redisBridge({ client: {}, subscriber: {} }), /`client` and `subscriber`/);
    const fake = { sendCommand() {}, isReady: true };
    assert.throws(() => redisBridge({ client: fake, subscriber: fake }), /its own connection/);
    assert.throws(
      () =>
        redisBridge({
          adapter: {
            command: () => Promise.resolve(),
            ready: () => true,
            listen: () => Promise.resolve(() => Promise.resolve()),
          },
          timeout: 0,
        }),
      RangeError,
    );
    const adapter = {
      command: () => Promise.resolve(),
      ready: () => true,
      listen: () => Promise.resolve(() => Promise.resolve()),
    };
    for (const healWindow of [-1, 1.5, Number.NaN]) {
      assert.throws(
        () => redisBridge({ adapter, healWindow }),
        (error) =>
          error instanceof RangeError &&
          error.message.startsWith(
            "Cannot create Redis bridge: `healWindow` must be a non-negative integer, got",
          ),
      );
    }
    redisBridge({ adapter, healWindow: 0 }); // 0 turns the heal log off
  });
});
