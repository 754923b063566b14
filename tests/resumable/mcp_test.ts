/**
 * McpEventStore with the MCP TypeScript SDK's own server transport (the web-standard Streamable
 * HTTP one, on the runtime's real server on 127.0.0.1) and its own client: a long tool call
 * sending progress notifications, the client gone mid-way, back with its resumption token.
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
// The SDK's `./*` export maps `x.js` to types at `x.js.d.ts`: its `.d.ts` files are named here.
import { Client } from "@modelcontextprotocol/sdk/client";
// @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.d.ts"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Server } from "@modelcontextprotocol/sdk/server";
// @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/server/webStandardStreamableHttp.d.ts"
import {
  type EventStore,
  WebStandardStreamableHTTPServerTransport,
} from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
// @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/types.d.ts"
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  ProgressNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { McpEventStore, ResumableStreams } from "../../src/resumable/mod.ts";
import { runtime, serve, waitFor } from "../_helpers.ts";
import { type RedisServer, startRedis } from "../redis/_redis_server.ts";
import { type ClientKind, connect, type Connections } from "../redis/_helpers.ts";

const TOTAL = 10;

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => resolve = r);
  return { promise, resolve };
}

/**
 * The whole scenario on `resumable`: notifications 1-3 reach the first client, which then
 * leaves; 4-6 are sent while nobody is connected; a second client resumes with the last token
 * it saw, gets 4-6 replayed, then 7-10 live and the result, each once.
 */
