/**
 * History in Redis expires: streams live `ttl` ms after their channel's last publish or replay,
 * markers four times that, and a watermark covers a channel whose keys are all gone. Whatever is
 * gone, a client that resumes from before an event it did not get hears the gap signal. These
 * tests talk to the bridge itself (no broker) with a real `redis-server` and real Redis expiry,
 * so the waits are generous and each test finds out, rather than assumes, which keys are gone.
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type Bridge, type BridgeEvent, type BridgeReplay, Broker } from "../../mod.ts";
import { redisBridge } from "../../src/redis/mod.ts";
import { delay, waitFor } from "../_helpers.ts";
import { type RedisServer, startRedis } from "./_redis_server.ts";
import { collectEvents, connect, type Connections } from "./_helpers.ts";

let redis: RedisServer;
let commands: Connections;
before(async () => {
  redis = await startRedis();
  commands = await connect("node-redis", redis.url);
});
after(async () => {
  await commands.close();
  await redis.stop();
});

function command(args: string[]): Promise<unknown> {
  return commands.command(args);
}

interface Opened {
  bridge: Bridge;
  prefix: string;
  publish(channel: string | null, data: string): Promise<BridgeEvent>;
  replay(channels: string[], lastEventId: string): Promise<BridgeReplay>;
  close(): Promise<void>;
}

/** A bridge of its own prefix, opened with `ttl` (or without limits), keeping 100 events. */
async function open(ttl: number | undefined): Promise<Opened> {
  const connections = await connect("node-redis", redis.url);
  const prefix = `ttl${Math.random().toString(36).slice(2, 8)}:`;
  const bridge = redisBridge({
    ...connections,
    prefix,
    timeout: 3_000,
    onError: (error) => assert.fail(error),
  });
  await bridge.open(
    () => {},
    () => {},
    ...(ttl === undefined ? [] : [{ ttl, bytes: 1 << 25 }]),
  );
  return {
    bridge,
    prefix,
    publish: (channel, data) => bridge.publish({ channel, body: `data: ${data}\n\n` }, 100),
    replay: (channels, lastEventId) => bridge.replay(channels, lastEventId),
    close: async () => {
      await bridge.close();
      await connections.close();
    },
  };
}

async function exists(key: string): Promise<boolean> {
  return Number(await command(["EXISTS", key])) === 1;
}

/** Polls (every 20 ms, up to 5 s) until `key` is gone: Redis expiry runs on real time. */
async function gone(key: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (await exists(key)) {
    if (Date.now() > deadline) assert.fail(`${key} did not expire`);
    await delay(20);
  }
}

async function pttl(key: string): Promise<number> {
  return Number(await command(["PTTL", key]));
}

/** What a replay says, in short: the gap channels and the data of the events. */
function summary(replay: BridgeReplay): { gaps: string[]; data: string[] } {
  return {
    gaps: [...replay.gaps].sort(),
    data: replay.events.map((e) => e.body.slice("data: ".length, -2)),
  };
}

async function evictedKeys(): Promise<number> {
  const info = String(await command(["INFO", "stats"]));
  return Number(/evicted_keys:(\d+)/.exec(info)?.[1]);
}

/** Redis really evicts a key (its `evicted_keys` count moves), then memory is unbounded again. */
async function evictSomething(): Promise<void> {
  const before = await evictedKeys();
  const key = `evict-me-${Math.random()}`;
  await command(["SET", key, "x".repeat(1_000), "PX", "600000"]);
  const policy = await command(["CONFIG", "GET", "maxmemory-policy"]) as string[];
  await command(["CONFIG", "SET", "maxmemory-policy", "volatile-ttl"]);
  await command(["CONFIG", "SET", "maxmemory", "1"]);
  try {
    await command(["SET", `${key}-2`, "y"]).catch(() => {}); // OOM once nothing is left to evict
  } finally {
    await command(["CONFIG", "SET", "maxmemory", "0"]);
    await command(["CONFIG", "SET", "maxmemory-policy", policy[1] ?? "noeviction"]);
  }
  assert.ok(await evictedKeys() > before, "Redis evicted a key");
}

