import process from "node:process";
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Broker } from "../../mod.ts";
import { redisBridge, type RedisBridgeAdapter, RedisBridgeError } from "../../src/redis/mod.ts";
import { adapterFor } from "../../src/redis/_adapters.ts";
import { bridgeStatsOf } from "../../src/_bridge_stats.ts";
import { delay, waitFor } from "../_helpers.ts";
import { VirtualClock } from "../_clock.ts";
import { type RedisServer, startRedis } from "./_redis_server.ts";
import { clientKinds, collectEvents, connect, dataOf } from "./_helpers.ts";

// A Redis of its own: these tests kill it.
let redis: RedisServer;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.stop();
});

/** Publishes until Redis takes it again (the clients reconnect on their own schedule). */
async function publishWhenBack(broker: Broker, channel: string, data: string): Promise<void> {
  const deadline = Date.now() + 8_000;
  for (;;) {
    try {
      return await broker.publish(channel, data);
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await delay(50);
    }
  }
}

function listenerCounts(kind: string, ...emitters: object[]): unknown[] {
  // deno-lint-ignore no-explicit-any
  return emitters.flatMap((e: any) =>
    kind === "bun" ? [e.onconnect] : ["ready", "error", "message"].map((n) => e.listenerCount(n))
  );
}

for (const kind of clientKinds) {
  describe(`redisBridge with ${kind} when Redis goes away`, () => {
    it(
      "rejects publishes during the outage, then sends the gap signal on the open streams and delivers again",
      { timeout: 30_000 },
      async () => {
        const prefix = `f${Math.random().toString(36).slice(2, 8)}:`;
        const connections = [await connect(kind, redis.url), await connect(kind, redis.url)];
        const errors: RedisBridgeError[] = [];
        const brokers = connections.map((c) =>
          new Broker({
            history: 20,
            heartbeat: null,
            writeTimeout: null,
            onError: () => {}, // the failed replay during the outage, asserted through its gap signal
            bridge: redisBridge({
              ...c,
              prefix,
              timeout: 2_000,
              onError: (e) => {
                errors.push(e);
                if (process.env.DEBUG_BRIDGE) console.log(Date.now() % 100000, String(e));
              },
            }),
          })
        );
        const [a, b] = brokers as [Broker, Broker];
        try {
          const readers = brokers.map((broker) => collectEvents(broker.subscribe("live")));
          await a.publish("live", "before");
          await waitFor(() => readers.every((r) => r.events.length === 1), 2_000, "first event");
          const lastEventId = readers[1]!.events[0]!.lastEventId;
          const listeners = listenerCounts(
            kind,
            ...connections.flatMap((c) => [c.client, c.subscriber]),
          );

          await redis.kill();
          await delay(100);
          const started = Date.now();
          const failed = await b.publish("live", "during").then(() => undefined, (e) => e);
          assert.ok(failed instanceof RedisBridgeError, String(failed));
          assert.equal(failed.reason, "unavailable");
          assert.match(failed.message, /^Cannot publish event: /);
          assert.ok(Date.now() - started < 1_000, "the publish is refused at once");
          // A replay during the outage cannot be answered: the client gets the gap signal.
          const blind = collectEvents(b.subscribe("live", { lastEventId }));
          await waitFor(() => blind.events.length === 1, 3_000, "the gap signal");
          assert.equal(blind.events[0]!.type, "stream-reset");
          await blind.cancel();

          await redis.restart();
          await publishWhenBack(a, "live", "after");
          await a.publish("live", "next");
          // Redis lost its data: every worker learns it from the new epoch and sends its
          // clients the gap signal on their open streams, with the new position as its id;
          // they stay connected and get what follows.
          await waitFor(
            () => readers.every((r) => dataOf(r.events).at(-1) === "next"),
            5_000,
            "the events after the restart",
          );
          const epoch = lastEventId.split("-")[0];
          for (const reader of readers) {
            assert.equal(reader.done, false, "no stream ended");
            const types = reader.events.map((e) => e.type);
            assert.equal(types.filter((t) => t === "stream-reset").length, 1, types.join());
            const reset = reader.events[types.indexOf("stream-reset")]!;
            assert.equal(types.indexOf("stream-reset"), 1, "right after the last event before");
            assert.notEqual(reset.lastEventId.split("-")[0], epoch, "the new epoch's position");
            assert.deepEqual(dataOf(reader.events).slice(0, 1), ["before"]);
          }
          assert.ok(errors.some((e) => e.reason === "lost"), errors.map(String).join("\n"));
          const back = collectEvents(b.subscribe("live", { lastEventId }));
          await waitFor(() => back.events.length >= 1, 3_000, "the gap signal after restart");
          assert.equal(back.events[0]!.type, "stream-reset");
          const fresh = collectEvents(a.subscribe("live"));
          await b.publish("live", "later");
          await waitFor(() => back.events.length >= 2 && fresh.events.length >= 1, 3_000, "later");
          assert.deepEqual(dataOf(back.events), ["later"]);
          assert.deepEqual(dataOf(fresh.events), ["later"]);
          assert.deepEqual(
            listenerCounts(kind, ...connections.flatMap((c) => [c.client, c.subscriber])),
            listeners,
            "no listener added by the reconnects",
          );
          await back.cancel();
          await fresh.cancel();
          for (const reader of readers) await reader.cancel();
        } finally {
          for (const broker of brokers) await broker.close();
          for (const c of connections) await c.close();
        }
      },
    );
  });
}

