/**
 * The HTTP side of a stream: the options of an SSE response, its headers, and the one place
 * that wraps a body in a `Response`. Both `EventStream.response()` and `sseResponse()` use it,
 * so neither imports the other.
 * @module
 */

/** Options of `sseResponse()`: a `ResponseInit` plus the settings of a stream it creates. */
export interface SseResponseInit extends ResponseInit {
  /**
   * Keepalive interval in ms for a stream that `sseResponse` creates (see `EventStream`);
   * ignored when the source is an `EventStream`, which has its own.
   * @default {5_000}
   */
  heartbeat?: number | null | undefined;
  /** Aborting it closes the stream (for example `request.signal`; not needed for disconnects). */
  signal?: AbortSignal | undefined;
  /**
   * A reconnection delay in ms to send first, as a `retry:` field (see `EventStream`); ignored
   * when the source is an `EventStream`.
   */
  retry?: number | undefined;
  /**
   * Frames queued before the source waits (see `EventStream`); ignored when the source is an
   * `EventStream`.
   * @default {256}
   */
  bufferSize?: number | undefined;
  /**
   * Bytes queued before the source waits (see `EventStream`); ignored when the source is an
   * `EventStream`.
   * @default {1_048_576}
   */
  bufferBytes?: number | undefined;
  /**
   * Milliseconds a chunk may wait for the client to read it before the stream ends (see
   * `EventStream`); ignored when the source is an `EventStream`.
   * @default {30_000}
   */
  writeTimeout?: number | null | undefined;
  /**
   * The most ms a chunk is held so that the events that follow join it (see `EventStream`);
   * `0` turns batching off; ignored when the source is an `EventStream`.
   * @default {5}
   */
  writeDelay?: number | undefined;
  /**
   * Called with what a producer or source threw; the stream closes either way. A send that
   * failed only because the client left is not reported.
   * @default {console.error}
   */
  onError?: ((error: unknown) => void) | undefined;
}

/** What a stream's response needs of it. */
interface ResponseSource {
  readonly readable: ReadableStream<Uint8Array>;
  readonly signal: AbortSignal;
  close(): void;
}

/** Hop-by-hop headers: HTTP/2 forbids them, and the runtime frames the body itself. */
const HOP_BY_HOP = ["connection", "keep-alive", "transfer-encoding"];

/** The options above that configure a stream `sseResponse` creates. */
const STREAM_KEYS = [
  "heartbeat",
  "signal",
  "retry",
  "bufferSize",
  "bufferBytes",
  "writeTimeout",
  "writeDelay",
];
/** The names of the options above that are not part of a `ResponseInit`. */
const STREAM_OPTIONS = new Set([...STREAM_KEYS, "onError"]);

/**
 * Wraps a stream's body in a `Response` with the SSE headers; caller headers replace the
 * defaults of the same name, hop-by-hop headers are dropped. `init.signal` closes the stream.
 */
export function streamResponse(stream: ResponseSource, init: SseResponseInit = {}): Response {
  const responseInit: ResponseInit = {};
  for (const [key, value] of Object.entries(init)) {
    if (!STREAM_OPTIONS.has(key)) (responseInit as Record<string, unknown>)[key] = value;
  }
  if (init.signal) closeOnAbort(stream, init.signal);
  return new Response(stream.readable, { ...responseInit, headers: sseHeaders(init.headers) });
}

function sseHeaders(given: HeadersInit | undefined): Headers {
  const headers = new Headers({
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no",
  });
  if (given) {
    for (const [name, value] of new Headers(given)) headers.set(name, value);
    for (const name of HOP_BY_HOP) headers.delete(name);
  }
  return headers;
}

function closeOnAbort(stream: ResponseSource, signal: AbortSignal): void {
  if (signal.aborted) return stream.close();
  const onAbort = (): void => stream.close();
  signal.addEventListener("abort", onAbort, { once: true });
  stream.signal.addEventListener(
    "abort",
    () => signal.removeEventListener("abort", onAbort),
    { once: true },
  );
}

/** The options of a stream that `sseResponse` creates, from its init. */
export function streamOptionsOf(init: SseResponseInit): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const key of STREAM_KEYS) {
    const value = (init as Record<string, unknown>)[key];
    if (value !== undefined) options[key] = value;
  }
  return options;
}
