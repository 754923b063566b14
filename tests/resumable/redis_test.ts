/**
 * ResumableStreams over a real redis-server: two workers (two instances, their own connections,
 * each behind its own real server), one generation.
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { END_EVENT, ResumableStreams } from "../../src/resumable/mod.ts";
import { delay, runtime, serve, type TestServer, untilAborted, waitFor } from "../_helpers.ts";
import { type RedisServer, startRedis } from "../redis/_redis_server.ts";
import { type ClientKind, connect, type Connections } from "../redis/_helpers.ts";
import { seeded, visit } from "./_reader.ts";

/** Worker A on the runtime's first client kind, worker B on ioredis: two adapters at once. */
const kinds: [ClientKind, ClientKind] = runtime === "bun"
  ? ["bun", "ioredis"]
  : ["node-redis", "ioredis"];

interface Worker {
  resumable: ResumableStreams;
  server: TestServer;
  connections: Connections;
}

async function worker(
  redis: RedisServer,
  kind: ClientKind,
  prefix: string,
  retention = 60_000,
  onError?: (error: unknown) => void,
): Promise<Worker> {
  const connections = await connect(kind, redis.url);
  const { client, subscriber } = connections;
  const resumable = new ResumableStreams({
    redis: { client, subscriber },
    prefix,
    retention,
    heartbeat: null,
    ...(onError ? { onError } : {}),
  });
  const server = await serve((request) =>
    resumable.response(decodeURIComponent(new URL(request.url).pathname.slice(1)), request)
  );
  return { resumable, server, connections };
}

async function stop(...workers: Worker[]): Promise<void> {
  for (const { resumable, server, connections } of workers) {
    await server.close();
    await resumable.close();
    await connections.close();
  }
}

