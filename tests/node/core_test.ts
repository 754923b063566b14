// The core and the client on Node 20+, unchanged, over a real node:http server
// (`@hono/node-server`'s Request/Response adapter). Run with `node scripts/test-node.mjs`; the
// file also passes under `deno test` and `bun test`.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  Broker,
  EventEncoderStream,
  EventParserStream,
  formatEvent,
  type ParsedEvent,
  type ServerSentEvent,
  sseResponse,
  STREAM_RESET_EVENT,
} from "../../mod.ts";
import { connect, ConnectError } from "../../src/client/mod.ts";
import { readEvents, waitFor } from "../_helpers.ts";
import { type NodeTestServer, serveNode } from "./_serve.ts";

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

describe("wire format on Node", () => {
  it("formatEvent writes every field and EventParserStream reads it back as EventSource would", async () => {
    const events: ServerSentEvent[] = [
      { event: "note", id: "7", data: "line one\nline two" },
      { data: { json: true, list: [1, 2] } },
      { comment: "ignored", data: " leading space" },
    ];
    const text = events.map(formatEvent).join("");
    assert.equal(
      formatEvent(events[0]!),
      "event: note\nid: 7\ndata: line one\ndata: line two\n\n",
    );
    const parsed: ParsedEvent[] = [];
    // Split in two to cross a chunk boundary in the middle of a field.
    const chunks = [text.slice(0, 17), text.slice(17)];
    const stream = new Response(chunks.join("")).body!
      .pipeThrough(new EventParserStream());
    for await (const event of stream as unknown as AsyncIterable<ParsedEvent>) parsed.push(event);
    assert.deepEqual(parsed, [
      { type: "note", data: "line one\nline two", lastEventId: "7" },
      { type: "message", data: '{"json":true,"list":[1,2]}', lastEventId: "7" },
      { type: "message", data: " leading space", lastEventId: "7" },
    ]);
  });

  it("EventEncoderStream encodes a stream of events into bytes", async () => {
    const source = ReadableStream.from<ServerSentEvent>([{ data: "a" }, { id: 2, data: "b" }]);
    const text = await new Response(source.pipeThrough(new EventEncoderStream())).text();
    assert.equal(text, "data: a\n\nid: 2\ndata: b\n\n");
  });
});

