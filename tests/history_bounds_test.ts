import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type Bridge,
  type BridgeEvent,
  Broker,
  formatMetrics,
  type HistoryLimits,
  STREAM_RESET_EVENT,
} from "../mod.ts";
import { MemoryBridge } from "../src/_memory_bridge.ts";
import { historyStatsOf } from "../src/_bridge_stats.ts";
import { settle, VirtualClock } from "./_clock.ts";
import { readEvents, runtime } from "./_helpers.ts";
import { runFixture } from "./fixtures/_spawn.ts";

const BODY = "data: x\n\n";

/** A MemoryBridge opened with `limits`, with shorthands for the checks below. */
async function history(limits: HistoryLimits) {
  const bridge = new MemoryBridge();
  await bridge.open(() => {}, undefined, limits);
  // Position 0, before every event: the head of a bridge that has published nothing.
  const start = (await bridge.replay([], "unknown")).head.id;
  return {
    bridge,
    start,
    publish: (channel: string | null, id?: string): Promise<BridgeEvent> =>
      bridge.publish(id === undefined ? { channel, body: BODY } : { channel, body: BODY, id }, 10),
    /** The channels with a gap for a client at `id` (a replay: it touches the channels). */
    gaps: async (channels: string[], id: string | undefined): Promise<string[]> =>
      (await bridge.replay(channels, id!)).gaps,
    events: async (channels: string[], id: string | undefined): Promise<string[]> =>
      (await bridge.replay(channels, id!)).events.map((e) => e.channel ?? "*"),
    stats: () => historyStatsOf(bridge)!,
  };
}

/** The estimated cost of a ring holding one event of BODY, and of a tombstone. */
async function costs(): Promise<{ ring: number; tombstone: number }> {
  const c = new VirtualClock().install();
  try {
    const h = await history({ ttl: 1, bytes: 1e9 });
    await h.publish("a");
    const ring = h.stats().bytes;
    await c.advance(1);
    await h.bridge.publish({ channel: "b", body: BODY }, 0); // a sweep, nothing stored
    return { ring, tombstone: h.stats().bytes };
  } finally {
    c.uninstall();
  }
}

describe("Broker history options", () => {
  it("passes historyTtl and historyBytes, or their defaults, to the bridge", async () => {
    for (
      const [options, expected] of [
        [{}, { ttl: 3_600_000, bytes: 33_554_432 }],
        [{ historyTtl: 5, historyBytes: 1_000 }, { ttl: 5, bytes: 1_000 }],
      ] as const
    ) {
      let limits: HistoryLimits | undefined;
      const inner = new MemoryBridge();
      const bridge: Bridge = {
        open: (deliver, lost, given) => {
          limits = given;
          return inner.open(deliver, lost, given);
        },
        publish: (event, n) => inner.publish(event, n),
        replay: (channels, id) => inner.replay(channels, id),
        close: () => inner.close(),
      };
      const broker = new Broker({ bridge, ...options });
      assert.deepEqual(limits, expected);
      await broker.close();
    }
  });

  for (const name of ["historyTtl", "historyBytes"] as const) {
    for (const value of [0, -1, 1.5, NaN, Infinity, "10" as unknown as number]) {
      it(`refuses ${name} ${typeof value === "string" ? `"${value}"` : value} with a RangeError`, () => {
        assert.throws(() => new Broker({ [name]: value }), {
          name: "RangeError",
          message: `Cannot create Broker: \`${name}\` must be a positive integer, got \`${
            String(value)
          }\``,
        });
      });
    }
  }
});

