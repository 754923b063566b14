import { formatEvent, type ServerSentEvent } from "./format_event.ts";
import { StreamClosedError, StreamOverflowError } from "./errors.ts";
import { concatBytes, encodeText } from "./_bytes.ts";
import { checkOptionalMs, checkPositiveInteger } from "./_options.ts";
import { sseResponse, type SseResponseInit } from "./sse_response.ts";

/** Options of {@linkcode EventStream}. */
export interface EventStreamOptions {
  /**
   * Milliseconds of idleness after which a keepalive comment (`:`) is sent; `null` turns it off.
   * A busy stream sends none. The default keeps a quiet stream alive under `Bun.serve`, which
   * closes a connection that is idle for 10 s, and under proxies with longer idle timeouts.
   * @default {5_000}
   */
  heartbeat?: number | null;
  /** Aborting this signal (for example `request.signal`) closes the stream at once. */
  signal?: AbortSignal;
  /**
   * Frames queued before `send()`/`publish()` waits for the client to read.
   * @default {256}
   */
  bufferSize?: number;
  /**
   * Bytes queued before `send()`/`publish()` waits, whatever the frame count: a 1 MB event is
   * not "one slot". A frame is always accepted into an empty buffer, however large. Frames are
   * kept as text until they leave (one encode per chunk is far cheaper than one per frame), so
   * non-ASCII text counts one per UTF-16 code unit here.
   * @default {1_048_576}
   */
  bufferBytes?: number;
  /**
   * Milliseconds a chunk may wait for the runtime to take it (the client is reading) before the
   * stream ends with reason `"timeout"`. This is what finds half-open connections and frozen
   * tabs; `null` turns it off.
   * @default {30_000}
   */
  writeTimeout?: number | null;
  /**
   * A reconnection delay in ms to send first, as a `retry:` field. Without it the stream opens
   * with an empty comment; either way the response reaches the client at once (so
   * `EventSource.onopen` fires even on a quiet stream).
   */
  retry?: number;
}

/** Options of {@linkcode EventStream.publish}. */
export interface PublishOptions {
  /** The event type. */
  event?: string;
  /** The event id. */
  id?: string | number;
  /** A new reconnection delay in ms. */
  retry?: number;
}

/** What the broker does with a frame when a client's buffer is full. */
export type OverflowPolicy = "disconnect" | "drop-oldest";

type Frame = string | Uint8Array;
const sizeOf = (f: Frame): number => typeof f === "string" ? f.length : f.byteLength;
type Waiter = { frame: Frame; resolve(): void; reject(error: unknown): void };

/** Microtask hops without a new frame before a flush: one more than a broker publish takes. */
const QUIET_HOPS = 4;
const OPEN = 0;
const CLOSED = 1;
const RESOLVED: Promise<void> = Promise.resolve();
const HEARTBEAT = encodeText(":\n\n");

function noop(): void {}

/**
 * A rejection that does not count as unhandled: `await` still throws it, but a fire-and-forget
 * publish to a stream whose client left must not crash the process (Deno exits on an unhandled
 * rejection).
 */
export function quietRejection(reason: unknown): Promise<never> {
  const rejected = Promise.reject(reason);
  rejected.catch(noop);
  return rejected;
}

/**
 * Queues a frame without waiting, under the broker's overflow policy (`"force"`: whatever the
 * bound, for a replay that must arrive whole). Returns how many queued frames `"drop-oldest"`
 * discarded to make room (0 mostly), or -1 when the stream is or became closed and the frame was
 * not queued. Internal: the broker shares one encoded frame between all its streams.
 */
export let offerFrame: (
  stream: EventStream,
  frame: Uint8Array,
  policy: OverflowPolicy | "force",
) => number;

/**
 * Calls `callback` once when the stream ends (one callback per stream: the broker's). Internal:
 * cheaper than a listener on `signal`, which would make every idle connection own an
 * `AbortController`.
 */
export let onStreamEnd: (stream: EventStream, callback: () => void) => void;

let tickStream: (stream: EventStream) => void;

/** Why a stream ended, or undefined while it is open. Internal. */
export let closeReason: (stream: EventStream) => StreamClosedError | undefined;