async function dropAndResume(resumable: ResumableStreams): Promise<void> {
  const sessionId = crypto.randomUUID();
  const store = new McpEventStore(resumable, { scope: `${sessionId}:` });
  // The SDK's interface, checked by the compiler against the adapter.
  const eventStore: EventStore = store;
  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: () => sessionId,
    eventStore,
  });
  const server = new Server({ name: "flume-test", version: "1.0.0" }, {
    capabilities: { tools: {} },
  });
  const clientGone = deferred();
  const storedWhileGone = deferred();
  const resumed = deferred();
  let runs = 0;
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    runs++;
    const progressToken = request.params._meta?.progressToken;
    assert.notEqual(progressToken, undefined);
    const progress = (n: number) =>
      extra.sendNotification({
        method: "notifications/progress",
        params: { progressToken: progressToken!, progress: n, total: TOTAL, message: `step ${n}` },
      });
    for (let n = 1; n <= 3; n++) await progress(n);
    await clientGone.promise;
    for (let n = 4; n <= 6; n++) await progress(n);
    storedWhileGone.resolve();
    await resumed.promise;
    for (let n = 7; n <= TOTAL; n++) await progress(n);
    return { content: [{ type: "text", text: `counted to ${TOTAL}` }] };
  });
  await server.connect(transport);
  const http = await serve((request) => transport.handleRequest(request));
  const url = new URL(`${http.origin}/mcp`);
  const first: number[] = [];
  const second: number[] = [];
  try {
    // The first client: initializes, calls the tool, keeps the last resumption token it sees.
    const client1 = new Client({ name: "c1", version: "1.0.0" });
    const transport1 = new StreamableHTTPClientTransport(url);
    await client1.connect(transport1);
    assert.equal(transport1.sessionId, sessionId);
    client1.setNotificationHandler(ProgressNotificationSchema, (n) => {
      first.push(n.params.progress);
    });
    let token: string | undefined;
    const call1 = client1.request(
      {
        method: "tools/call",
        params: { name: "count", arguments: {}, _meta: { progressToken: "p" } },
      },
      CallToolResultSchema,
      { onresumptiontoken: (t) => token = t, timeout: 60_000 },
    );
    const call1Settled = call1.then(() => "resolved", () => "rejected");
    await waitFor(() => first.length === 3, 10_000, "three notifications");
    // The client goes away mid-call (its connection is cut), its token in hand.
    await transport1.close();
    assert.equal(await call1Settled, "rejected");
    const tokenAtDrop = token;
    assert.ok(tokenAtDrop, "a resumption token");
    clientGone.resolve();
    await storedWhileGone.promise;

    // A new client on the same session resumes the call with the token.
    const client2 = new Client({ name: "c2", version: "1.0.0" });
    const transport2 = new StreamableHTTPClientTransport(url, { sessionId });
    await client2.connect(transport2);
    client2.setNotificationHandler(ProgressNotificationSchema, (n) => {
      second.push(n.params.progress);
      if (second.length === 3) resumed.resolve();
    });
    // Should a replayed notification be missing, the tool goes on anyway after a while, and
    // the assertions below show what arrived.
    const fallback = setTimeout(resumed.resolve, 5_000);
    const results: unknown[] = [];
    const result = await client2.request(
      { method: "tools/call", params: { name: "count", arguments: {} } },
      CallToolResultSchema,
      { resumptionToken: tokenAtDrop, timeout: 60_000 },
    );
    results.push(result);
    clearTimeout(fallback);
    // Nothing more arrives after the result (no duplicate notification, no second result).
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(first, [1, 2, 3]);
    assert.deepEqual(second, [4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(result.content, [{ type: "text", text: `counted to ${TOTAL}` }]);
    assert.equal(results.length, 1);
    assert.equal(runs, 1);
    await transport2.close();
  } finally {
    await transport.close();
    await server.close();
    await store.close();
    await http.close();
  }
}

describe("McpEventStore with the MCP SDK", () => {
  it(
    "resumes a tool call after a drop: missed notifications and the result once (memory)",
    { timeout: 30_000 },
    async () => {
      const resumable = new ResumableStreams({ heartbeat: null });
      try {
        await dropAndResume(resumable);
        // Each request's stream (initialize, tools/call) ended with its response, as `complete`.
        assert.equal(resumable.metrics().ended.complete, 2);
        assert.equal(resumable.metrics().running, 0);
      } finally {
        await resumable.close();
      }
    },
  );

  it("refuses an id it did not make, and a stream that is gone", async () => {
    const resumable = new ResumableStreams({ heartbeat: null, retention: 50 });
    const store = new McpEventStore(resumable);
    const send = () => Promise.resolve();
    try {
      await assert.rejects(
        store.replayEventsAfter("s_123_abc", { send }),
        {
          name: "RangeError",
          message: "Cannot replay events: not an event id of this store, got `s_123_abc`",
        },
      );
      assert.equal(await store.getStreamIdForEventId("s_123_abc"), undefined);
      const id = await store.storeEvent("s", { jsonrpc: "2.0", id: 1, result: {} });
      await resumable.finished("s");
      // A forged position of a real stream.
      await assert.rejects(
        store.replayEventsAfter(id.replace(/-1\//, "-9/"), { send }),
        { name: "RangeError" },
      );
      // The stream has ended: storing more is refused, not started anew.
      await assert.rejects(
        store.storeEvent("s", { jsonrpc: "2.0", method: "notifications/x" }),
        { message: "Cannot store event: the stream `s` is ended already" },
      );
      await waitFor(() => resumable.metrics().expired === 1, 5_000, "expiry");
      await assert.rejects(
        store.replayEventsAfter(id, { send }),
        {
          message:
            "Cannot replay events: no stream `s` (never started, or expired after its retention)",
        },
      );
    } finally {
      await store.close();
      await resumable.close();
    }
  });
});

const kind: ClientKind = runtime === "bun" ? "bun" : "node-redis";

describe(`McpEventStore with the MCP SDK over Redis (${kind})`, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });

  it(
    "resumes a tool call after a drop: missed notifications and the result once (Redis)",
    { timeout: 30_000 },
    async () => {
      const connections: Connections = await connect(kind, redis.url);
      const resumable = new ResumableStreams({
        redis: { client: connections.client, subscriber: connections.subscriber },
        prefix: "mcp1:",
        heartbeat: null,
      });
      try {
        await dropAndResume(resumable);
        assert.equal(resumable.metrics().ended.complete, 2);
        assert.equal(resumable.metrics().running, 0);
      } finally {
        await resumable.close();
        await connections.close();
      }
    },
  );

  it("replays on another worker exactly what one worker stored", { timeout: 30_000 }, async () => {
    const a = await connect(kind, redis.url);
    const b = await connect("ioredis", redis.url);
    const workerA = new ResumableStreams({
      redis: { client: a.client, subscriber: a.subscriber },
      prefix: "mcp2:",
    });
    const workerB = new ResumableStreams({
      redis: { client: b.client, subscriber: b.subscriber },
      prefix: "mcp2:",
    });
    const storeA = new McpEventStore(workerA, { scope: "session:" });
    const storeB = new McpEventStore(workerB, { scope: "session:" });
    try {
      const note = (n: number) => ({
        jsonrpc: "2.0",
        method: "notifications/progress",
        params: { n },
      });
      const ids: string[] = [];
      for (let n = 1; n <= 5; n++) ids.push(await storeA.storeEvent("stream-1", note(n)));
      assert.equal(new Set(ids).size, 5);
      const replay = async (after: string) => {
        const got: [string, unknown][] = [];
        const stream = await storeB.replayEventsAfter(after, {
          send: (id, message) => Promise.resolve(void got.push([id, message])),
        });
        assert.equal(stream, "stream-1");
        return got;
      };
      // Still running on worker A: worker B replays what is stored, then returns.
      assert.deepEqual(await replay(ids[1]!), [
        [ids[2], note(3)],
        [ids[3], note(4)],
        [ids[4], note(5)],
      ]);
      const last = await storeA.storeEvent("stream-1", { jsonrpc: "2.0", id: 7, result: {} });
      await workerA.finished("session:stream-1");
      assert.deepEqual(await replay(ids[4]!), [[last, { jsonrpc: "2.0", id: 7, result: {} }]]);
      assert.deepEqual(await replay(last), []);
    } finally {
      await storeA.close();
      await workerA.close();
      await workerB.close();
      await a.close();
      await b.close();
    }
  });
});