describe("MemoryBridge frees channels untouched for the ttl", () => {
  it("at the first publish at or after ttl ms, then answers from the tombstone exactly", async () => {
    const c = new VirtualClock().install();
    try {
      const h = await history({ ttl: 1_000, bytes: 1e9 });
      const z = await h.publish("z");
      const a = await h.publish("a");
      await c.advance(999);
      const b1 = await h.publish("b");
      assert.equal(h.stats().expirations, 0, "999 ms: still kept");
      await c.advance(1);
      await h.publish("b");
      assert.equal(h.stats().expirations, 2, "1,000 ms: z and a freed, b kept");
      assert.deepEqual(await h.gaps(["a"], z.id), ["a"], "before the tombstone: a gap");
      assert.deepEqual(await h.gaps(["a"], a.id), [], "at the tombstone: none");
      assert.deepEqual(await h.gaps(["a"], b1.id), [], "after it: none");
      assert.deepEqual(await h.events(["a", "b"], z.id), ["b", "b"]);
      assert.deepEqual(await h.gaps(["b"], h.start), [], "b is whole");
    } finally {
      c.uninstall();
    }
  });

  it("counts a replay as a touch", async () => {
    const c = new VirtualClock().install();
    try {
      const h = await history({ ttl: 1_000, bytes: 1e9 });
      const a = await h.publish("a");
      await c.advance(500);
      assert.deepEqual(await h.events(["a"], h.start), ["a"]);
      await c.advance(500);
      await h.publish("x");
      assert.equal(h.stats().expirations, 0, "touched at 500 ms: kept at 1,000 ms");
      await c.advance(500);
      await h.publish("x");
      assert.equal(h.stats().expirations, 1, "freed at 1,500 ms");
      assert.deepEqual(await h.gaps(["a"], h.start), ["a"]);
      assert.deepEqual(await h.gaps(["a"], a.id), []);
    } finally {
      c.uninstall();
    }
  });

  it("through the broker: the gap signal before the freed history, nothing spurious at it", async () => {
    const c = new VirtualClock().install();
    const broker = new Broker({ history: 10, historyTtl: 1_000, heartbeat: null });
    try {
      const watcher = broker.subscribe(["news", "other"]);
      const listener = broker.subscribe("news"); // a subscriber does not keep history alive
      await broker.publish("other", "zero");
      await broker.publish("news", "one");
      const [zero, one] = await readEvents(watcher.readable, 2);
      await c.advance(1_000);
      await broker.publish("other", "sweeps");
      assert.equal(broker.metrics().historyExpirations, 2, "news and other");
      assert.equal(broker.clientCount("news"), 1);
      listener.close();

      const atIt = broker.subscribe("news", { lastEventId: one!.lastEventId });
      const before = broker.subscribe("news", { lastEventId: zero!.lastEventId });
      await settle();
      await broker.publish("news", "two");
      const [first] = await readEvents(atIt.readable, 1);
      assert.deepEqual([first!.type, first!.data], ["message", "two"]);
      const [reset, two] = await readEvents(before.readable, 2);
      assert.equal(reset!.type, STREAM_RESET_EVENT);
      assert.deepEqual(JSON.parse(reset!.data).channels, ["news"]);
      assert.equal(two!.data, "two");
    } finally {
      await broker.close();
      c.uninstall();
    }
  });
});