describe("sseResponse and Broker over node:http", () => {
  let server: NodeTestServer;
  let handler: (request: Request) => Response | Promise<Response> = () =>
    new Response(null, { status: 404 });

  before(async () => {
    server = await serveNode((request) => handler(request));
  });

  after(() => server.close());

  it("streams a producer's events with the SSE headers", async () => {
    handler = () =>
      sseResponse(async (stream) => {
        for (let n = 1; n <= 3; n++) await stream.publish({ n }, { event: "tick", id: n });
      });
    const response = await fetch(server.origin);
    assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
    assert.equal(response.headers.get("cache-control"), "no-cache, no-transform");
    assert.equal(response.headers.get("x-accel-buffering"), "no");
    const events = await readEvents(response, 10);
    assert.deepEqual(events.map((e) => [e.type, e.data, e.lastEventId]), [
      ["tick", '{"n":1}', "1"],
      ["tick", '{"n":2}', "2"],
      ["tick", '{"n":3}', "3"],
    ]);
  });

  it("stops the producer when the client disconnects", async () => {
    let ended = false;
    handler = () =>
      sseResponse(async (stream) => {
        try {
          for (let n = 1; !stream.signal.aborted; n++) {
            await stream.publish(String(n), { id: n });
            await sleep(20, stream.signal);
          }
        } finally {
          ended = true;
        }
      });
    const events = await readEvents(await fetch(server.origin), 2);
    assert.deepEqual(events.map((e) => e.data), ["1", "2"]);
    await waitFor(() => ended, 5_000, "the producer to end");
  });

  it("sends a heartbeat comment on a quiet stream", async () => {
    // A producer that sends nothing and ends when the client leaves.
    const idle = (stream: { signal: AbortSignal }): Promise<void> =>
      new Promise((resolve) => stream.signal.addEventListener("abort", () => resolve()));
    handler = () => sseResponse(idle, { heartbeat: 30 });
    const response = await fetch(server.origin);
    const reader = response.body!.getReader();
    let text = "";
    while (text.split(":\n\n").length < 4) {
      text += new TextDecoder().decode((await reader.read()).value);
    }
    await reader.cancel();
    // The opening comment, then keepalives, and nothing else.
    assert.match(text, /^(:\n\n)+$/);
  });

  it("fans one publish out to every subscriber of a channel, and only to them", async () => {
    const broker = new Broker({ heartbeat: null });
    handler = (request) => broker.response(new URL(request.url).pathname.slice(1), request);
    const a = await fetch(`${server.origin}/news`);
    const b = await fetch(`${server.origin}/news`);
    const other = await fetch(`${server.origin}/sport`);
    assert.equal(broker.clientCount("news"), 2);
    await broker.publish("sport", "goal");
    await broker.publish("news", { headline: "hello" }, { event: "story" });
    for (const response of [a, b]) {
      assert.deepEqual(await readEvents(response, 1), [
        { type: "story", data: '{"headline":"hello"}', lastEventId: "" },
      ]);
    }
    assert.deepEqual((await readEvents(other, 1)).map((e) => e.data), ["goal"]);
    await waitFor(() => broker.clientCount() === 0, 5_000, "the clients to be removed");
    await broker.close();
  });

  it("replays what a client missed when it comes back with Last-Event-ID", async () => {
    const broker = new Broker({ history: 10, heartbeat: null });
    handler = (request) => broker.response("feed", request);
    const reading = readEvents(await fetch(server.origin), 1);
    await broker.publish("feed", "one");
    const [one] = await reading;
    assert.equal(one?.data, "one");
    await waitFor(() => broker.clientCount() === 0, 5_000, "the client to be removed");
    await broker.publish("feed", "two");
    await broker.publish("feed", "three");
    const resumed = await fetch(server.origin, { headers: { "last-event-id": one!.lastEventId } });
    assert.deepEqual((await readEvents(resumed, 2)).map((e) => e.data), ["two", "three"]);
    await waitFor(() => broker.clientCount() === 0, 5_000, "the client to be removed");
    await broker.close();
  });

  it("sends the gap signal to a client whose Last-Event-ID the broker does not know", async () => {
    const broker = new Broker({ history: 10, heartbeat: null });
    handler = (request) => broker.response("feed", request);
    await broker.publish("feed", "one");
    const response = await fetch(server.origin, { headers: { "last-event-id": "before-restart" } });
    const [reset] = await readEvents(response, 1);
    assert.equal(reset?.type, STREAM_RESET_EVENT);
    assert.deepEqual(JSON.parse(reset!.data), {
      channels: ["feed"],
      lastEventId: "before-restart",
    });
    assert.notEqual(reset!.lastEventId, "");
    await broker.close();
  });
});

describe("connect() on Node", () => {
  let server: NodeTestServer;
  let handler: (request: Request) => Response | Promise<Response> = () =>
    new Response(null, { status: 404 });

  before(async () => {
    server = await serveNode((request) => handler(request));
  });

  after(() => server.close());

  it("reconnects when a stream ends and resumes with Last-Event-ID", async () => {
    const seen: string[] = [];
    handler = (request) => {
      const last = Number(request.headers.get("last-event-id") ?? 0);
      seen.push(request.headers.get("last-event-id") ?? "");
      return sseResponse(async (stream) => {
        await stream.send({ retry: 10 });
        for (let n = last + 1; n <= last + 2; n++) await stream.publish(`#${n}`, { id: n });
      });
    };
    const events: ParsedEvent[] = [];
    const connection = connect(server.origin, { backoff: { initial: 10 } });
    for await (const event of connection) {
      events.push(event);
      if (events.length === 5) break;
    }
    assert.deepEqual(events.map((e) => e.data), ["#1", "#2", "#3", "#4", "#5"]);
    assert.deepEqual(seen, ["", "2", "4"]);
    assert.equal(connection.lastEventId, "5");
  });

  it("throws a ConnectError that carries the status for a refused stream", async () => {
    handler = () => new Response("no", { status: 403 });
    await assert.rejects(
      async () => {
        for await (const _ of connect(server.origin)) break;
      },
      (error: unknown) => error instanceof ConnectError && error.status === 403,
    );
  });
});
