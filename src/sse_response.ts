import { EventStream, type EventStreamOptions } from "./event_stream.ts";
import { StreamClosedError } from "./errors.ts";
import type { ServerSentEvent } from "./server_sent_event.ts";
import { type SseResponseInit, streamOptionsOf, streamResponse } from "./_response.ts";

export type { SseResponseInit } from "./_response.ts";

/** What {@linkcode sseResponse} can stream. */
export type SseSource =
  | EventStream
  | ReadableStream<ServerSentEvent>
  | AsyncIterable<ServerSentEvent>
  | ((stream: EventStream) => void | Promise<void>);

/**
 * Streams events as a `Response` with the right headers, from any of four sources:
 * an `EventStream`; a `ReadableStream` or async iterable of events (`return()` / `cancel()` is
 * called when the client goes away); or a producer function, which gets a new stream, is awaited,
 * and closes it when it settles (a throw is reported through `onError`).
 *
 * Headers: `Content-Type: text/event-stream; charset=utf-8`, `Cache-Control: no-cache,
 * no-transform` and `X-Accel-Buffering: no` (so nginx does not buffer), replaced by caller headers
 * of the same name; hop-by-hop headers (`Connection`, `Keep-Alive`, `Transfer-Encoding`) are
 * never sent, even when given.
 *
 * Disconnects are seen without `request.signal`: the body's cancellation is enough on every
 * runtime, so passing `signal` is optional.
 *
 * @param source What to stream.
 * @param init Status, headers, and the options of a stream that is created here.
 * @returns The response, whose body starts at once with an opening comment.
 * @throws {TypeError} `source` is none of the four kinds.
 *
 * @example A producer under Deno.serve or Bun.serve
 * ```ts
 * import { sseResponse } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * function handler(_request: Request): Response {
 *   return sseResponse(async (stream) => {
 *     for (let n = 1; !stream.signal.aborted && n <= 3; n++) {
 *       await stream.publish({ n }, { event: "tick", id: String(n) });
 *     }
 *   }, { heartbeat: null });
 * }
 * // Deno.serve(handler) or Bun.serve({ fetch: handler }); here, a client reads it all:
 * const text = await handler(new Request("http://localhost/")).text();
 * assert.equal(text.match(/event: tick/g)?.length, 3);
 * assert.ok(text.endsWith('id: 3\ndata: {"n":3}\n\n'));
 * ```
 *
 * @example An async generator as the source
 * ```ts
 * import { sseResponse } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * async function* countdown() {
 *   for (let n = 3; n > 0; n--) yield { data: String(n) };
 * }
 * const response = sseResponse(countdown(), { heartbeat: null });
 * assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
 * assert.equal(await response.text(), ":\n\ndata: 3\n\ndata: 2\n\ndata: 1\n\n");
 * ```
 */
export function sseResponse(source: SseSource, init: SseResponseInit = {}): Response {
  const report = init.onError ?? reportToConsole;
  if (source instanceof EventStream) return streamResponse(source, init);
  // The stream watches the signal itself (it aborts with reason "aborted").
  const stream = new EventStream(streamOptionsOf(init) as EventStreamOptions);
  if (typeof source === "function") void runProducer(stream, source, report);
  else if (source instanceof ReadableStream) void pumpReadable(stream, source, report);
  else if (source && typeof source === "object" && Symbol.asyncIterator in source) {
    void pumpIterable(stream, source, report);
  } else {
    stream.close();
    throw new TypeError(
      `Cannot create SSE response: \`source\` must be an EventStream, a ReadableStream, an async iterable or a function, got \`${
        source === null ? "null" : typeof source
      }\``,
    );
  }
  return streamResponse(stream, { ...init, signal: undefined });
}

async function runProducer(
  stream: EventStream,
  producer: (stream: EventStream) => void | Promise<void>,
  report: (error: unknown) => void,
): Promise<void> {
  try {
    await producer(stream);
  } catch (error) {
    reportUnlessClosed(stream, error, report);
  } finally {
    stream.close();
  }
}

async function pumpReadable(
  stream: EventStream,
  source: ReadableStream<ServerSentEvent>,
  report: (error: unknown) => void,
): Promise<void> {
  const reader = source.getReader();
  const onAbort = (): void => void reader.cancel(stream.signal.reason).catch(() => {});
  stream.signal.addEventListener("abort", onAbort, { once: true });
  try {
    while (!stream.signal.aborted) {
      const { done, value } = await reader.read();
      if (done) break;
      await stream.send(value);
    }
  } catch (error) {
    reportUnlessClosed(stream, error, report);
    void reader.cancel(error).catch(() => {});
  } finally {
    stream.signal.removeEventListener("abort", onAbort);
    reader.releaseLock();
    stream.close();
  }
}

async function pumpIterable(
  stream: EventStream,
  source: AsyncIterable<ServerSentEvent>,
  report: (error: unknown) => void,
): Promise<void> {
  const iterator = source[Symbol.asyncIterator]();
  let returned = false;
  const stop = (): void => {
    if (returned) return;
    returned = true;
    // Queued behind a pending next() on an async generator; it runs as soon as that settles.
    void Promise.resolve(iterator.return?.()).catch(report);
  };
  stream.signal.addEventListener("abort", stop, { once: true });
  try {
    while (!stream.signal.aborted) {
      const { done, value } = await iterator.next();
      if (done) {
        returned = true;
        break;
      }
      await stream.send(value);
    }
  } catch (error) {
    reportUnlessClosed(stream, error, report);
    stop();
  } finally {
    stream.signal.removeEventListener("abort", stop);
    stream.close();
  }
}

/** A send that failed because this stream ended is how a producer learns it should stop. */
function reportUnlessClosed(
  stream: EventStream,
  error: unknown,
  report: (error: unknown) => void,
): void {
  if (error instanceof StreamClosedError && error === stream.signal.reason) return;
  report(error);
}

function reportToConsole(error: unknown): void {
  console.error("sseResponse: the event source failed and the stream was closed:", error);
}