describe("MemoryBridge keeps within its byte budget", () => {
  it("frees the least recently used channel whole, a replay counting as a use", async () => {
    const { ring } = await costs();
    const h = await history({ ttl: 1e9, bytes: Math.floor(ring * 3.5) });
    const a = await h.publish("a");
    const b = await h.publish("b");
    await h.publish("c");
    assert.deepEqual(await h.events(["a"], h.start), ["a"]); // a is now the most recent
    await h.publish("d");
    assert.equal(h.stats().evictions, 1);
    assert.ok(h.stats().bytes <= ring * 3.5, `${h.stats().bytes} bytes held`);
    assert.deepEqual(await h.gaps(["b"], a.id), ["b"], "b went: a gap before its last event");
    assert.deepEqual(await h.gaps(["b"], b.id), [], "and none at it");
    assert.deepEqual(await h.gaps(["a", "c", "d"], h.start), []);
    assert.deepEqual(await h.events(["a", "c", "d"], h.start), ["a", "c", "d"]);
  });

  it("frees the broadcast ring when it is the least recently used: a gap on every channel", async () => {
    const { ring } = await costs();
    const h = await history({ ttl: 1e9, bytes: Math.floor(ring * 3.5) });
    const all = await h.publish(null);
    await h.publish("a");
    await h.publish("b");
    await h.publish("c");
    assert.equal(h.stats().evictions, 1);
    assert.deepEqual(await h.gaps(["a", "b"], h.start), ["a", "b"]);
    assert.deepEqual(await h.gaps(["a", "b"], all.id), []);
  });

  it("drops the oldest tombstones beyond a quarter of the budget, raising the watermark", async () => {
    const { ring, tombstone } = await costs();
    const bytes = Math.floor(ring * 1.5); // one ring, and room for a tombstone or two
    assert.ok(bytes / 4 >= tombstone && bytes / 4 < 8 * tombstone, "the setup holds");
    const h = await history({ ttl: 1e9, bytes });
    const events: BridgeEvent[] = [];
    for (let i = 0; i < 10; i++) events.push(await h.publish(`c${i}`));
    const id = (i: number): string => events[i]!.id!;
    assert.equal(h.stats().evictions, 9);
    assert.ok(h.stats().bytes <= bytes);
    // c8 has a tombstone, c7's was dropped: the watermark is at c7.
    assert.deepEqual(await h.gaps(["c8"], id(7)), ["c8"]);
    assert.deepEqual(await h.gaps(["c8"], id(8)), []);
    assert.deepEqual(await h.gaps(["c0"], h.start), ["c0"], "no tombstone: the watermark");
    assert.deepEqual(await h.gaps(["never"], id(6)), ["never"], "before the watermark");
    assert.deepEqual(await h.gaps(["never"], id(7)), [], "at the watermark");
    assert.deepEqual(await h.gaps(["never", "c9"], id(9)), [], "after it");
    assert.deepEqual(await h.events(["c9"], id(7)), ["c9"]);
  });

  it("treats an id the caller gave whose event is gone as unknown: a gap on every channel", async () => {
    const { ring } = await costs();
    const h = await history({ ttl: 1e9, bytes: Math.floor(ring * 1.5) });
    await h.publish("a", "order-1");
    assert.deepEqual(await h.gaps(["a", "b"], "order-1"), [], "still in history");
    await h.publish("b");
    await h.publish("c");
    assert.deepEqual(await h.gaps(["a", "b"], "order-1"), ["a", "b"]);
  });

  it("delivers an event larger than the whole budget but keeps nothing of it, then a gap", async () => {
    const delivered: BridgeEvent[] = [];
    const bridge = new MemoryBridge();
    await bridge.open((event) => delivered.push(event), undefined, { ttl: 1e9, bytes: 100 });
    const start = (await bridge.replay([], "unknown")).head.id;
    const big = await bridge.publish({ channel: "a", body: `data: ${"x".repeat(200)}\n\n` }, 10);
    assert.deepEqual(delivered, [big]);
    assert.deepEqual(historyStatsOf(bridge), { evictions: 1, expirations: 0, bytes: 0 });
    assert.deepEqual((await bridge.replay(["a"], start)).gaps, ["a"]);
    assert.deepEqual((await bridge.replay(["a"], big.id!)).gaps, []);
  });

  it("frees everything on close", async () => {
    const h = await history({ ttl: 1e9, bytes: 1e9 });
    for (let i = 0; i < 100; i++) await h.publish(`c${i}`);
    assert.ok(h.stats().bytes > 0);
    await h.bridge.close();
    assert.equal(h.stats().bytes, 0);
  });
});