describe(`ResumableStreams over Redis (${kinds.join(" + ")})`, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });

  it(
    "gives a reader that resumes 10 times on two workers alternately every event once, in order, then the end marker",
    { timeout: 60_000 },
    async () => {
      const a = await worker(redis, kinds[0], "t1:");
      const b = await worker(redis, kinds[1], "t1:");
      let runs = 0;
      try {
        // 2,000 events at about 400 per second (the 200 per second, at twice the pace).
        const producer = async (stream: { publish(data: unknown): Promise<unknown> }) => {
          runs++;
          for (let n = 0; n < 2_000; n++) {
            await stream.publish(String(n));
            if (n % 4 === 3) await delay(10);
          }
        };
        assert.equal(await a.resumable.start("gen", producer), "started");
        assert.equal(await b.resumable.start("gen", producer), "running");
        const random = seeded(16);
        const data: string[] = [];
        let lastEventId = "";
        for (let drop = 0; drop < 10; drop++) {
          const at = drop % 2 === 0 ? a : b;
          const got = await visit(
            `${at.server.origin}/gen`,
            lastEventId,
            1 + Math.floor(random() * 300),
          );
          assert.equal(got.status, 200);
          data.push(...got.events.map((e) => e.data));
          lastEventId = got.lastEventId;
        }
        const last = await visit(`${b.server.origin}/gen`, lastEventId);
        assert.equal(last.ended, true);
        const end = last.events.pop()!;
        data.push(...last.events.map((e) => e.data));
        assert.deepEqual(data, Array.from({ length: 2_000 }, (_, n) => String(n)));
        assert.equal(end.type, END_EVENT);
        assert.deepEqual(JSON.parse(end.data), { reason: "complete" });
        assert.equal((await visit(`${a.server.origin}/gen`, end.lastEventId)).status, 204);
        assert.equal(runs, 1);
        assert.deepEqual(await b.resumable.status("gen"), {
          state: "ended",
          events: 2_001,
          reason: "complete",
        });
      } finally {
        await stop(a, b);
      }
    },
  );

  it(
    "gives 100 readers on two workers, half of them late, identical events",
    { timeout: 60_000 },
    async () => {
      const a = await worker(redis, kinds[0], "t2:");
      const b = await worker(redis, kinds[1], "t2:");
      try {
        await a.resumable.start("gen", async (stream) => {
          for (let n = 0; n < 300; n++) {
            await stream.publish({ n }, { event: "token" });
            if (n % 10 === 9) await delay(10);
          }
        });
        const read = (w: Worker) => visit(`${w.server.origin}/gen`, "");
        const early = Array.from({ length: 50 }, (_, i) => read(i % 2 ? a : b));
        await delay(150);
        const late = Array.from({ length: 50 }, (_, i) => read(i % 2 ? a : b));
        const all = await Promise.all([...early, ...late]);
        assert.equal(all[0]!.events.length, 301);
        for (const got of all) {
          assert.equal(got.ended, true);
          assert.deepEqual(got.events, all[0]!.events);
        }
      } finally {
        await stop(a, b);
      }
    },
  );

  it(
    "answers 404 promptly once the retention has expired in Redis",
    { timeout: 60_000 },
    async () => {
      const a = await worker(redis, kinds[0], "t3:", 300);
      const b = await worker(redis, kinds[1], "t3:", 300);
      try {
        await a.resumable.start("gen", (stream) => stream.publish("x"));
        await a.resumable.finished("gen");
        assert.equal((await visit(`${b.server.origin}/gen`, "")).events.length, 2);
        await delay(400);
        const started = Date.now();
        const got = await visit(`${b.server.origin}/gen`, "");
        assert.equal(got.status, 404);
        assert.ok(Date.now() - started < 2_000, "the 404 came at once");
        assert.equal(await a.resumable.status("gen"), undefined);
      } finally {
        await stop(a, b);
      }
    },
  );

  it("stops the producer on worker A when worker B cancels, and ends its readers", {
    timeout: 60_000,
  }, async () => {
    const a = await worker(redis, kinds[0], "t4:");
    const b = await worker(redis, kinds[1], "t4:");
    let signal: AbortSignal | undefined;
    try {
      await a.resumable.start("gen", async (stream) => {
        signal = stream.signal;
        await stream.publish("first");
        await untilAborted(stream.signal);
      });
      const reading = visit(`${b.server.origin}/gen`, "");
      await delay(50);
      assert.equal(await b.resumable.cancel("gen"), true);
      await waitFor(() => signal?.aborted === true, 5_000, "the producer's signal");
      await a.resumable.finished("gen");
      const got = await reading;
      assert.equal(got.ended, true);
      assert.deepEqual(got.events.map((e) => e.data), ["first", '{"reason":"cancelled"}']);
      assert.equal(a.resumable.metrics().ended.cancelled, 1);
    } finally {
      await stop(a, b);
    }
  });

  it(
    "ends as lost a generation whose worker stopped renewing its lease",
    { timeout: 60_000 },
    async () => {
      const connections = await connect(kinds[0], redis.url);
      const { client, subscriber } = connections;
      const a = new ResumableStreams({
        redis: { client, subscriber },
        prefix: "t5:",
        // Short, so that the test does not wait long for it to run out, but renewed (every third)
        // in time even when both cores are busy: at 200 ms a stalled renewal ended it early.
        lease: 1_000,
        onError: () => {},
      });
      const b = await worker(redis, kinds[1], "t5:");
      try {
        await a.start("gen", async (stream) => {
          await stream.publish("first");
          await new Promise(() => {}); // never ends: its worker is "killed" below
        });
        await waitFor(() => a.metrics().running === 1, 5_000, "the producer");
        await delay(100);
        assert.equal((await b.resumable.status("gen"))?.events, 1);
        // The worker dies: its connections go, so its lease runs out.
        await connections.close();
        const got = await visit(`${b.server.origin}/gen`, "");
        assert.deepEqual(got.events.map((e) => e.data), ["first", '{"reason":"lost"}']);
      } finally {
        await a.close();
        await stop(b);
      }
    },
  );

  it("answers 503 with Retry-After, not 404 and not a hang, while Redis is down", {
    timeout: 30_000,
  }, async () => {
    const a = await worker(redis, kinds[0], "t6:", 60_000, () => {});
    try {
      await a.resumable.start("gen", (stream) => stream.publish("x"));
      await a.resumable.finished("gen");
      await redis.kill();
      const started = Date.now();
      let status = 0;
      let retryAfter: string | null = null;
      while (status !== 503 && Date.now() - started < 5_000) {
        const response = await fetch(`${a.server.origin}/gen`);
        status = response.status;
        retryAfter = response.headers.get("retry-after");
        await response.body?.cancel();
        if (status !== 503) await delay(50);
      }
      assert.equal(status, 503);
      assert.equal(retryAfter, "1");
    } finally {
      await redis.restart();
      await stop(a);
    }
  });
});
