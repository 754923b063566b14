import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  EventParserStream,
  EventStream,
  type ParsedEvent,
  type ServerSentEvent,
  sseResponse,
  StreamClosedError,
} from "../mod.ts";
import { delay, runtime, serve, type TestServer, waitFor } from "./_helpers.ts";
import { runFixture } from "./fixtures/_spawn.ts";

const decoder = new TextDecoder();

async function withServer(
  handler: (request: Request) => Response | Promise<Response>,
  fn: (server: TestServer) => Promise<void>,
): Promise<void> {
  const server = await serve(handler);
  try {
    await fn(server);
  } finally {
    await server.close();
  }
}

/** The events a body carries, with the comments interleaved as `{ comment }` entries. */
async function readEvents(
  body: ReadableStream<Uint8Array>,
): Promise<(ParsedEvent | { comment: string })[]> {
  const log: (ParsedEvent | { comment: string })[] = [];
  const parser = new EventParserStream({ onComment: (comment) => log.push({ comment }) });
  for await (const event of body.pipeThrough(parser) as unknown as AsyncIterable<ParsedEvent>) {
    log.push(event);
  }
  return log;
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

describe(`EventStream on a real ${runtime} server`, () => {
  it("events arrive in order and intact", async () => {
    const payloads: ServerSentEvent[] = [
      { data: "plain" },
      { data: " leading space", event: "spaced" },
      { data: "multi\nline\r\ncrlf\rcr" },
      { data: "😀 \u2028 漢字", id: "u" },
      { data: "" },
      { data: { json: [1, "two", null] }, event: "json" },
      { data: "x".repeat(200_000), id: "big" },
      { id: "" },
      { data: "after reset" },
    ];
    for (let n = 0; n < 200; n++) payloads.push({ data: `n${n}`, id: n });
    const handler = (): Response =>
      sseResponse(async (stream) => {
        for (const event of payloads) await stream.send(event);
      });
    await withServer(handler, async (server) => {
      const response = await fetch(server.origin);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
      assert.equal(response.headers.get("cache-control"), "no-cache, no-transform");
      const events = (await readEvents(response.body!)).filter((entry) => "data" in entry);
      const expected: ParsedEvent[] = [
        { type: "message", data: "plain", lastEventId: "" },
        { type: "spaced", data: " leading space", lastEventId: "" },
        { type: "message", data: "multi\nline\ncrlf\ncr", lastEventId: "" },
        { type: "message", data: "😀 \u2028 漢字", lastEventId: "u" },
        { type: "message", data: "", lastEventId: "u" },
        { type: "json", data: '{"json":[1,"two",null]}', lastEventId: "u" },
        { type: "message", data: "x".repeat(200_000), lastEventId: "big" },
        { type: "message", data: "after reset", lastEventId: "" },
      ];
      for (let n = 0; n < 200; n++) {
        expected.push({ type: "message", data: `n${n}`, lastEventId: String(n) });
      }
      assert.deepEqual(events, expected);
    });
  });

  it("the response headers and first bytes arrive at once on a quiet stream", async () => {
    let stream: EventStream | undefined;
    const handler = (): Response => {
      stream = new EventStream({ heartbeat: null });
      return stream.response();
    };
    await withServer(handler, async (server) => {
      const controller = new AbortController();
      // Without bytes to send, a runtime may hold the headers back: fail instead of hanging.
      const deadline = setTimeout(
        () => controller.abort(new Error("Nothing arrived within 2 s on a quiet stream")),
        2_000,
      );
      try {
        const started = performance.now();
        const response = await fetch(server.origin, { signal: controller.signal });
        const headersAfter = performance.now() - started;
        const reader = response.body!.getReader();
        const first = await reader.read();
        const bytesAfter = performance.now() - started;
        assert.equal(decoder.decode(first.value), ":\n\n");
        assert.ok(headersAfter < 500, `headers took ${headersAfter.toFixed(0)} ms`);
        assert.ok(bytesAfter < 500, `the first bytes took ${bytesAfter.toFixed(0)} ms`);
        controller.abort();
        await reader.cancel().catch(() => {});
      } finally {
        clearTimeout(deadline);
        controller.abort();
      }
      await waitFor(() => stream!.signal.aborted, 2_000, "the stream to end");
    });
  });

  it("heartbeats arrive only while the stream is idle", async () => {
    const handler = (): Response =>
      sseResponse(async (stream) => {
        for (let n = 0; n < 30; n++) {
          await stream.publish(`busy ${n}`);
          await delay(15);
        }
        await delay(500);
        await stream.publish("end");
      }, { heartbeat: 100 });
    await withServer(handler, async (server) => {
      const log = await readEvents((await fetch(server.origin)).body!);
      const kinds = log.map((entry) => ("comment" in entry ? "♥" : entry.data));
      const lastBusy = kinds.indexOf("busy 29");
      assert.deepEqual(kinds.slice(0, lastBusy + 1), [
        "♥", // the opening comment
        ...Array.from({ length: 30 }, (_, n) => `busy ${n}`),
      ], "no heartbeat while busy");
      const idle = kinds.slice(lastBusy + 1, -1);
      assert.ok(idle.length >= 3 && idle.every((kind) => kind === "♥"), kinds.join(" "));
      assert.equal(kinds.at(-1), "end");
    });
  });

  it("an idle stream with the defaults survives 15 s on the runtime's default server", {
    timeout: 25_000,
  }, async () => {
    const handler = (): Response =>
      sseResponse(async (stream) => {
        await stream.publish("start");
        await delay(15_000);
        await stream.publish("still alive");
      });
    await withServer(handler, async (server) => {
      const started = performance.now();
      const log = await readEvents((await fetch(server.origin)).body!);
      const elapsed = performance.now() - started;
      const events = log.filter((entry): entry is ParsedEvent => "data" in entry);
      assert.deepEqual(events.map((event) => event.data), ["start", "still alive"]);
      assert.ok(elapsed >= 14_900, `the stream ended after ${elapsed.toFixed(0)} ms`);
      const heartbeats = log.length - events.length - 1;
      assert.ok(heartbeats >= 2, `${heartbeats} heartbeats in 15 s`);
    });
  });

  for (const kind of ["quiet", "busy"] as const) {
    it(`a client disconnect aborts a ${kind} producer within 1 s and leaves no stream behind`, async () => {
      let signal: AbortSignal | undefined;
      let loopEnded = false;
      let abortedAt = 0;
      const handler = (): Response =>
        sseResponse(async (stream) => {
          signal = stream.signal;
          stream.signal.addEventListener("abort", () => abortedAt = performance.now(), {
            once: true,
          });
          try {
            if (kind === "quiet") await untilAborted(stream.signal);
            else {
              for (let n = 0; !stream.signal.aborted; n++) {
                await stream.publish(n).catch(() => {});
                await delay(20);
              }
            }
          } finally {
            loopEnded = true;
          }
        }, { onError: (error) => assert.fail(`unexpected report: ${error}`) });
      await withServer(handler, async (server) => {
        const controller = new AbortController();
        const response = await fetch(server.origin, { signal: controller.signal });
        const reader = response.body!.getReader();
        await reader.read();
        await delay(100);
        assert.equal(signal?.aborted, false);
        const disconnectedAt = performance.now();
        controller.abort();
        await reader.cancel().catch(() => {});
        await waitFor(() => loopEnded, 3_000, "the producer to end");
        const took = abortedAt - disconnectedAt;
        assert.ok(took < 1_000, `the producer saw the disconnect after ${took.toFixed(0)} ms`);
        const reason = signal!.reason;
        assert.ok(reason instanceof StreamClosedError);
        assert.equal(reason.reason, "cancelled");
      });
    });
  }

  it(
    "a client that stops reading is cut off with reason timeout",
    { timeout: 15_000 },
    async () => {
      let stream: EventStream | undefined;
      let producerError: unknown;
      const handler = (): Response => {
        stream = new EventStream({ writeTimeout: 300 });
        const frame = "x".repeat(65_536);
        void (async () => {
          try {
            // Fills the socket and the client's buffers until the runtime stops taking chunks.
            for (;;) await stream!.publish(frame);
          } catch (error) {
            producerError = error;
          }
        })();
        return stream.response();
      };
      await withServer(handler, async (server) => {
        const controller = new AbortController();
        const response = await fetch(server.origin, { signal: controller.signal });
        try {
          await waitFor(() => stream?.signal.aborted === true, 10_000, "the write timeout");
          const reason = stream!.signal.reason;
          assert.ok(reason instanceof StreamClosedError);
          assert.equal(reason.reason, "timeout");
          await waitFor(() => producerError !== undefined, 1_000, "the producer to stop");
          assert.equal(producerError, reason);
        } finally {
          controller.abort();
          await response.body?.cancel().catch(() => {});
        }
      });
    },
  );

  it("many clients that disconnect all end their producers", async () => {
    const producers = new Set<AbortSignal>();
    let ended = 0;
    const handler = (): Response =>
      sseResponse(async (stream) => {
        producers.add(stream.signal);
        await untilAborted(stream.signal);
        ended++;
      });
    await withServer(handler, async (server) => {
      const clients = Array.from({ length: 20 }, async () => {
        const controller = new AbortController();
        const response = await fetch(server.origin, { signal: controller.signal });
        const reader = response.body!.getReader();
        await reader.read();
        controller.abort();
        await reader.cancel().catch(() => {});
      });
      await Promise.all(clients);
      await waitFor(() => ended === 20, 3_000, "every producer to end");
      assert.equal(producers.size, 20);
      for (const signal of producers) {
        assert.equal((signal.reason as StreamClosedError).reason, "cancelled");
      }
    });
  });

  it("a disconnect is seen without request.signal and prints no warning", {
    timeout: 15_000,
  }, async () => {
    const { code, stdout, stderr } = await runFixture("no_request_signal.ts");
    assert.equal(code, 0, `exit code ${code}\n${stdout}\n${stderr}`);
    assert.match(stdout, /^producer aborted: cancelled after \d+ ms$/m);
    assert.doesNotMatch(stderr, /legacy|warn/i, stderr);
  });

  if (runtime === "deno") {
    it(
      "Deno does print its legacy warning when request.signal is read (the check above can fail)",
      {
        timeout: 15_000,
      },
      async () => {
        const { code, stderr } = await runFixture("no_request_signal.ts", ["--read-signal"]);
        assert.equal(code, 0, stderr);
        assert.match(stderr, /request\.signal aborts on successful responses \(legacy behavior\)/);
      },
    );
  }
});
