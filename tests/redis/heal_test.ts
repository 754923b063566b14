/**
 * The Redis bridge heals in-band: events its subscription missed are fetched from the heal log
 * and delivered in order, with no call to `lost`; only history that is really gone (trimmed
 * from the log, or a Redis restarted without persistence) reaches the broker through `lost`.
 * These tests read the bridge directly: what it delivers and what it reports, in order.
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Bridge, BridgeEvent, BridgeGap } from "../../mod.ts";
import {
  redisBridge,
  type RedisBridgeAdapter,
  type RedisBridgeError,
  type RedisBridgeOptions,
} from "../../src/redis/mod.ts";
import { adapterFor } from "../../src/redis/_adapters.ts";
import { type BridgeStats, bridgeStatsOf } from "../../src/_bridge_stats.ts";
import { delay, waitFor } from "../_helpers.ts";
import { type RedisServer, startRedis } from "./_redis_server.ts";
import { type ClientKind, clientKinds, connect, type Connections } from "./_helpers.ts";

let redis: RedisServer;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.stop();
});

function freshPrefix(): string {
  return `heal${Math.random().toString(36).slice(2, 8)}:`;
}

/** What a bridge handed its broker, in order. */
type Fed = { event: BridgeEvent } | { gap: BridgeGap };

interface Feed {
  bridge: Bridge;
  fed: Fed[];
  errors: RedisBridgeError[];
  connections: Connections;
  readonly events: BridgeEvent[];
  readonly gaps: BridgeGap[];
  readonly stats: BridgeStats;
  close(): Promise<void>;
}

/** Opens a bridge on `url` that records what it delivers and what it reports lost. */
async function feed(
  kind: ClientKind,
  url: string,
  prefix: string,
  options: Partial<RedisBridgeOptions> & { lossy?: (text: string) => boolean } = {},
): Promise<Feed> {
  const connections = await connect(kind, url);
  const errors: RedisBridgeError[] = [];
  const fed: Fed[] = [];
  const { lossy, ...rest } = options;
  let adapter: RedisBridgeAdapter | undefined;
  if (lossy) {
    const real = adapterFor(connections.client, connections.subscriber);
    adapter = {
      ...real,
      listen: (channel, listener) =>
        real.listen(channel, {
          ...listener,
          message: (text) => {
            if (!lossy(text)) listener.message(text);
          },
        }),
    };
  }
  const bridge = redisBridge({
    ...(adapter ? { adapter } : connections),
    prefix,
    timeout: 2_000,
    onError: (error) => errors.push(error),
    ...rest,
  });
  await bridge.open(
    (event) => fed.push({ event }),
    (gap) => fed.push({ gap }),
    { ttl: 600_000, bytes: 1 << 25 },
  );
  return {
    bridge,
    fed,
    errors,
    connections,
    get events() {
      return fed.flatMap((f) => "event" in f ? [f.event] : []);
    },
    get gaps() {
      return fed.flatMap((f) => "gap" in f ? [f.gap] : []);
    },
    get stats() {
      return bridgeStatsOf(bridge)!;
    },
    close: async () => {
      await bridge.close();
      await connections.close();
    },
  };
}

function body(data: string): string {
  return `data: ${data}\n\n`;
}

function dataOfEvents(events: readonly BridgeEvent[]): string[] {
  return events.map((e) => e.body.slice(6, -2));
}

/** Asserts that the seqs go up by one from `from`. */
function assertContiguous(events: readonly BridgeEvent[], from: number): void {
  assert.deepEqual(
    events.map((e) => e.seq),
    events.map((_, i) => from + i),
    "every event, in order, once",
  );
}

async function pubsubIds(c: Connections): Promise<string[]> {
  const list = String(await c.command(["CLIENT", "LIST", "TYPE", "pubsub"]));
  return [...list.matchAll(/(?:^|\s)id=(\d+)/g)].map((m) => m[1]!);
}

