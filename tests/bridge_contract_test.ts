/**
 * The `Bridge` contract (src/bridge.ts) as one set of behavioural tests, run against every
 * bridge: the broker's in-memory one and `redisBridge()` with each Redis client kind, on a real
 * `redis-server` started here. A bridge that passes can carry a broker.
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Bridge, BridgeEvent } from "../src/bridge.ts";
import { MemoryBridge } from "../src/_memory_bridge.ts";
import { redisBridge, type RedisBridgeError } from "../src/redis/mod.ts";
import { runtime, waitFor } from "./_helpers.ts";
import { type RedisServer, startRedis } from "./redis/_redis_server.ts";
import { type ClientKind, connect } from "./redis/_helpers.ts";

let redis: RedisServer | undefined;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

/** Bridges that share one order: a broker on each. */
interface Group {
  /** One more bridge of the group, not yet open. */
  bridge(): Promise<Bridge>;
  /** Closes what the group opened (connections), after the bridges are closed. */
  close(): Promise<void>;
  /** What the bridges reported, if they report (Redis). */
  errors: unknown[];
}

interface Subject {
  name: string;
  /** A reason to skip the subject under this runtime, or false. */
  skip: string | false;
  /** How many bridges can share one order: the memory bridge is one process. */
  peers: number;
  group(): Promise<Group>;
}

let prefixes = 0;

function redisSubject(kind: ClientKind): Subject {
  return {
    name: `redisBridge with ${kind}`,
    skip: kind === "bun" && runtime !== "bun"
      ? "Bun's built-in RedisClient exists only under Bun"
      : false,
    peers: 3,
    group: () => {
      const prefix = `contract${++prefixes}${Math.random().toString(36).slice(2, 6)}:`;
      const closers: (() => Promise<void>)[] = [];
      const errors: RedisBridgeError[] = [];
      return Promise.resolve({
        errors,
        async bridge() {
          const connections = await connect(kind, redis!.url);
          closers.push(connections.close);
          return redisBridge({
            client: connections.client,
            subscriber: connections.subscriber,
            prefix,
            timeout: 3_000,
            onError: (error) => errors.push(error),
          });
        },
        async close() {
          for (const close of closers) await close();
        },
      });
    },
  };
}

const subjects: Subject[] = [
  {
    name: "MemoryBridge",
    skip: false,
    peers: 1,
    group: () =>
      Promise.resolve({
        errors: [],
        bridge: () => Promise.resolve(new MemoryBridge()),
        close: () => Promise.resolve(),
      }),
  },
  redisSubject("node-redis"),
  redisSubject("ioredis"),
  redisSubject("bun"),
];

/** An open bridge and what went through its `deliver`. */
interface Opened {
  bridge: Bridge;
  seen: BridgeEvent[];
}

async function open(bridge: Bridge): Promise<Opened> {
  const seen: BridgeEvent[] = [];
  await bridge.open((event) => seen.push(event));
  return { bridge, seen };
}

/** One stored frame body as the broker writes it. */
function body(data: string): string {
  return `data: ${data}\n\n`;
}

/** Runs `test` on `n` open bridges of a fresh group, and closes everything after. */
async function withBridges(
  subject: Subject,
  n: number,
  test: (bridges: Opened[], group: Group) => Promise<void>,
): Promise<void> {
  const group = await subject.group();
  const bridges: Opened[] = [];
  try {
    for (let i = 0; i < n; i++) bridges.push(await open(await group.bridge()));
    await test(bridges, group);
  } finally {
    for (const { bridge } of bridges) await bridge.close();
    await group.close();
  }
}

const FORGED = [
  "",
  "nope",
  "zzz-1",
  "0-999999999999999",
  "abc-",
  "-1",
  "1e3",
  "id\nwith\nbreaks",
  "nul\0",
  "\u{1F600}-1",
  "x".repeat(10_000),
];

