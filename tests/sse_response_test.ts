import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  EventStream,
  type ServerSentEvent,
  sseResponse,
  type SseSource,
  StreamClosedError,
} from "../mod.ts";
import { delay, fromChunks, untilAborted, waitFor } from "./_helpers.ts";

const OPENING = ":\n\n";
const decoder = new TextDecoder();

async function readChunk(response: Response): Promise<string> {
  const reader = response.body!.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  return decoder.decode(value);
}

/** Runs `fn` with console.error captured. */
async function captureConsoleError(fn: (calls: unknown[][]) => Promise<void>): Promise<void> {
  const original = console.error;
  const calls: unknown[][] = [];
  console.error = (...args: unknown[]) => void calls.push(args);
  try {
    await fn(calls);
  } finally {
    console.error = original;
  }
}

describe("sseResponse sources", () => {
  it("sseResponse streams an EventStream", async () => {
    const stream = new EventStream({ heartbeat: null });
    const response = sseResponse(stream);
    await stream.publish("a");
    stream.close();
    assert.equal(await response.text(), OPENING + "data: a\n\n");
  });

  it("sseResponse streams a ReadableStream of events, then ends", async () => {
    const source = fromChunks<ServerSentEvent>([{ data: "a" }, { event: "e", id: 2, data: null }]);
    const response = sseResponse(source, { heartbeat: null });
    assert.equal(await response.text(), OPENING + "data: a\n\nevent: e\nid: 2\ndata: null\n\n");
  });

  it("sseResponse streams an async iterable of events, then ends", async () => {
    async function* events(): AsyncGenerator<ServerSentEvent> {
      yield { data: "one" };
      await delay(5);
      yield { data: "two", id: "2" };
    }
    const response = sseResponse(events(), { heartbeat: null });
    assert.equal(await response.text(), OPENING + "data: one\n\nid: 2\ndata: two\n\n");
  });

  it("sseResponse runs a producer and closes the stream when it returns", async () => {
    let given: EventStream | undefined;
    const response = sseResponse(async (stream) => {
      given = stream;
      await stream.publish("a");
      await delay(5);
      await stream.publish({ b: 1 }, { event: "b" });
    }, { heartbeat: null });
    assert.equal(await response.text(), OPENING + 'data: a\n\nevent: b\ndata: {"b":1}\n\n');
    assert.ok(given instanceof EventStream);
    assert.equal((given.signal.reason as StreamClosedError).reason, "closed");
  });

  it("sseResponse closes the stream of a synchronous producer", async () => {
    const response = sseResponse((stream) => void stream.publish("sync"), { heartbeat: null });
    assert.equal(await response.text(), OPENING + "data: sync\n\n");
  });

  it("sseResponse refuses a source of the wrong kind with a TypeError", () => {
    const bad = [
      42,
      "text",
      null,
      undefined,
      {},
      { next() {} },
      [{ data: "a" }],
      new Response("x"),
    ];
    for (const source of bad) {
      assert.throws(() => sseResponse(source as unknown as SseSource), (error: unknown) => {
        assert.ok(error instanceof TypeError);
        assert.match(error.message, /^Cannot create SSE response: `source` must be /);
        return true;
      });
    }
  });

  it("sseResponse passes the heartbeat option to the stream it creates", async () => {
    const controller = new AbortController();
    const response = sseResponse(
      (stream) => untilAborted(stream.signal),
      { heartbeat: 30, signal: controller.signal },
    );
    const reader = response.body!.getReader();
    assert.equal(decoder.decode((await reader.read()).value), OPENING);
    assert.equal(decoder.decode((await reader.read()).value), ":\n\n");
    controller.abort();
    assert.equal((await reader.read()).done, true);
  });
});