describe("redisBridge when its subscription misses a message", () => {
  it("fetches what it missed from Redis and delivers it in order: no stream ends, no gap signal", {
    timeout: 10_000,
  }, async () => {
    const prefix = `g${Math.random().toString(36).slice(2, 8)}:`;
    const connections = [await connect("ioredis", redis.url), await connect("ioredis", redis.url)];
    // The second worker's subscription drops one message, as a dropped connection would.
    let drop = 0;
    const real = adapterFor(connections[1]!.client, connections[1]!.subscriber);
    const lossy: RedisBridgeAdapter = {
      ...real,
      listen: (channel, listener) =>
        real.listen(channel, {
          ...listener,
          message: (text) => {
            if (drop > 0 && !text.endsWith(" head")) drop--;
            else listener.message(text);
          },
        }),
    };
    const errors: RedisBridgeError[] = [];
    const options = { history: 20, heartbeat: null, writeTimeout: null };
    const a = new Broker({ ...options, bridge: redisBridge({ ...connections[0]!, prefix }) });
    const bridge = redisBridge({ adapter: lossy, prefix, onError: (e) => errors.push(e) });
    const b = new Broker({ ...options, bridge });
    try {
      const reader = collectEvents(b.subscribe("n"));
      await a.publish("n", "n1");
      await waitFor(() => reader.events.length === 1, 2_000, "n1");
      drop = 1;
      await a.publish("n", "n2");
      await a.publish("n", "n3");
      await waitFor(() => reader.events.length === 3, 2_000, "n2 and n3");
      await delay(50);
      assert.deepEqual(reader.events.map((e) => e.data), ["n1", "n2", "n3"], "no gap signal");
      assert.equal(reader.done, false);
      assert.deepEqual(errors, []);
      assert.deepEqual(bridgeStatsOf(bridge), {
        eventsHealed: 1,
        holesHealed: 1,
        losses: 0,
        messagesRefused: 0,
      });
      await reader.cancel();
    } finally {
      await a.close();
      await b.close();
      for (const c of connections) await c.close();
    }
  });
});

describe("redisBridge timing, on the package clock", () => {
  it("rejects a publish whose event never comes back exactly `timeout` ms after Redis answered", async () => {
    const connections = await connect("ioredis", redis.url);
    const real = adapterFor(connections.client, connections.subscriber);
    let dropping = false;
    let replies = 0;
    const deaf: RedisBridgeAdapter = {
      ...real,
      command: (args) => real.command(args).finally(() => replies++),
      listen: (channel, listener) =>
        real.listen(channel, {
          ...listener,
          message: (text) => {
            if (!dropping || text.endsWith(" head")) listener.message(text);
          },
        }),
    };
    const errors: RedisBridgeError[] = [];
    const bridge = redisBridge({
      adapter: deaf,
      prefix: `h${Math.random().toString(36).slice(2, 8)}:`,
      timeout: 1_000,
      onError: (e) => errors.push(e),
    });
    const broker = new Broker({ heartbeat: null, writeTimeout: null, bridge });
    await broker.publish("warm", "up");
    const clock = new VirtualClock().install();
    try {
      dropping = true;
      const before = replies;
      let settled: unknown;
      broker.publish("t", "lost").then(() => settled = "resolved", (e) => settled = e);
      // Read through a call: TypeScript cannot see the callbacks assign it between the asserts.
      const outcomeNow = (): unknown => settled;
      await waitFor(() => replies > before && clock.pending === 1, 5_000, "the script's reply");
      assert.deepEqual(clock.dueTimes, [1_000], "one timer, due `timeout` ms later");
      await clock.advance(999);
      assert.equal(outcomeNow(), undefined);
      await clock.advance(1);
      const outcome = outcomeNow();
      assert.ok(outcome instanceof RedisBridgeError, String(outcome));
      assert.equal(outcome.reason, "timeout");
      assert.match(outcome.message, /^Cannot confirm publish: event \d+ did not come back/);
      // Then the bridge publishes a checkpoint: its subscription finds the hole and heals it.
      await waitFor(() => bridgeStatsOf(bridge)?.eventsHealed === 1, 5_000, "the event healed");
      assert.deepEqual(errors, []);
      await waitFor(() => clock.pending === 0, 5_000, "no timer left");
    } finally {
      clock.uninstall();
      await broker.close();
      await connections.close();
    }
  });
});