/**
 * One client's stream of events: a bounded queue in front of a `ReadableStream` of bytes, with
 * keepalive comments while idle and a single `AbortSignal` for every way the stream can end.
 *
 * Frames that pile up while the runtime is still writing the previous chunk are handed over
 * joined, as one chunk: one system call instead of many. A frame for an idle stream goes out at
 * once.
 *
 * @example Serve a stream with Deno.serve or Bun.serve
 * ```ts
 * import { EventStream } from "@flume/sse";
 *
 * function handler(_request: Request): Response {
 *   const stream = new EventStream();
 *   const timer = setInterval(() => stream.publish({ time: Date.now() }, { event: "time" }), 1000);
 *   stream.signal.addEventListener("abort", () => clearInterval(timer), { once: true });
 *   return stream.response();
 * }
 * ```
 *
 * @example Read what a stream sends
 * ```ts
 * import { EventStream } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const stream = new EventStream({ heartbeat: null });
 * await stream.publish("hi", { id: "1" });
 * stream.close();
 * const text = await new Response(stream.readable).text();
 * assert.equal(text, ":\n\nid: 1\ndata: hi\n\n");
 * ```
 */
export class EventStream {
  #state = OPEN;
  #queue: Frame[] = [];
  #queuedBytes = 0;
  #waiters: Waiter[] = [];
  /** The runtime asked for a chunk and got none yet: the next frame goes out at once. */
  #pulling = false;
  #flushScheduled = false;
  #lastFlush = performance.now();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  /** Made on first use of `signal`: a broker's idle connection never needs one. */
  #abort: AbortController | undefined;
  /** Why the stream ended; undefined while open. */
  #reason: StreamClosedError | undefined;
  /** The broker's removal of this stream from its channels (internal, see `onStreamEnd`). */
  #onEnd: (() => void) | undefined;
  #external: AbortSignal | undefined;
  readonly #bufferSize: number;
  readonly #bufferBytes: number;
  readonly #heartbeat: number | null;
  readonly #writeTimeout: number | null;

  /** The body: the bytes of every frame, in order. */
  readonly readable: ReadableStream<Uint8Array>;