describe("sseResponse headers", () => {
  it("sseResponse sets exactly the default SSE headers", () => {
    const response = sseResponse(new EventStream({ heartbeat: null }));
    assert.equal(response.status, 200);
    assert.deepEqual([...response.headers].sort(), [
      ["cache-control", "no-cache, no-transform"],
      ["content-type", "text/event-stream; charset=utf-8"],
      ["x-accel-buffering", "no"],
    ]);
    void response.body!.cancel();
  });

  it("sseResponse lets caller headers and status win", () => {
    const inits: HeadersInit[] = [
      { "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Custom": "1" },
      [["content-type", "text/event-stream"], ["cache-control", "no-store"], ["x-custom", "1"]],
      new Headers({
        "CONTENT-TYPE": "text/event-stream",
        "cache-control": "no-store",
        "x-custom": "1",
      }),
    ];
    for (const headers of inits) {
      const response = sseResponse(new EventStream({ heartbeat: null }), {
        status: 203,
        statusText: "Partial",
        headers,
      });
      assert.equal(response.status, 203);
      assert.equal(response.statusText, "Partial");
      assert.deepEqual([...response.headers].sort(), [
        ["cache-control", "no-store"],
        ["content-type", "text/event-stream"],
        ["x-accel-buffering", "no"],
        ["x-custom", "1"],
      ]);
      void response.body!.cancel();
    }
  });

  it("sseResponse never emits hop-by-hop headers, even when the caller passes them", () => {
    const response = sseResponse(new EventStream({ heartbeat: null }), {
      headers: {
        Connection: "keep-alive",
        "Keep-Alive": "timeout=5",
        "Transfer-Encoding": "chunked",
        "X-Kept": "yes",
      },
    });
    assert.equal(response.headers.get("connection"), null);
    assert.equal(response.headers.get("keep-alive"), null);
    assert.equal(response.headers.get("transfer-encoding"), null);
    assert.equal(response.headers.get("x-kept"), "yes");
    void response.body!.cancel();
  });
});

describe("sseResponse errors", () => {
  it("sseResponse reports a producer's throw to onError and closes the stream", async () => {
    const failure = new Error("boom");
    const reported: unknown[] = [];
    const response = sseResponse(async (stream) => {
      await stream.publish("before");
      throw failure;
    }, { heartbeat: null, onError: (error) => reported.push(error) });
    assert.equal(await response.text(), OPENING + "data: before\n\n");
    assert.deepEqual(reported, [failure]);
  });

  it("sseResponse reports a producer's throw to console.error by default", async () => {
    await captureConsoleError(async (calls) => {
      const failure = new Error("default report");
      const response = sseResponse(() => Promise.reject(failure), { heartbeat: null });
      assert.equal(await response.text(), OPENING);
      assert.equal(calls.length, 1);
      assert.ok(calls[0]?.includes(failure), "the error is logged");
    });
  });

  it("sseResponse reports an async iterable's throw and closes the stream", async () => {
    const failure = new TypeError("iterator broke");
    async function* events(): AsyncGenerator<ServerSentEvent> {
      yield { data: "a" };
      throw failure;
    }
    const reported: unknown[] = [];
    const response = sseResponse(events(), {
      heartbeat: null,
      onError: (error) => reported.push(error),
    });
    assert.equal(await response.text(), OPENING + "data: a\n\n");
    assert.deepEqual(reported, [failure]);
  });

  it("sseResponse reports a ReadableStream source's error and closes the stream", async () => {
    const failure = new Error("source errored");
    const source = new ReadableStream<ServerSentEvent>({
      start(controller) {
        controller.enqueue({ data: "a" });
        controller.error(failure);
      },
    });
    const reported: unknown[] = [];
    const response = sseResponse(source, { heartbeat: null, onError: (e) => reported.push(e) });
    assert.equal(await response.text(), OPENING);
    assert.deepEqual(reported, [failure]);
  });

  it("sseResponse reports an event the source yields that cannot be encoded", async () => {
    const reported: unknown[] = [];
    const response = sseResponse(fromChunks<ServerSentEvent>([{ data: "ok" }, { id: "a\nb" }]), {
      heartbeat: null,
      onError: (e) => reported.push(e),
    });
    assert.equal(await response.text(), OPENING + "data: ok\n\n");
    assert.equal(reported.length, 1);
    assert.ok(reported[0] instanceof TypeError);
  });

  it("sseResponse does not report the StreamClosedError of a client that left", async () => {
    await captureConsoleError(async (calls) => {
      const reported: unknown[] = [];
      let ended = false;
      let sends = 0;
      const response = sseResponse(async (stream) => {
        try {
          // Written the careless way: nothing checks the signal, the rejection ends the loop.
          for (;;) {
            await stream.publish(sends++);
            await delay(2);
          }
        } finally {
          ended = true;
        }
      }, { heartbeat: null, onError: (e) => reported.push(e) });
      await readChunk(response);
      await response.body!.cancel();
      await waitFor(() => ended, 5_000, "the producer to end");
      await delay(10);
      assert.deepEqual(reported, []);
      assert.deepEqual(calls, []);
    });
  });

  it("sseResponse still reports a StreamClosedError that belongs to another stream", async () => {
    const other = new EventStream({ heartbeat: null });
    other.close();
    const reported: unknown[] = [];
    const response = sseResponse(() => other.publish("x"), {
      heartbeat: null,
      onError: (e) => reported.push(e),
    });
    await response.text();
    assert.equal(reported.length, 1);
    assert.ok(reported[0] instanceof StreamClosedError);
  });
});