for (const kind of clientKinds) {
  describe(`redisBridge with ${kind} when Redis drops its subscription`, () => {
    it(
      "fetches what it missed from the heal log and delivers every event in order, `lost` never called",
      {
        timeout: 20_000,
      },
      async () => {
        const prefix = freshPrefix();
        const a = await feed(kind, redis.url, prefix);
        const before = new Set(await pubsubIds(a.connections));
        const b = await feed(kind, redis.url, prefix);
        try {
          const mine = (await pubsubIds(a.connections)).filter((id) => !before.has(id));
          assert.equal(mine.length, 1, "one new subscriber: b's");
          const first = await a.bridge.publish({ channel: "room", body: body("e0") }, 0);
          await waitFor(() => b.events.length === 1, 2_000, "e0");
          // As `client-output-buffer-limit pubsub` does to a slow subscriber. The burst follows
          // the kill on the same connection, so Redis runs it before b can be back (some
          // clients reconnect within a millisecond).
          const kill = a.connections.command(["CLIENT", "KILL", "ID", mine[0]!]);
          const sent = Array.from({ length: 200 }, (_, i) => `e${i + 1}`);
          await Promise.all([
            kill,
            ...sent.map((data, i) =>
              a.bridge.publish({ channel: i % 2 ? "room" : "other", body: body(data) }, 0)
            ),
          ]);
          await waitFor(() => b.events.length === 201, 8_000, "every event on b");
          await delay(50);
          assert.deepEqual(b.gaps, [], "lost never called");
          assertContiguous(b.events, first.seq);
          assert.deepEqual(dataOfEvents(b.events), dataOfEvents(a.events));
          assert.ok(b.stats.eventsHealed > 0, "some events came from the log");
          assert.ok(b.stats.holesHealed >= 1);
          assert.equal(b.stats.losses, 0);
          assert.equal(b.stats.messagesRefused, 0);
          assert.deepEqual(b.errors.filter((e) => e.reason === "lost"), []);
        } finally {
          await a.close();
          await b.close();
        }
      },
    );
  });
}

describe("redisBridge when Redis cuts a slow subscriber at its output buffer limit", () => {
  it("heals the burst it missed: every event in order on every worker, `lost` never called", {
    timeout: 20_000,
  }, async () => {
    const own = await startRedis();
    const prefix = freshPrefix();
    const a = await feed("ioredis", own.url, prefix, { timeout: 5_000 });
    const b = await feed("ioredis", own.url, prefix, { timeout: 5_000 });
    try {
      const first = await a.bridge.publish({ channel: "big", body: body("b0") }, 0);
      await waitFor(() => b.events.length === 1, 2_000, "b0");
      const before = await pubsubIds(a.connections);
      await a.connections.command([
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 1 1 0",
      ]);
      // Light traffic fits Redis's 16 KB reply buffer; 200 events of 6 KB, pipelined, do not,
      // and a single byte queued beyond it cuts the subscription.
      const sent = Array.from({ length: 200 }, (_, i) => `b${i + 1}:${"x".repeat(6_000)}`);
      await Promise.all(
        sent.map((data) => a.bridge.publish({ channel: "big", body: body(data) }, 0)),
      );
      await a.connections.command([
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 32mb 8mb 60",
      ]);
      const after = await pubsubIds(a.connections);
      assert.ok(before.every((id) => !after.includes(id)), "Redis cut both subscriptions");
      await waitFor(() => b.events.length === 201, 8_000, "every event on b");
      for (const w of [a, b]) {
        assert.deepEqual(w.gaps, [], "lost never called");
        assertContiguous(w.events, first.seq);
        assert.deepEqual(dataOfEvents(w.events).slice(1), sent);
        assert.ok(w.stats.eventsHealed > 0);
      }
    } finally {
      await a.close();
      await b.close();
      await own.stop();
    }
  });
});