for (const subject of subjects) {
  const title = `Bridge contract: ${subject.name}${
    subject.skip ? ` (skipped: ${subject.skip})` : ""
  }`;
  describe(title, { skip: subject.skip }, () => {
    it("publish() resolves after its own event went through deliver", async () => {
      await withBridges(subject, 1, async ([a]) => {
        const settled = await Promise.all(
          Array.from(
            { length: 20 },
            (_, i) =>
              a!.bridge.publish({ channel: "c", body: body(`e${i}`) }, 0).then((event) => {
                // Checked at the moment it resolves, not later.
                assert.ok(a!.seen.some((e) => e.seq === event.seq), `event ${event.seq} delivered`);
                return event;
              }),
          ),
        );
        assert.equal(new Set(settled.map((e) => e.seq)).size, 20);
        assert.deepEqual(settled.map((e) => e.body), settled.map((_, i) => body(`e${i}`)));
      });
    });

    it("delivers every event to every bridge once, in the same seq order, its own included", async () => {
      await withBridges(subject, subject.peers, async (bridges) => {
        const published: BridgeEvent[] = [];
        await Promise.all(bridges.map(async ({ bridge }, b) => {
          for (let i = 0; i < 10; i++) {
            published.push(
              await bridge.publish({ channel: i % 2 ? "x" : null, body: body(`${b}.${i}`) }, 5),
            );
          }
        }));
        const total = 10 * bridges.length;
        await waitFor(() => bridges.every((o) => o.seen.length >= total), 5_000, "every event");
        const order = [...published].sort((p, q) => p.seq - q.seq);
        for (const { seen } of bridges) {
          assert.equal(seen.length, total, "exactly once");
          const seqs = seen.map((e) => e.seq);
          assert.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]!), "in seq order");
          // The same events, with the same ids and bodies, as publish() returned.
          assert.deepEqual(seen, order);
        }
      });
    });

    it("assigns an id when history is kept, keeps a caller's id, and gives none without history", async () => {
      await withBridges(subject, 1, async ([a]) => {
        const none = await a!.bridge.publish({ channel: "i", body: body("0") }, 0);
        const made = await a!.bridge.publish({ channel: "i", body: body("1") }, 3);
        const given = await a!.bridge.publish({ channel: "i", body: body("2"), id: "mine" }, 3);
        const givenNoHistory = await a!.bridge.publish(
          { channel: "i", body: body("3"), id: "kept" },
          0,
        );
        assert.equal(none.id, undefined);
        assert.equal(typeof made.id, "string");
        assert.ok(made.id!.length > 0);
        assert.equal(given.id, "mine");
        assert.equal(givenNoHistory.id, "kept");
        assert.ok(none.seq < made.seq && made.seq < given.seq && given.seq < givenNoHistory.seq);
        assert.deepEqual(a!.seen.map((e) => e.id), [undefined, made.id, "mine", "kept"]);
      });
    });

    it("replays exactly the missed events of the client's channels and broadcasts, in order, with a head", async () => {
      await withBridges(subject, subject.peers, async (bridges) => {
        const a = bridges[0]!.bridge;
        const b = bridges[bridges.length - 1]!.bridge;
        const from = await a.publish({ channel: "a", body: body("a1") }, 10);
        const b1 = await b.publish({ channel: "b", body: body("b1") }, 10);
        const all = await a.publish({ channel: null, body: body("all") }, 10);
        const other = await b.publish({ channel: "z", body: body("z1") }, 10);
        const a2 = await a.publish({ channel: "a", body: body("a2") }, 10);
        const replay = await b.replay(["a"], from.id!);
        assert.deepEqual(replay.events, [all, a2]);
        assert.deepEqual(replay.gaps, []);
        assert.ok(replay.head.seq >= a2.seq);
        assert.equal(typeof replay.head.id, "string");
        // Every event up to the head went through deliver before the replay resolved, on the
        // bridge that replays too (a2 came from another one when there are several).
        assert.ok(bridges.at(-1)!.seen.some((e) => e.seq === replay.head.seq));
        const both = await a.replay(["a", "b"], from.id!);
        assert.deepEqual(both.events, [b1, all, a2]);
        assert.ok(!both.events.includes(other));
        // From a caller's id, too.
        const mine = await a.publish({ channel: "a", body: body("a3"), id: "order-7" }, 10);
        const a4 = await b.publish({ channel: "a", body: body("a4") }, 10);
        assert.deepEqual((await b.replay(["a"], "order-7")).events, [a4]);
        assert.deepEqual((await a.replay(["a"], mine.id!)).gaps, []);
        // At the head: nothing missed.
        const none = await a.replay(["a", "b"], a4.id!);
        assert.deepEqual([none.events, none.gaps], [[], []]);
        assert.equal(none.head.seq, a4.seq);
      });
    });

    it("reports a gap for a channel whose missed events fell out of history", async () => {
      await withBridges(subject, 1, async ([a]) => {
        const first = await a!.bridge.publish({ channel: "g", body: body("g1") }, 2);
        const kept = await a!.bridge.publish({ channel: "k", body: body("k1") }, 2);
        const events: BridgeEvent[] = [];
        for (let i = 2; i <= 5; i++) {
          events.push(await a!.bridge.publish({ channel: "g", body: body(`g${i}`) }, 2));
        }
        const replay = await a!.bridge.replay(["g", "k"], first.id!);
        assert.deepEqual(replay.gaps, ["g"]);
        assert.deepEqual(replay.events, [kept, ...events.slice(-2)]);
        // A broadcast that fell out is lost on every channel.
        const before = await a!.bridge.publish({ channel: "k", body: body("k2") }, 2);
        for (let i = 0; i < 3; i++) await a!.bridge.publish({ channel: null, body: body("b") }, 2);
        const broadcastGap = await a!.bridge.replay(["k"], before.id!);
        assert.deepEqual(broadcastGap.gaps, ["k"]);
      });
    });

    it("answers a bad or forged Last-Event-ID with a gap on every channel, never a throw", async () => {
      await withBridges(subject, 1, async ([a]) => {
        const last = await a!.bridge.publish({ channel: "f", body: body("f1") }, 5);
        for (const forged of FORGED) {
          const replay = await a!.bridge.replay(["f", "g"], forged);
          assert.deepEqual(replay.events, [], JSON.stringify(forged.slice(0, 20)));
          assert.deepEqual(replay.gaps, ["f", "g"], JSON.stringify(forged.slice(0, 20)));
          assert.equal(replay.head.seq, last.seq);
        }
      });
    });

    it("stops delivering once closed", async () => {
      await withBridges(subject, subject.peers, async (bridges) => {
        const closed = bridges[0]!;
        const live = bridges.at(-1)!;
        await closed.bridge.publish({ channel: "s", body: body("before") }, 0);
        await closed.bridge.close();
        const count = closed.seen.length;
        // On the closed bridge itself a publish may reject; it must not deliver.
        await closed.bridge.publish({ channel: "s", body: body("after") }, 0).catch(() => {});
        const later = await live.bridge.publish({ channel: "s", body: body("elsewhere") }, 0);
        if (bridges.length > 1) {
          await waitFor(() => bridges.slice(1).every((o) => o.seen.at(-1)?.seq === later.seq));
        }
        assert.equal(closed.seen.length, count);
        await closed.bridge.close(); // twice is fine
      });
    });
  });
}