describe("sseResponse disconnects", () => {
  it("sseResponse aborts a producer's signal with reason cancelled when the body is cancelled", async () => {
    let signal: AbortSignal | undefined;
    const response = sseResponse(async (stream) => {
      signal = stream.signal;
      await untilAborted(stream.signal);
    }, { heartbeat: null });
    await readChunk(response);
    assert.equal(signal?.aborted, false);
    await response.body!.cancel("client left");
    assert.equal(signal?.aborted, true);
    const reason = signal!.reason as StreamClosedError;
    assert.ok(reason instanceof StreamClosedError);
    assert.equal(reason.reason, "cancelled");
  });

  it("sseResponse calls return() on an async generator when the body is cancelled", async () => {
    let returned = false;
    let yielded = 0;
    async function* events(): AsyncGenerator<ServerSentEvent> {
      try {
        for (;;) {
          yield { data: String(yielded++) };
          await delay(10);
        }
      } finally {
        returned = true;
      }
    }
    const response = sseResponse(events(), { heartbeat: null });
    await readChunk(response);
    await response.body!.cancel();
    await waitFor(() => returned, 5_000, "the generator's finally block");
    const after = yielded;
    await delay(40);
    assert.equal(yielded, after, "the generator runs no more");
  });

  it("sseResponse calls return() on an iterator that is waiting in next() when the body is cancelled", async () => {
    let returnCalls = 0;
    const iterable: AsyncIterable<ServerSentEvent> = {
      [Symbol.asyncIterator]: () => ({
        next: () => new Promise<IteratorResult<ServerSentEvent>>(() => {}),
        return: () => {
          returnCalls++;
          return Promise.resolve({ done: true, value: undefined });
        },
      }),
    };
    const response = sseResponse(iterable, { heartbeat: null });
    await readChunk(response);
    await response.body!.cancel();
    await waitFor(() => returnCalls > 0, 5_000, "return()");
    await delay(10);
    assert.equal(returnCalls, 1);
  });

  it("sseResponse cancels a ReadableStream source when the body is cancelled", async () => {
    let cancelReason: unknown;
    let cancelled = false;
    const source = new ReadableStream<ServerSentEvent>({
      pull: () => delay(5),
      cancel(reason) {
        cancelled = true;
        cancelReason = reason;
      },
    });
    const response = sseResponse(source, { heartbeat: null });
    await readChunk(response);
    await response.body!.cancel();
    await waitFor(() => cancelled, 5_000, "the source's cancel()");
    assert.ok(cancelReason instanceof StreamClosedError);
    assert.equal(cancelReason.reason, "cancelled");
  });

  it("sseResponse closes an EventStream source when init.signal aborts", async () => {
    const controller = new AbortController();
    const stream = new EventStream({ heartbeat: null });
    const response = sseResponse(stream, { signal: controller.signal });
    controller.abort();
    assert.equal(stream.closed, true);
    assert.equal(await response.text(), OPENING);
  });

  it("sseResponse closes an EventStream source at once when init.signal is already aborted", async () => {
    const stream = new EventStream({ heartbeat: null });
    const response = sseResponse(stream, { signal: AbortSignal.abort() });
    assert.equal(stream.closed, true);
    await response.body!.cancel();
  });

  it("sseResponse gives a producer an aborted stream when init.signal aborts", async () => {
    const controller = new AbortController();
    let reason: unknown;
    const response = sseResponse(async (stream) => {
      await untilAborted(stream.signal);
      reason = stream.signal.reason;
    }, { heartbeat: null, signal: controller.signal });
    await readChunk(response);
    controller.abort();
    await waitFor(() => reason !== undefined, 5_000, "the producer to see the abort");
    assert.equal((reason as StreamClosedError).reason, "aborted");
    await response.body!.cancel();
  });
});
