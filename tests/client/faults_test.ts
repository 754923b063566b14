import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect, EventTooLargeError } from "../../src/client/mod.ts";
import { EventParserStream } from "../../src/event_parser_stream.ts";
import { collect, delay, fromChunks, serve, waitFor } from "../_helpers.ts";
import { openBody, scripted, SSE, take } from "./_server.ts";

const encoder = new TextEncoder();

/** Deterministic bytes (a linear congruential generator), so a failure can be replayed. */
function garbage(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (state * 1_103_515_245 + 12_345) >>> 0;
    out[i] = state >>> 24;
  }
  return out;
}

/** A body that sends `chunkCount` chunks from `makeChunk`, `pause` ms apart, counting them. */
function slowBody(
  chunkCount: number,
  makeChunk: (index: number) => Uint8Array,
  counter: { sent: number; cancelled: boolean },
  pause = 3,
): ReadableStream<Uint8Array> {
  return new ReadableStream({
    async pull(controller) {
      if (counter.sent === chunkCount) return controller.close();
      await delay(pause);
      controller.enqueue(makeChunk(counter.sent++));
    },
    cancel() {
      counter.cancelled = true;
    },
  }, { highWaterMark: 0 });
}

describe("connect against faulty servers", () => {
  it("connect dispatches nothing from garbage bytes, exactly as the parser, and reconnects", async () => {
    // Invalid UTF-8 and random control bytes, with a few line breaks mixed in.
    const noise = garbage(64 * 1024, 7);
    for (let i = 0; i < noise.length; i += 997) noise[i] = 10;
    const parsed = await collect(fromChunks([noise]).pipeThrough(new EventParserStream()));
    const server = await scripted([
      () => new Response(noise, { headers: SSE }),
      () => new Response(openBody("data: valid\n\n"), { headers: SSE }),
    ]);
    try {
      const events = await take(connect(server.origin, { backoff: { initial: 1 } }), 1);
      assert.deepEqual(parsed, []);
      assert.equal(events[0]!.data, "valid");
      assert.equal(server.requests.length, 2);
    } finally {
      await server.close();
    }
  });

  it("connect drops the data of a server that never sends a blank line, then reconnects", async () => {
    const lines = "data: no end in sight\n".repeat(500);
    const server = await scripted([
      () => new Response(lines, { headers: SSE }),
      () => new Response(openBody("data: after\n\n"), { headers: SSE }),
    ]);
    try {
      const events = await take(connect(server.origin, { backoff: { initial: 1 } }), 1);
      assert.deepEqual(events.map((event) => event.data), ["after"]);
    } finally {
      await server.close();
    }
  });

  it("connect stops a 2 MiB line at a maxEventSize of 1 MiB without reconnecting", {
    timeout: 20_000,
  }, async () => {
    const chunk = encoder.encode("x".repeat(64 * 1024));
    const counter = { sent: 0, cancelled: false };
    const server = await scripted([() =>
      new Response(
        slowBody(32, (index) => index === 0 ? encoder.encode("data: ") : chunk, counter),
        { headers: SSE },
      )]);
    const errors: unknown[] = [];
    try {
      await assert.rejects(
        take(
          connect(server.origin, {
            maxEventSize: 1024 * 1024,
            backoff: { initial: 1 },
            onError: (error) => errors.push(error),
          }),
          1,
        ),
        (error: unknown) => {
          assert.ok(error instanceof EventTooLargeError);
          assert.ok(error instanceof RangeError);
          assert.equal(error.limit, 1024 * 1024);
          assert.equal(
            error.message,
            "Cannot parse event stream: an event exceeds `maxEventSize` of 1048576 characters",
          );
          return true;
        },
      );
      assert.equal(errors.length, 1);
      await waitFor(() => counter.cancelled, 5_000, "the server to see the cancel");
      assert.ok(counter.sent < 32, `the server sent all ${counter.sent} chunks`);
      await delay(20);
      assert.equal(server.requests.length, 1);
    } finally {
      await server.close();
    }
  });

  it("connect stops an event of many short data lines past maxEventSize", {
    timeout: 20_000,
  }, async () => {
    const lines = encoder.encode("data: 0123456789abcdef\n".repeat(2048));
    const counter = { sent: 0, cancelled: false };
    const server = await scripted([
      () => new Response(slowBody(64, () => lines, counter, 1), { headers: SSE }),
    ]);
    try {
      await assert.rejects(
        take(connect(server.origin, { maxEventSize: 256 * 1024 }), 1),
        EventTooLargeError,
      );
      await waitFor(() => counter.cancelled, 5_000, "the server to see the cancel");
      assert.ok(counter.sent < 64);
    } finally {
      await server.close();
    }
  });

  it("connect resumes with Last-Event-ID, without duplicates, from a server that closes after every event", async () => {
    const lastIds: (string | null)[] = [];
    const server = await serve((request) => {
      const lastId = request.headers.get("last-event-id");
      lastIds.push(lastId);
      const next = lastId === null ? 1 : Number(lastId) + 1;
      return new Response(`retry: 5\nid: ${next}\ndata: event ${next}\n\n`, { headers: SSE });
    });
    try {
      // resetAfter: 0 counts every accepted stream as a success, as EventSource does: the
      // default would back off a server that ends every stream at once (see citizen_test.ts).
      const events = await take(connect(server.origin, { backoff: { resetAfter: 0 } }), 10);
      assert.deepEqual(
        events.map((event) => event.data),
        Array.from({ length: 10 }, (_, i) => `event ${i + 1}`),
      );
      assert.deepEqual(
        lastIds.slice(0, 10),
        [null, "1", "2", "3", "4", "5", "6", "7", "8", "9"],
      );
    } finally {
      await server.close();
    }
  });

  it("connect treats a server that cuts the body mid-event as a lost connection", async () => {
    const server = await scripted([
      () =>
        new Response(
          new ReadableStream({
            start(controller) {
              controller.enqueue(encoder.encode("id: 1\ndata: whole\n\nid: 2\ndata: cut"));
            },
            async pull(controller) {
              await delay(30);
              controller.error(new Error("Broken pipe"));
            },
          }),
          { headers: SSE },
        ),
      () => new Response(openBody("data: next\n\n"), { headers: SSE }),
    ]);
    try {
      const events = await take(connect(server.origin, { backoff: { initial: 1 } }), 2);
      assert.deepEqual(events.map((event) => event.data), ["whole", "next"]);
      assert.equal(server.requests[1]!.headers.get("last-event-id"), "1");
    } finally {
      await server.close();
    }
  });
});