describe("redisBridge history lifetime", () => {
  it("gives streams the ttl and markers four times it, refreshed by every publish and replay", async () => {
    const b = await open(2_000);
    const other = await open(undefined);
    try {
      const a1 = await b.publish("a", "a1");
      const stream = `${b.prefix}c:a`, marker = `${b.prefix}l:a`;
      assert.ok(await pttl(stream) > 1_000 && await pttl(stream) <= 2_000);
      assert.ok(await pttl(marker) > 6_000 && await pttl(marker) <= 8_000);
      assert.equal(await command(["GET", marker]), a1.id!.replace("-", " "));
      await delay(700);
      assert.ok(await pttl(stream) <= 1_300, "the stream's ttl runs down");
      await b.replay(["a"], a1.id!);
      assert.ok(await pttl(stream) > 1_400, "a replay refreshes the stream");
      assert.ok(await pttl(marker) > 7_400, "and the marker");
      await delay(700);
      await b.publish("a", "a2");
      assert.ok(await pttl(stream) > 1_400, "a publish refreshes the stream");
      // Broadcasts keep their marker in meta, which never expires.
      await b.publish(null, "all");
      assert.ok(await pttl(`${b.prefix}b`) > 1_000);
      assert.equal(await pttl(`${b.prefix}meta`), -1);
      // A bridge opened without limits keeps history an hour.
      await other.publish("a", "x");
      const hour = await pttl(`${other.prefix}c:a`);
      assert.ok(hour > 3_500_000 && hour <= 3_600_000, String(hour));
    } finally {
      await b.close();
      await other.close();
    }
  });

  it("refuses a ttl that is not a positive integer", async () => {
    for (const ttl of [0, -1, 1.5, Number.NaN, Infinity]) {
      const bridge = redisBridge({ ...commands, prefix: "never:" });
      await assert.rejects(
        bridge.open(() => {}, undefined, { ttl, bytes: 1 }),
        (error) =>
          error instanceof RangeError &&
          error.message ===
            `Cannot open Redis bridge: \`ttl\` must be a positive integer, got \`${String(ttl)}\``,
      );
    }
  });

  it("signals a gap on a channel whose stream expired to a client from before its last event, not to one at it", async () => {
    const b = await open(400);
    try {
      const a1 = await b.publish("a", "a1");
      const a2 = await b.publish("a", "a2");
      await gone(`${b.prefix}c:a`);
      const kept = await b.publish("k", "k1"); // another channel, alive
      const before = await b.replay(["a", "k"], a1.id!);
      const at = await b.replay(["a", "k"], a2.id!);
      // The marker (1,600 ms) was still there: these answers came from it, not the watermark.
      assert.ok(await pttl(`${b.prefix}l:a`) > 0, "the marker outlives the stream");
      assert.deepEqual(summary(before), { gaps: ["a"], data: ["k1"] });
      assert.deepEqual(summary(at), { gaps: [], data: ["k1"] });
      assert.equal(at.head.seq, kept.seq);
      // A new stream on the channel still knows that a2 came before its first event.
      await b.publish("a", "a3");
      assert.deepEqual(summary(await b.replay(["a"], a1.id!)), { gaps: ["a"], data: ["a3"] });
      assert.deepEqual(summary(await b.replay(["a"], a2.id!)), { gaps: [], data: ["a3"] });
    } finally {
      await b.close();
    }
  });

  it("signals a gap on every channel when the broadcast stream is gone and the client was before its last broadcast", async () => {
    const b = await open(60_000);
    try {
      const a1 = await b.publish("a", "a1");
      const all1 = await b.publish(null, "all1");
      const a2 = await b.publish("a", "a2");
      // Everything still there (`c` never had an event: no gap for it either).
      assert.deepEqual(summary(await b.replay(["a", "c"], a1.id!)), {
        gaps: [],
        data: ["all1", "a2"],
      });
      await command(["DEL", `${b.prefix}b`]); // as if it expired
      assert.deepEqual(summary(await b.replay(["a", "c"], a1.id!)), {
        gaps: ["a", "c"],
        data: ["a2"],
      });
      assert.deepEqual(summary(await b.replay(["a", "c"], all1.id!)), { gaps: [], data: ["a2"] });
      assert.deepEqual(summary(await b.replay(["a"], a2.id!)), { gaps: [], data: [] });
    } finally {
      await b.close();
    }
  });

  it("decides by the watermark when stream and marker are gone: a gap before it, none at the last event", async () => {
    const b = await open(250); // markers live 1,000 ms, a watermark record per 62 ms
    try {
      const x0 = await b.publish("x", "x0");
      const x1 = await b.publish("x", "x1");
      await gone(`${b.prefix}l:x`);
      assert.equal(await exists(`${b.prefix}c:x`), false);
      // Later events elsewhere make a newer record than the one x1 was published in.
      await delay(80);
      const y1 = await b.publish("y", "y1");
      assert.deepEqual(summary(await b.replay(["x"], x0.id!)), { gaps: ["x"], data: [] });
      assert.deepEqual(summary(await b.replay(["x"], x1.id!)), { gaps: [], data: [] });
      assert.deepEqual(summary(await b.replay(["x", "y"], x1.id!)), { gaps: [], data: ["y1"] });
      // Conservative: a channel never published to looks the same as one whose keys are gone.
      assert.deepEqual(summary(await b.replay(["never"], x0.id!)).gaps, ["never"]);
      assert.deepEqual(summary(await b.replay(["never"], y1.id!)).gaps, []);
      // The first event of a channel whose keys are gone covers what it may have had.
      await b.publish("x", "x2");
      assert.deepEqual(summary(await b.replay(["x"], x0.id!)), { gaps: ["x"], data: ["x2"] });
      assert.deepEqual(summary(await b.replay(["x"], x1.id!)), { gaps: [], data: ["x2"] });
    } finally {
      await b.close();
    }
  });

  it("takes an eviction in Redis as possible loss: the watermark moves to the head", async () => {
    const b = await open(60_000);
    try {
      const z1 = await b.publish("z", "z1");
      const z2 = await b.publish("z", "z2");
      // Both keys gone before their time, as an eviction would leave them.
      await command(["DEL", `${b.prefix}c:z`, `${b.prefix}l:z`]);
      // No eviction counted: the channel's keys cannot have expired yet, so nothing was lost.
      assert.deepEqual(summary(await b.replay(["z"], z1.id!)).gaps, []);
      await evictSomething();
      assert.deepEqual(summary(await b.replay(["z"], z1.id!)).gaps, ["z"]);
      assert.deepEqual(summary(await b.replay(["z"], z2.id!)).gaps, []);
    } finally {
      await b.close();
    }
  });

  it("costs per channel what docs/scaling-out.md says (MEMORY USAGE, Redis defaults)", async () => {
    const b = await open(60_000);
    try {
      const body = "x".repeat(392); // a 400-byte frame
      const usage = async (key: string) =>
        Number(await command(["MEMORY", "USAGE", `${b.prefix}${key}`, "SAMPLES", "0"]));
      await b.publish("room:00001", body);
      const one = await usage("c:room:00001");
      const marker = await usage("l:room:00001");
      for (let i = 0; i < 99; i++) await b.publish("room:00001", body);
      const hundred = await usage("c:room:00001");
      // The documented bound: 4.7 KB (the stream's first node) + n × (frame + 160 B); marker 128 B.
      assert.ok(one <= 4_700 + 560 && one > 4_096, `1 event: ${one}`);
      assert.ok(hundred <= 4_700 + 100 * 560, `100 events: ${hundred}`);
      assert.ok(marker <= 128, `marker: ${marker}`);
      assert.ok(await usage("w") <= 2_048, "the watermark is small");
    } finally {
      await b.close();
    }
  });

  it("takes a broker's historyTtl: a client resuming after its channel expired gets the gap signal", async () => {
    const connections = await connect("node-redis", redis.url);
    const prefix = `ttlb${Math.random().toString(36).slice(2, 8)}:`;
    const broker = new Broker({
      history: 10,
      historyTtl: 400,
      heartbeat: null,
      bridge: redisBridge({ ...connections, prefix, onError: (error) => assert.fail(error) }),
    });
    try {
      const first = collectEvents(broker.subscribe("news"));
      await broker.publish("news", "n1");
      await broker.publish("news", "n2");
      await waitFor(() => first.events.length === 2, 3_000, "2 events");
      await first.cancel();
      const ttl = await pttl(`${prefix}c:news`);
      assert.ok(ttl > 0 && ttl <= 400, String(ttl));
      await gone(`${prefix}c:news`);
      const [n1, n2] = first.events.map((e) => e.lastEventId) as [string, string];
      const behind = collectEvents(broker.subscribe("news", { lastEventId: n1 }));
      const current = collectEvents(broker.subscribe("news", { lastEventId: n2 }));
      await waitFor(() => behind.events.length === 1, 3_000, "the gap signal");
      await broker.publish("news", "n3");
      await waitFor(() => current.events.length === 1, 3_000, "n3");
      assert.deepEqual(behind.events[0]!.type, "stream-reset");
      assert.deepEqual(current.events.map((e) => e.data), ["n3"]);
      await behind.cancel();
      await current.cancel();
    } finally {
      await broker.close();
      await connections.close();
    }
  });

  it("keeps the watermark small: old records are dropped", async () => {
    const b = await open(40); // a record per 10 ms, markers live 160 ms
    try {
      for (let i = 0; i < 40; i++) {
        await b.publish(`w${i}`, "w");
        await delay(12);
      }
      const fields = Number(await command(["HLEN", `${b.prefix}w`]));
      // 'last' plus the records of the last 160 ms (and the newest fully expired one).
      assert.ok(fields >= 2 && fields <= 20, String(fields));
    } finally {
      await b.close();
    }
  });
});