  /**
   * Creates a stream; it is open at once and queues an opening frame.
   * @param options Heartbeat, buffer bounds, write timeout and a signal that closes it.
   * @throws {RangeError} An option is out of range.
   */
  constructor(options: EventStreamOptions = {}) {
    this.#heartbeat = checkOptionalMs("EventStream", "heartbeat", options.heartbeat, 5_000);
    this.#writeTimeout = checkOptionalMs(
      "EventStream",
      "writeTimeout",
      options.writeTimeout,
      30_000,
    );
    this.#bufferSize = checkPositiveInteger("EventStream", "bufferSize", options.bufferSize, 256);
    this.#bufferBytes = checkPositiveInteger(
      "EventStream",
      "bufferBytes",
      options.bufferBytes,
      1_048_576,
    );
    const opening = options.retry === undefined
      ? HEARTBEAT
      : encodeText(formatEvent({ retry: options.retry }));
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => {
        this.#pulling = true;
        if (this.#queue.length > 0 && !this.#flushScheduled) {
          this.#flushScheduled = true;
          queueMicrotask(this.#flushTask);
        }
      },
      cancel: (reason) => {
        this.#end(new StreamClosedError("cancelled", { cause: reason }), false);
      },
    }, { highWaterMark: 0 });
    this.#queue.push(opening);
    this.#queuedBytes = opening.byteLength;
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) {
        this.#end(new StreamClosedError("aborted", { cause: signal.reason }), false);
        return;
      }
      this.#external = signal;
      signal.addEventListener("abort", this.#onExternalAbort, { once: true });
    }
    this.#arm();
  }

  /**
   * Aborts when the stream ends, whatever the way: the client went away, `close()` was called,
   * the options' signal aborted, the client stopped reading, or its buffer overflowed. Its
   * `reason` is a {@linkcode StreamClosedError} saying which. Producers stop on it.
   */
  get signal(): AbortSignal {
    if (!this.#abort) {
      this.#abort = new AbortController();
      if (this.#reason) this.#abort.abort(this.#reason);
    }
    return this.#abort.signal;
  }

  /** Whether the stream has ended. */
  get closed(): boolean {
    return this.#state === CLOSED;
  }

  /**
   * Queues one event.
   * @param event The event to send.
   * @returns A promise that resolves when the frame is queued; it waits while the buffer is full.
   * It rejects with a `TypeError`/`RangeError` for an event that cannot be encoded (the stream
   * stays usable), with {@linkcode StreamClosedError} once the stream has ended, and with
   * {@linkcode StreamOverflowError} when `bufferSize` sends are already waiting.
   * @example Send a named event
   * ```ts
   * import { EventStream } from "@flume/sse";
   *
   * const stream = new EventStream();
   * await stream.send({ event: "status", data: "ready", retry: 2000 });
   * stream.close();
   * ```
   */
  send(event: ServerSentEvent): Promise<void> {
    if (this.#state === CLOSED) return quietRejection(this.#reason);
    let frame: string;
    try {
      frame = formatEvent(event);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#sendFrame(frame);
  }

  /**
   * Queues one event made of `data` and the given fields: a shorthand of `send()`.
   * @param data The payload: a string as is, a `Uint8Array` as UTF-8 text, anything else as JSON.
   * @param options The event type, id and retry.
   * @returns A promise that resolves when the frame is queued, as `send()` does.
   * @example Publish JSON with a name and an id
   * ```ts
   * import { EventStream } from "@flume/sse";
   *
   * const stream = new EventStream();
   * await stream.publish({ n: 1 }, { event: "tick", id: "1" });
   * stream.close();
   * ```
   */
  publish(data: unknown, options?: PublishOptions): Promise<void> {
    return this.send(options ? { ...options, data } : { data });
  }

  /**
   * Queues a comment, which clients ignore: for diagnostics or a custom keepalive. Best effort:
   * nothing happens on a closed stream or when the buffer is full.
   * @param text The comment; each line becomes one `: line` line.
   * @throws {TypeError} `text` is not a string or holds a lone surrogate.
   * @example Send a comment
   * ```ts
   * import { EventStream } from "@flume/sse";
   *
   * const stream = new EventStream();
   * stream.comment("hello");
   * stream.close();
   * ```
   */
  comment(text: string): void {
    const frame = formatEvent({ comment: text });
    if (this.#state === CLOSED || this.#full()) return;
    this.#push(encodeText(frame));
  }

  /**
   * Ends the stream: what is queued is still delivered, then the body ends. The signal aborts
   * at once (reason `"closed"`); sends that wait for buffer space reject. Calling it again does
   * nothing.
   * @example Close after a last event
   * ```ts
   * import { EventStream } from "@flume/sse";
   *
   * const stream = new EventStream();
   * await stream.publish("bye", { event: "end" });
   * stream.close();
   * ```
   */
  close(): void {
    this.#end(new StreamClosedError("closed"), true);
  }

  /**
   * Wraps the stream in a `Response` with the SSE headers (see {@linkcode sseResponse}).
   * @param init Status and headers; caller headers replace the defaults of the same name.
   * @returns The response.
   * @example Answer a request
   * ```ts
   * import { EventStream } from "@flume/sse";
   *
   * const stream = new EventStream();
   * const response = stream.response({ headers: { "Access-Control-Allow-Origin": "*" } });
   * stream.close();
   * await response.body?.cancel();
   * ```
   */
  response(init?: SseResponseInit): Response {
    return sseResponse(this, init);
  }

  #sendFrame(frame: Frame): Promise<void> {
    if (this.#waiters.length === 0 && !this.#full()) {
      this.#push(frame);
      return RESOLVED;
    }
    if (this.#waiters.length >= this.#bufferSize) {
      return Promise.reject(new StreamOverflowError(this.#bufferSize));
    }
    const queued = new Promise<void>((resolve, reject) => {
      this.#waiters.push({ frame, resolve, reject });
    });
    queued.catch(noop); // see quietRejection
    return queued;
  }

  #full(): boolean {
    return this.#queue.length > 0 &&
      (this.#queue.length >= this.#bufferSize || this.#queuedBytes >= this.#bufferBytes);
  }

  #push(frame: Frame): void {
    this.#queue.push(frame);
    this.#queuedBytes += sizeOf(frame);
    // A microtask, not a synchronous flush: the frames a producer queues in one go leave as
    // one chunk, and an idle stream still sends within the same turn of the event loop.
    if (this.#pulling && !this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flushTask);
    }
  }

  /** Queue length at the last hop of the flush task, and hops since it last grew. */
  #seen = 0;
  #quietHops = 0;
  /**
   * Waits while frames keep coming, a few microtask hops at a time: a producer that awaits each
   * publish (`await broker.publish()` takes three hops) then fills one chunk instead of one chunk
   * per frame, which is one write instead of many. Bounded by `bufferSize` frames and 64 KiB, and
   * a stream that goes quiet flushes within the same turn of the event loop.
   */
  #flushTask = (): void => {
    const length = this.#queue.length;
    if (length < this.#bufferSize && this.#queuedBytes < 65_536) {
      if (length !== this.#seen) {
        this.#seen = length;
        this.#quietHops = 0;
        queueMicrotask(this.#flushTask);
        return;
      }
      if (++this.#quietHops < QUIET_HOPS) {
        queueMicrotask(this.#flushTask);
        return;
      }
    }
    this.#seen = 0;
    this.#quietHops = 0;
    this.#flushScheduled = false;
    if (this.#pulling && this.#state === OPEN) this.#flush();
  };

  #flush(): void {
    const queue = this.#queue;
    if (queue.length === 0) return;
    const chunk = toBytes(queue);
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#pulling = false;
    this.#lastFlush = performance.now();
    this.#controller.enqueue(chunk);
    const waiters = this.#waiters;
    while (waiters.length > 0 && !this.#full()) {
      const waiter = waiters.shift()!;
      this.#queue.push(waiter.frame);
      this.#queuedBytes += sizeOf(waiter.frame);
      waiter.resolve();
    }
  }

  #offer(frame: Uint8Array, policy: OverflowPolicy | "force"): number {
    if (this.#state === CLOSED) return -1;
    let dropped = 0;
    if (policy !== "force" && this.#full()) {
      if (policy === "disconnect") {
        this.#end(new StreamClosedError("overflow"), false);
        return -1;
      }
      // "drop-oldest": make room for the new frame, oldest first.
      const queue = this.#queue;
      while (queue.length > 0 && this.#full()) {
        this.#queuedBytes -= sizeOf(queue.shift()!);
        dropped++;
      }
    }
    this.#push(frame);
    return dropped;
  }

  static {
    offerFrame = (stream, frame, policy) => stream.#offer(frame, policy);
    onStreamEnd = (stream, callback) => {
      stream.#onEnd = callback;
    };
    closeReason = (stream) => stream.#reason;
    tickStream = (stream) => stream.#tick();
  }

  #onExternalAbort = (): void => {
    this.#end(new StreamClosedError("aborted", { cause: this.#external?.reason }), false);
  };

  /** One timer per stream, re-armed only when it fires: no timer work per event. */
  #arm(): void {
    const since = performance.now() - this.#lastFlush;
    let delay = Infinity;
    const heartbeat = this.#heartbeat;
    const writeTimeout = this.#writeTimeout;
    if (heartbeat !== null) delay = since < heartbeat ? heartbeat - since : heartbeat;
    if (writeTimeout !== null) {
      delay = Math.min(delay, since < writeTimeout ? writeTimeout - since : writeTimeout);
    }
    // A shared function and the stream as its argument: no closure per stream.
    if (delay !== Infinity) this.#timer = setTimeout(tickStream, delay, this);
  }

  #tick(): void {
    this.#timer = undefined;
    const since = performance.now() - this.#lastFlush;
    if (this.#pulling) {
      // Idle: the runtime is waiting for us. Keep the connection (and every proxy) awake.
      if (this.#heartbeat !== null && since >= this.#heartbeat) this.#push(HEARTBEAT);
    } else if (this.#writeTimeout !== null && since >= this.#writeTimeout) {
      // The runtime has not come back for more since our last chunk: the client stopped reading.
      this.#end(new StreamClosedError("timeout"), false);
      return;
    }
    this.#arm();
  }

  #end(reason: StreamClosedError, graceful: boolean): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#external?.removeEventListener("abort", this.#onExternalAbort);
    this.#external = undefined;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(reason);
    try {
      if (graceful && this.#queue.length > 0) {
        // Hand over what is queued beyond the high-water mark: the runtime drains it, then ends.
        this.#controller.enqueue(toBytes(this.#queue));
      }
      if (reason.reason === "timeout") this.#controller.error(reason);
      else this.#controller.close();
    } catch {
      // Already closed or errored by the reader's cancel().
    }
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#reason = reason;
    this.#abort?.abort(reason);
    const onEnd = this.#onEnd;
    this.#onEnd = undefined;
    onEnd?.();
  }
}

/** One encode per run of text frames: far cheaper than one per frame (Deno's encode has a fixed cost). */
function toBytes(queue: Frame[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  let text = "";
  for (const frame of queue) {
    if (typeof frame === "string") text += frame;
    else {
      if (text !== "") {
        const bytes = encodeText(text);
        parts.push(bytes);
        total += bytes.byteLength;
        text = "";
      }
      parts.push(frame);
      total += frame.byteLength;
    }
  }
  if (text !== "") {
    const bytes = encodeText(text);
    parts.push(bytes);
    total += bytes.byteLength;
  }
  return parts.length === 1 ? parts[0] : concatBytes(parts, total);
}
