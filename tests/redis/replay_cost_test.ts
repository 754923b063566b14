/**
 * What a replay costs Redis: a `Last-Event-ID` that is not one of the bridge's ids is looked up
 * in each channel's index (one `HGET`), never by reading history, so a forged id costs a few
 * commands per channel however much history the channels hold. Measured as Redis itself counts
 * it: the `usec` of `EVALSHA` in `INFO commandstats`.
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { redisBridge } from "../../src/redis/mod.ts";
import type { Bridge } from "../../mod.ts";
import { type RedisServer, startRedis } from "./_redis_server.ts";
import { connect, type Connections } from "./_helpers.ts";

let redis: RedisServer;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.stop();
});

/** Redis's own time for `EVALSHA` since the last `CONFIG RESETSTAT`: calls and µs. */
async function evalshaTime(c: Connections): Promise<{ calls: number; usec: number }> {
  const info = String(await c.command(["INFO", "commandstats"]));
  const line = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(info);
  return { calls: Number(line?.[1] ?? 0), usec: Number(line?.[2] ?? 0) };
}

async function opened(c: Connections, prefix: string): Promise<Bridge> {
  const bridge = redisBridge({ ...c, prefix, timeout: 10_000, onError: () => {} });
  await bridge.open(() => {}, () => {}, { ttl: 600_000, bytes: 1 << 25 });
  return bridge;
}

describe("redisBridge replay cost", () => {
  it(
    "answers a forged Last-Event-ID on 20 channels × 1,000 events in under 15 ms of Redis time, and still resumes from a caller's id",
    {
      timeout: 120_000,
    },
    async () => {
      const c = await connect("ioredis", redis.url);
      const prefix = `cost${Math.random().toString(36).slice(2, 8)}:`;
      const bridge = await opened(c, prefix);
      try {
        const channels = Array.from({ length: 20 }, (_, k) => `ch${k}`);
        // Every other event carries an id its publisher chose, so the indexes are full.
        for (let i = 0; i < 1_000; i += 50) {
          await Promise.all(
            channels.flatMap((channel) =>
              Array.from({ length: 50 }, (_, j) => {
                const n = i + j;
                const event = { channel, body: `data: ${"x".repeat(100)} ${n}\n\n` };
                return bridge.publish(
                  n % 2 ? event : { ...event, id: `${channel}-order-${n}` },
                  1_000,
                );
              })
            ),
          );
        }
        for (const channel of channels) {
          assert.equal(Number(await c.command(["XLEN", `${prefix}c:${channel}`])), 1_000);
          assert.equal(Number(await c.command(["HLEN", `${prefix}i:${channel}`])), 500);
        }

        await c.command(["CONFIG", "RESETSTAT"]);
        const forged = ["order-12", "not-an-id", "zz9zz-5", "ch3-order-99999", "x".repeat(200)];
        for (const id of forged) {
          const replay = await bridge.replay(channels, id);
          assert.deepEqual(replay.events, []);
          assert.deepEqual(replay.gaps, channels, "the gap signal for every channel");
        }
        const spent = await evalshaTime(c);
        assert.equal(spent.calls, forged.length, "one script per replay");
        const perReplay = spent.usec / spent.calls / 1_000;
        console.log(`Redis time per forged replay: ${perReplay.toFixed(3)} ms`);
        assert.ok(perReplay < 15, `under 15 ms of Redis time, got \`${perReplay}\` ms`);

        // A caller's id still resumes: what followed it on every channel, in order.
        const legit = await bridge.replay(channels, "ch7-order-996");
        assert.deepEqual(legit.gaps, []);
        assert.ok(legit.events.length > 0);
        assert.ok(legit.events.every((e, i) => i === 0 || e.seq > legit.events[i - 1]!.seq));
        const ch7 = legit.events.filter((e) => e.channel === "ch7").map((e) =>
          e.body.trim().slice(-3)
        );
        assert.deepEqual(ch7, ["997", "998", "999"]);
        // Ids that fell out of history are unknown again (their index entries went with them).
        await bridge.publish(
          { channel: "ch7", body: "data: more\n\n", id: "ch7-order-new" },
          1_000,
        );
        assert.equal(Number(await c.command(["HEXISTS", `${prefix}i:ch7`, "ch7-order-0"])), 0);
        assert.deepEqual((await bridge.replay(channels, "ch7-order-0")).gaps, channels);
      } finally {
        await bridge.close();
        await c.close();
      }
    },
  );

  it("keeps a channel's index as long as its history: trimmed ids are unknown, kept ones resume", async () => {
    const c = await connect("ioredis", redis.url);
    const prefix = `idx${Math.random().toString(36).slice(2, 8)}:`;
    const bridge = await opened(c, prefix);
    try {
      for (let i = 1; i <= 10; i++) {
        await bridge.publish({ channel: "o", body: `data: o${i}\n\n`, id: `order-${i}` }, 3);
      }
      // The same id again: the index names the newest event with it, and trimming the older
      // one leaves it alone.
      await bridge.publish({ channel: "o", body: "data: again\n\n", id: "order-9" }, 3);
      await bridge.publish({ channel: "o", body: "data: o11\n\n", id: "order-11" }, 3);
      assert.deepEqual(
        (await c.command(["HKEYS", `${prefix}i:o`]) as string[]).sort(),
        ["order-10", "order-11", "order-9"],
      );
      assert.equal(Number(await c.command(["PTTL", `${prefix}i:o`])) > 0, true, "it expires");
      const resumed = await bridge.replay(["o"], "order-9");
      assert.deepEqual(resumed.events.map((e) => e.body), ["data: o11\n\n"]);
      assert.deepEqual(resumed.gaps, []);
      assert.deepEqual((await bridge.replay(["o"], "order-7")).gaps, ["o"]);
    } finally {
      await bridge.close();
      await c.close();
    }
  });
});