describe("redisBridge when a hole is no longer in the heal log", () => {
  it(
    "calls `lost` once (every channel, with the new position), then delivers what the log still has",
    {
      timeout: 20_000,
    },
    async () => {
      const prefix = freshPrefix();
      // A one-event window: Redis trims whole nodes of 100 entries, so the log keeps the newest
      // few dozen of the 150 that b misses.
      const a = await feed("ioredis", redis.url, prefix, { healWindow: 1 });
      let drop = 0;
      const b = await feed("ioredis", redis.url, prefix, {
        lossy: (text) => !text.endsWith(" head") && drop-- > 0,
      });
      try {
        const first = await a.bridge.publish({ channel: "x", body: body("x0") }, 0);
        await waitFor(() => b.events.length === 1, 2_000, "x0");
        drop = 150;
        for (let i = 1; i <= 151; i++) {
          await a.bridge.publish({
            channel: "x",
            body: body(`x${i}`),
          }, 0);
        }
        await waitFor(() => b.events.at(-1)?.seq === first.seq + 151, 5_000, "x151");
        const length = Number(await a.connections.command(["XLEN", `${prefix}log`]));
        assert.ok(length < 100, `the log was trimmed, got \`${length}\``);
        assert.equal(b.gaps.length, 1);
        const [gap] = b.gaps;
        const epoch = String(await a.connections.command(["HGET", `${prefix}meta`, "epoch"]));
        assert.equal(gap!.channels, null);
        assert.equal(gap!.after, `${epoch}-${first.seq}`);
        assert.ok(gap!.head !== undefined);
        assert.equal(gap!.head.id, `${epoch}-${gap!.head.seq}`);
        // x0, the signal, then everything after its position, in order.
        assert.ok("event" in b.fed[0]! && "gap" in b.fed[1]!);
        const rest = b.events.slice(1);
        assert.equal(rest[0]!.seq, gap!.head.seq + 1);
        assertContiguous(rest, gap!.head.seq + 1);
        assert.equal(rest.at(-1)!.seq, first.seq + 151);
        assert.equal(b.stats.losses, 1);
        assert.equal(
          b.stats.eventsHealed,
          rest.length - 1,
          "all but the message that showed the hole",
        );
        assert.deepEqual(b.errors.map((e) => e.reason), ["lost"]);
      } finally {
        await a.close();
        await b.close();
      }
    },
  );

  it("calls `lost` when the log expired, positioned at the last missing event", async () => {
    const prefix = freshPrefix();
    const a = await feed("ioredis", redis.url, prefix);
    let drop = 0;
    const b = await feed("ioredis", redis.url, prefix, {
      lossy: (text) => !text.endsWith(" head") && drop-- > 0,
    });
    try {
      const first = await a.bridge.publish({ channel: "y", body: body("y0") }, 5);
      await waitFor(() => b.events.length === 1, 2_000, "y0");
      drop = 3;
      for (let i = 1; i <= 3; i++) await a.bridge.publish({ channel: "y", body: body(`y${i}`) }, 5);
      await a.connections.command(["DEL", `${prefix}log`]); // as its ttl would
      const last = await a.bridge.publish({ channel: "y", body: body("y4") }, 5);
      await waitFor(() => b.events.length === 2, 2_000, "y4");
      const { epoch } = idParts(first.id!);
      assert.deepEqual(b.gaps, [{
        channels: null,
        after: first.id,
        head: { seq: last.seq - 1, id: `${epoch}-${last.seq - 1}` },
      }]);
      assert.deepEqual(dataOfEvents(b.events), ["y0", "y4"]);
      assert.deepEqual(b.stats, { eventsHealed: 0, holesHealed: 0, losses: 1, messagesRefused: 0 });
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe("redisBridge and messages it did not write", () => {
  it("refuses forged holes, epochs, events and garbage without ever calling `lost`", async () => {
    const prefix = freshPrefix();
    const a = await feed("ioredis", redis.url, prefix);
    const b = await feed("ioredis", redis.url, prefix);
    try {
      const first = await a.bridge.publish({ channel: "r", body: body("r0") }, 5);
      await waitFor(() => b.events.length === 1, 2_000, "r0");
      const { epoch, seq } = idParts(first.id!);
      const channel = `${prefix}events`;
      const forgeries = [
        `f1 ${epoch} ${seq + 1000} head`,
        `f1 ${epoch} ${seq + 1000} 1 -1 rdata: forged\n\n`,
        `f1 ${epoch} ${seq} 1 -1 rdata: forged\n\n`, // a seq delivered already
        `f1 ${epoch} ${seq + 2} 1 -1 rdata: forged\n\n`, // one ahead of the next: a hole claim
        `f1 zz9forged ${seq} head`,
        `f1 zz9forged 1 1 -1 rdata: forged\n\n`,
        "garbage",
      ];
      for (const text of forgeries) await a.connections.command(["PUBLISH", channel, text]);
      for (let i = 1; i <= 4; i++) await a.bridge.publish({ channel: "r", body: body(`r${i}`) }, 5);
      await waitFor(() => b.events.length === 5, 3_000, "every real event");
      await delay(50);
      for (const w of [a, b]) {
        assert.deepEqual(w.gaps, [], "lost never called");
        assertContiguous(w.events, seq);
        assert.deepEqual(dataOfEvents(w.events), ["r0", "r1", "r2", "r3", "r4"]);
        assert.equal(w.stats.messagesRefused, forgeries.length);
        assert.deepEqual(w.errors.map((e) => e.reason), forgeries.map(() => "malformed"));
      }
    } finally {
      await a.close();
      await b.close();
    }
  });
});

for (const kind of clientKinds) {
  describe(`redisBridge with ${kind} when Redis restarts without persistence`, () => {
    it("calls `lost` once with the new epoch's position, then delivers every later event", {
      timeout: 30_000,
    }, async () => {
      const own = await startRedis();
      const prefix = freshPrefix();
      const a = await feed(kind, own.url, prefix);
      const b = await feed(kind, own.url, prefix);
      try {
        const first = await a.bridge.publish({ channel: "s", body: body("s0") }, 5);
        await waitFor(() => b.events.length === 1, 2_000, "s0");
        await own.kill();
        await own.restart();
        const deadline = Date.now() + 10_000;
        for (;;) {
          try {
            await a.bridge.publish({ channel: "s", body: body("after") }, 5);
            break;
          } catch (error) {
            if (Date.now() > deadline) throw error;
            await delay(50);
          }
        }
        const last = await a.bridge.publish({ channel: "s", body: body("last") }, 5);
        await waitFor(() => b.events.at(-1)?.body === body("last"), 8_000, "the last event on b");
        const old = idParts(first.id!).epoch;
        const now = idParts(last.id!).epoch;
        assert.notEqual(now, old, "a new epoch");
        for (const w of [a, b]) {
          assert.equal(w.gaps.length, 1, JSON.stringify(w.gaps));
          const gap = w.gaps[0]!;
          assert.equal(gap.channels, null);
          assert.equal(gap.after, first.id);
          assert.equal(idParts(gap.head!.id).epoch, now);
          // Redis counts from 1 again; the order the broker sees keeps growing.
          assert.ok(gap.head!.seq > first.seq, `head ${gap.head!.seq} after ${first.seq}`);
          const seqs = w.events.map((e) => e.seq);
          assert.ok(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!), String(seqs));
          const at = w.fed.findIndex((f) => "gap" in f);
          assert.deepEqual(dataOfEvents(w.events.slice(0, at)), ["s0"]);
          const later = w.events.slice(at);
          assertContiguous(later, gap.head!.seq + 1);
          assert.equal(later.at(-1)!.seq, last.seq);
          assert.equal(w.stats.losses, 1);
        }
      } finally {
        await a.close();
        await b.close();
        await own.stop();
      }
    });
  });
}

function idParts(id: string): { epoch: string; seq: number } {
  const [epoch, seq] = id.split("-") as [string, string];
  return { epoch, seq: Number(seq) };
}