describe("Broker history metrics", () => {
  it("counts evictions and expirations and gauges the bytes held, in formatMetrics too", async () => {
    const { ring } = await costs();
    const c = new VirtualClock().install();
    const historyBytes = ring * 20;
    const broker = new Broker({ history: 5, historyTtl: 1_000, historyBytes, heartbeat: null });
    try {
      for (let i = 0; i < 100; i++) await broker.publish(`c${i}`, "x");
      let metrics = broker.metrics();
      assert.ok(metrics.historyEvictions >= 80, `${metrics.historyEvictions} evictions`);
      assert.ok(metrics.historyBytes > 0 && metrics.historyBytes <= historyBytes);
      assert.equal(metrics.historyExpirations, 0);
      await c.advance(1_000);
      await broker.publish("later", "x");
      metrics = broker.metrics();
      // Every one of the 100 rings went one way or the other.
      assert.equal(metrics.historyExpirations, 100 - metrics.historyEvictions);
      const text = formatMetrics(metrics);
      assert.match(
        text,
        new RegExp(`^flume_history_evictions_total ${metrics.historyEvictions}$`, "m"),
      );
      assert.match(
        text,
        new RegExp(`^flume_history_expirations_total ${metrics.historyExpirations}$`, "m"),
      );
      assert.match(text, /^# TYPE flume_history_bytes gauge$/m);
      await broker.close();
      assert.equal(broker.metrics().historyBytes, 0);
    } finally {
      await broker.close();
      c.uninstall();
    }
  });

  it("stays at zero with a bridge that does not report", async () => {
    const inner = new MemoryBridge();
    const bridge: Bridge = {
      open: (deliver, lost, limits) => inner.open(deliver, lost, limits),
      publish: (event, n) => inner.publish(event, n),
      replay: (channels, id) => inner.replay(channels, id),
      close: () => inner.close(),
    };
    const broker = new Broker({ history: 5, historyBytes: 1_000, bridge });
    for (let i = 0; i < 20; i++) await broker.publish(`c${i}`, "x");
    const metrics = broker.metrics();
    assert.deepEqual(
      [metrics.historyEvictions, metrics.historyExpirations, metrics.historyBytes],
      [0, 0, 0],
    );
    assert.ok(historyStatsOf(inner)!.evictions > 0, "the inner bridge did evict");
    await broker.close();
  });
});

describe("Broker channel names and counts", () => {
  const atLimit = "n".repeat(1024);
  const beyond = "n".repeat(1025);
  const message = "Cannot use channel: a channel name must be at most 1024 characters, got 1025";

  it("takes a channel name of exactly 1,024 characters", async () => {
    const broker = new Broker({ history: 5, heartbeat: null });
    const stream = broker.subscribe(atLimit);
    await broker.publish(atLimit, "fits");
    broker.subscribe([atLimit, "b"]).close();
    await broker.close();
    const [event] = await readEvents(stream.readable);
    assert.equal(event!.data, "fits");
  });

  it("refuses a name of 1,025 at subscribe, response and publish with a RangeError", async () => {
    const broker = new Broker({ heartbeat: null });
    assert.throws(() => broker.subscribe(beyond), { name: "RangeError", message });
    assert.throws(() => broker.subscribe(["ok", beyond]), { name: "RangeError", message });
    assert.throws(() => broker.response(beyond, new Request("http://localhost/")), RangeError);
    await assert.rejects(broker.publish(beyond, "x"), { name: "RangeError", message });
    assert.equal(broker.clientCount(), 0);
    await broker.close();
  });

  it("serves one client on 10,000 channels: live events, a replay over all, then nothing left", async () => {
    const broker = new Broker({ history: 5, heartbeat: null });
    const channels = Array.from({ length: 10_000 }, (_, i) => `room:${i}`);
    const stream = broker.subscribe(channels);
    assert.equal(broker.clientCount("room:0"), 1);
    assert.equal(broker.clientCount("room:9999"), 1);
    await broker.publish("room:9999", "last");
    await broker.publish("room:0", "first");
    await broker.publish("room:5000", "middle");
    const [last] = await readEvents(stream.readable, 1);
    assert.equal(last!.data, "last");
    assert.equal(broker.clientCount(), 0);
    const again = broker.subscribe(channels, { lastEventId: last!.lastEventId });
    await settle();
    again.close();
    const replayed = await readEvents(again.readable);
    assert.deepEqual(replayed.map((e) => e.data), ["first", "middle"]);
    assert.equal(broker.clientCount("room:5000"), 0);
    assert.equal(broker.metrics().clients, 0);
    await broker.close();
  });

  it("is back to zero clients and timers after 10,000 subscribe/leave cycles, half mid-replay", async () => {
    const c = new VirtualClock().install();
    const broker = new Broker({ history: 20 }); // default heartbeat and writeTimeout: timers
    try {
      const ids: string[] = [];
      const watcher = broker.subscribe("lobby");
      for (let i = 0; i < 10; i++) await broker.publish("lobby", i);
      for (const event of await readEvents(watcher.readable, 10)) ids.push(event.lastEventId);
      for (let i = 0; i < 10_000; i++) {
        const controller = new AbortController();
        const lastEventId = i % 2 === 0 ? ids[i % 10] : i % 4 === 1 ? "forged" : undefined;
        const stream = broker.subscribe([`room:${i % 100}`, "lobby"], {
          signal: controller.signal,
          ...(lastEventId ? { lastEventId } : {}),
        });
        switch (i % 3) {
          case 0:
            // Closed by the app, then the client goes (a stream closed with its opening comment
            // unread would keep its write timeout until it lets go: not this test's subject).
            stream.close();
            await stream.readable.cancel();
            break;
          case 1:
            controller.abort();
            break;
          default:
            await stream.readable.cancel();
        }
        if (i % 1_000 === 0) await broker.publish("lobby", "tick");
      }
      await settle();
      assert.equal(broker.clientCount(), 0);
      assert.equal(broker.clientCount("lobby"), 0);
      for (let i = 0; i < 100; i++) assert.equal(broker.clientCount(`room:${i}`), 0);
      const metrics = broker.metrics();
      assert.equal(metrics.clients, 0);
      assert.equal(metrics.connectionsTotal, 10_001);
      assert.equal(c.pending, 0, `${c.pending} timers left`);
    } finally {
      await broker.close();
      c.uninstall();
    }
  });
});

describe(`Broker history memory on ${runtime} (a subprocess, heap after GC)`, () => {
  const MiB = 1_048_576;
  async function measure(mode: string): Promise<Record<string, number>> {
    const run = await runFixture("history_memory.ts", [mode], 90_000, ["--v8-flags=--expose-gc"]);
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    return JSON.parse(run.stdout.trim().split("\n").at(-1)!);
  }

  it(
    "100,000 channels of one 400-byte event each: heap grows < 64 MiB, back near baseline after close",
    {
      timeout: 120_000,
    },
    async () => {
      const m = await measure("one");
      assert.ok(m.growth! < 64 * MiB, `grew ${(m.growth! / MiB).toFixed(1)} MiB`);
      assert.ok(
        m.closed! - m.baseline! < 2 * MiB,
        `after close ${(m.closed! - m.baseline!) / MiB} MiB`,
      );
      assert.ok(m.evictions! > 0, "the budget was at work");
      assert.ok(m.growth! < m.estimate! * 1.25 + 2 * MiB, `the estimate ${m.estimate} is honest`);
    },
  );

  it("20,000 channels of 100 events each: heap grows < 128 MiB, back near baseline after close", {
    timeout: 120_000,
  }, async () => {
    const m = await measure("full");
    assert.ok(m.growth! < 128 * MiB, `grew ${(m.growth! / MiB).toFixed(1)} MiB`);
    assert.ok(m.growth! < m.estimate! * 1.25 + 2 * MiB, `the estimate ${m.estimate} is honest`);
    assert.ok(
      m.closed! - m.baseline! < 2 * MiB,
      `after close ${(m.closed! - m.baseline!) / MiB} MiB`,
    );
  });
});
