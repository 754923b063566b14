/**
 * Messages on the bridge's channel that the bridge did not write (published with `redis-cli`,
 * as anything with access to Redis can), and two apps on two databases of one Redis: none of it
 * may end a stream, lose a real event, fail a publish or move a worker's position.
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { Broker } from "../../mod.ts";
import { redisBridge, type RedisBridgeError } from "../../src/redis/mod.ts";
import { delay, waitFor } from "../_helpers.ts";
import { type RedisServer, startRedis } from "./_redis_server.ts";
import { type ClientKind, clientKinds, collectEvents, connect, dataOf } from "./_helpers.ts";

let redis: RedisServer;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.stop();
});

/** `redis-cli -p PORT [-n DB] ARGS…`: a publisher that is not a bridge. */
function redisCli(args: string[], db = 0): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      "redis-cli",
      ["-h", "127.0.0.1", "-p", String(redis.port), "-n", String(db), ...args],
      (error, stdout) => error ? reject(error) : resolve(stdout.trim()),
    );
  });
}

interface App {
  broker: Broker;
  errors: RedisBridgeError[];
  close(): Promise<void>;
}

async function app(kind: ClientKind, prefix: string, db = 0): Promise<App> {
  const connections = await connect(kind, db === 0 ? redis.url : `${redis.url}/${db}`);
  const errors: RedisBridgeError[] = [];
  const broker = new Broker({
    history: 20,
    heartbeat: null,
    writeTimeout: null,
    bridge: redisBridge({ ...connections, prefix, timeout: 2_000, onError: (e) => errors.push(e) }),
  });
  await broker.publish("warmup", "x");
  return {
    broker,
    errors,
    close: async () => {
      await broker.close();
      await connections.close();
    },
  };
}

function freshPrefix(): string {
  return `forge${Math.random().toString(36).slice(2, 8)}:`;
}

for (const kind of clientKinds) {
  describe(`redisBridge with ${kind} and messages it did not write`, () => {
    it("skips a forged sequence jump, a forged epoch and garbage: no stream ends, no event is lost", async () => {
      const prefix = freshPrefix();
      const [a, b] = [await app(kind, prefix), await app(kind, prefix)];
      try {
        const readers = [a, b].map((w) => collectEvents(w.broker.subscribe("room")));
        await a.broker.publish("room", "real1");
        await waitFor(() => readers.every((r) => r.events.length === 1), 2_000, "real1");
        const [epoch, seq] = readers[0]!.events[0]!.lastEventId.split("-") as [string, string];
        const head = Number(seq);
        const channel = `${prefix}events`;
        const forgeries = [
          `f1 ${epoch} ${head + 1000} head`, // "you missed 1,000 events"
          `f1 ${epoch} ${head + 1000} 4 -1 roomdata: forged\n\n`, // an event far ahead
          `f1 ${epoch} ${head + 2} 4 -1 roomdata: forged\n\n`, // one ahead of the next
          `f1 zz9forged ${head} head`, // "Redis lost its data": a foreign epoch
          `f1 zz9forged 1 4 -1 roomdata: forged\n\n`,
          "garbage",
        ];
        for (const text of forgeries) {
          assert.equal(await redisCli(["PUBLISH", channel, text]), "2", "both workers got it");
        }
        const sent = ["real2", "real3", "real4", "real5"];
        for (const [i, data] of sent.entries()) {
          await (i % 2 ? b : a).broker.publish("room", data);
        }
        await waitFor(() => readers.every((r) => r.events.length === 5), 3_000, "every event");
        await delay(50);
        for (const reader of readers) {
          assert.deepEqual(dataOf(reader.events), ["real1", ...sent]);
          assert.equal(reader.done, false, "no stream ended");
        }
        for (const w of [a, b]) {
          const reasons = w.errors.map((e) => e.reason);
          assert.deepEqual(reasons, forgeries.map(() => "malformed"), w.errors.join("\n"));
          assert.match(w.errors[0]!.message, /: Redis is at event \d+, got `f1 /);
          assert.match(w.errors[3]!.message, /: Redis is at epoch `[0-9a-z]+`, got `f1 zz9forged/);
        }
        // Ids continue where they were: the forgeries did not move anyone's position.
        const ids = readers[1]!.events.map((e) => Number(e.lastEventId.split("-")[1]));
        assert.deepEqual(ids, [head, head + 1, head + 2, head + 3, head + 4]);
        for (const reader of readers) await reader.cancel();
      } finally {
        await a.close();
        await b.close();
      }
    });

    it("keeps two apps with one prefix on db 0 and db 1 of one Redis apart", async () => {
      const prefix = freshPrefix();
      const zero = await app(kind, prefix, 0);
      const one = await app(kind, prefix, 1); // its start must not disturb app zero
      try {
        const r0 = collectEvents(zero.broker.subscribe("shared"));
        const r1 = collectEvents(one.broker.subscribe("shared"));
        for (let i = 0; i < 3; i++) {
          await zero.broker.publish("shared", `zero${i}`);
          await one.broker.publish("shared", `one${i}`);
        }
        await waitFor(() => r0.events.length >= 3 && r1.events.length >= 3, 2_000, "events");
        await delay(50);
        assert.deepEqual(dataOf(r0.events), ["zero0", "zero1", "zero2"]);
        assert.deepEqual(dataOf(r1.events), ["one0", "one1", "one2"]);
        assert.deepEqual([...zero.errors, ...one.errors].map(String), []);
        // Each database has its own history.
        assert.equal(await redisCli(["XLEN", `${prefix}c:shared`], 1), "3");
        assert.equal(await redisCli(["XLEN", `${prefix}c:shared`], 0), "3");
        for (const r of [r0, r1]) {
          assert.equal(r.done, false);
          await r.cancel();
        }
      } finally {
        await zero.close();
        await one.close();
      }
    });
  });
}
