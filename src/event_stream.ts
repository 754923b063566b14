import type { ServerSentEvent } from "./server_sent_event.ts";
import { encodeEvent, HEARTBEAT_FRAME, retryFrame } from "./_wire.ts";
import { streamClosed, type StreamClosedError, StreamOverflowError } from "./errors.ts";
import { concatBytes, encodeText } from "./_bytes.ts";
import { checkOptionalMs, checkPositiveInteger } from "./_options.ts";
import { clock } from "./_clock.ts";
import { type Deadlines, deadlines, deadlineSlot, onDeadline } from "./_deadlines.ts";
import {
  flushDue,
  type FlushScheduler,
  READY,
  sharedScheduler,
  useScheduler,
} from "./_flush_scheduler.ts";
import { quietRejection } from "./_promise.ts";
import { type SseResponseInit, streamResponse } from "./_response.ts";
import {
  closeReason,
  offerFrame,
  onRoom,
  onStreamEnd,
  type OverflowPolicy,
} from "./_stream_control.ts";

export type { OverflowPolicy } from "./_stream_control.ts";

/** Options of {@linkcode EventStream}. */
export interface EventStreamOptions {
  /**
   * Milliseconds of idleness after which a keepalive comment (`:`) is sent; `null` turns it off.
   * A busy stream sends none. The default keeps a quiet stream alive under `Bun.serve`, which
   * closes a connection that is idle for 10 s, and under proxies with longer idle timeouts.
   * @default {5_000}
   */
  heartbeat?: number | null | undefined;
  /** Aborting this signal (for example `request.signal`) closes the stream at once. */
  signal?: AbortSignal | undefined;
  /**
   * Frames queued before `send()`/`publish()` waits for the client to read.
   * @default {256}
   */
  bufferSize?: number | undefined;
  /**
   * Bytes queued before `send()`/`publish()` waits, whatever the frame count: a 1 MB event is
   * not "one slot". A frame is always accepted into an empty buffer, however large. Frames are
   * kept as text until they leave (one encode per chunk is far cheaper than one per frame), so
   * non-ASCII text counts one per UTF-16 code unit here.
   * @default {1_048_576}
   */
  bufferBytes?: number | undefined;
  /**
   * Milliseconds a chunk may wait for the runtime to take it (the client is reading) before the
   * stream ends with reason `"timeout"`. This is what finds clients that stopped reading; the
   * heartbeat counts as data too, so a quiet stream whose client does not take it ends as well.
   * A client whose kernel still takes bytes into its buffers cannot be told apart from one that
   * reads until those are full (see docs/operations.md); `null` turns it off.
   * @default {30_000}
   */
  writeTimeout?: number | null | undefined;
  /**
   * A reconnection delay in ms to send first, as a `retry:` field. Without it the stream opens
   * with an empty comment; either way the response reaches the client at once (so
   * `EventSource.onopen` fires even on a quiet stream).
   */
  retry?: number | undefined;
  /**
   * The most milliseconds a chunk is held back so that the events that follow join it: one
   * write instead of many for a stream written to at a high rate. Only a stream that handed out
   * events less than `writeDelay` ms ago waits, and only until then: a quiet stream writes at
   * once, a busy one at most once per `writeDelay` ms, and no event waits longer than that. A
   * chunk that reaches 64 KiB or `bufferSize` frames leaves at once. `0` turns batching off:
   * every chunk leaves within the turn of the event loop it was queued in.
   * @default {5}
   */
  writeDelay?: number | undefined;
}

/**
 * The default `writeDelay` in ms: 5, and 0 under Cloudflare's workerd. There a timer runs in the
 * request that set it, and a flush it runs for a stream of another request (a broker's fan-out) is
 * refused as cross-request I/O; a microtask of the publishing request is allowed.
 */
export const DEFAULT_WRITE_DELAY: number =
  (globalThis as { navigator?: { userAgent?: unknown } }).navigator?.userAgent ===
      "Cloudflare-Workers"
    ? 0
    : 5;
/** The largest `writeDelay` in ms: a longer hold is a latency bug, not batching. */
export const MAX_WRITE_DELAY = 1_000;

/** Options of {@linkcode EventStream.publish}. */
export interface PublishOptions {
  /** The event type. */
  event?: string | undefined;
  /** The event id. */
  id?: string | number | undefined;
  /** A new reconnection delay in ms. */
  retry?: number | undefined;
}

/**
 * A queued frame: text (encoded once per chunk, with its neighbours), bytes the broker shares
 * between all its clients, or bytes pinned in the queue (see `OfferPolicy` in `_stream_control.ts`).
 */
type Frame = string | Uint8Array | Pinned;

/** Bytes queued whatever the bounds and never discarded; they count against the bounds. */
class Pinned {
  constructor(readonly bytes: Uint8Array) {}
}

/** The `#chunks` of a stream with none: shared, never written to. */
const NO_CHUNKS: Uint8Array[] = [];
const sizeOf = (f: string | Uint8Array): number => typeof f === "string" ? f.length : f.byteLength;
type Waiter = { frame: string; resolve(): void; reject(error: unknown): void };

/**
 * Ms since a stream's last chunk of events, and since its scheduler measured a busy event loop,
 * within which it may still count as busy.
 */
const BUSY_SPAN = 1_000;
/**
 * Ms during which a stream no longer holds for a busy event loop after `USELESS_HOLDS` such holds
 * in a row caught fewer than 3 events: its producer is paced by something else (a timer, a socket),
 * so holding only added latency. (One is not enough: a producer at full speed on a loop still
 * busy with the writes of the last flush can miss the first window or two before its events
 * come close together.)
 */
const LAG_MUTE = 10_000;
/** See `LAG_MUTE`. */
const USELESS_HOLDS = 3;
/** Events a hold for a busy event loop must catch to count as useful (see `LAG_MUTE`). */
const USEFUL_HOLD = 3;
/** `#due` of a stream that asked for no flush (`READY` and due times are the others). */
const UNSCHEDULED = -2;
/** Above this size a frame leaves as a chunk of its own, never copied into a joined chunk. */
const SHARED_FRAME_BYTES = 16_384;
/**
 * The size of the chunks a large frame is handed to the runtime in: views of its bytes (the same
 * bytes for every client that shares it, never copied), or for text longer than `SHORT_TEXT`,
 * pieces of its own; one chunk per pull. A client that stops reading holds at most one chunk
 * inside the runtime, and the rest is ours to let go when the stream ends.
 */
const CHUNK_BYTES = 65_536;
/** The default `bufferSize`; the broker bounds a resuming client's held events by it too. */
export const DEFAULT_BUFFER_SIZE = 256;
/** The default `bufferBytes`. */
export const DEFAULT_BUFFER_BYTES = 1_048_576;
const OPEN = 0;
const CLOSED = 1;
const RESOLVED: Promise<void> = Promise.resolve();
const HEARTBEAT = encodeText(HEARTBEAT_FRAME);

function noop(): void {}

/** What a stream's body does when the runtime starts it, pulls, or cancels (set in the class). */
let sourceStarted: (stream: EventStream, controller: ReadableStreamDefaultController) => void;
let sourcePulled: (stream: EventStream) => void;
let sourceCancelled: (stream: EventStream, reason: unknown) => void;

/**
 * The body's underlying source: one small object per stream whose methods live on the prototype,
 * rather than an object of three closures (about 0.2 KiB less per idle connection).
 */
class Source implements UnderlyingDefaultSource<Uint8Array> {
  readonly #stream: EventStream;
  constructor(stream: EventStream) {
    this.#stream = stream;
  }
  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    sourceStarted(this.#stream, controller);
  }
  pull(): void {
    sourcePulled(this.#stream);
  }
  cancel(reason: unknown): void {
    sourceCancelled(this.#stream, reason);
  }
}

/**
 * One client's stream of events: a bounded queue in front of a `ReadableStream` of bytes, with
 * keepalive comments while idle and a single `AbortSignal` for every way the stream can end.
 *
 * Frames that pile up while the runtime is still writing the previous chunk are handed over
 * joined, as one chunk: one system call instead of many. A frame for a quiet stream goes out at
 * once; on a busy one, the frames of the next `writeDelay` ms join the next chunk.
 *
 * @example Serve a stream with Deno.serve or Bun.serve
 * ```ts
 * import { EventStream } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * function handler(_request: Request): Response {
 *   const stream = new EventStream();
 *   const timer = setInterval(() => stream.publish({ time: Date.now() }, { event: "time" }), 10);
 *   // The client went away (or the stream ended otherwise): stop producing.
 *   stream.signal.addEventListener("abort", () => clearInterval(timer), { once: true });
 *   return stream.response();
 * }
 * // Deno.serve(handler) or Bun.serve({ fetch: handler }); here, a client that reads one event:
 * const reader = handler(new Request("http://localhost/")).body!
 *   .pipeThrough(new TextDecoderStream()).getReader();
 * assert.equal((await reader.read()).value, ":\n\n");
 * assert.match((await reader.read()).value!, /^event: time\ndata: {"time":\d+}\n\n/);
 * await reader.cancel(); // the client leaves: the signal aborts and the interval is cleared
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
  /** Frames in the queue (pinned ones included), and their size, which the bounds limit. */
  #counted = 0;
  #queuedBytes = 0;
  /** Producers waiting for room (`"wait"`); made on first use, as most streams never have one. */
  #waiters: Waiter[] | undefined;
  /** The runtime asked for a chunk and got none yet: the next frame goes out at once. */
  #pulling = false;
  /** Chunks of the last flush that the runtime has not asked for yet: one leaves per pull. */
  #chunks: Uint8Array[] = NO_CHUNKS;
  #lastFlush = clock.now();
  /** When the last chunk with events (not only a heartbeat) was handed out: "busy" is near it. */
  #lastBatch = -Infinity;
  /** Until when holds for a busy event loop are off (see `LAG_MUTE`); `-Infinity`: on. */
  #lagMuteUntil = -Infinity;
  /** Holds for a busy event loop in a row that caught fewer than 3 events (see `LAG_MUTE`). */
  #uselessHolds = 0;
  /** Whether the flush asked for is a hold for a busy event loop, not for a recent chunk. */
  #lagHold = false;
  /** The flush asked of the scheduler: `UNSCHEDULED`, `READY`, or the due time of a held one. */
  #due = UNSCHEDULED;
  #scheduler: FlushScheduler = sharedScheduler;
  /** The broker's replay feeder queued frames at the last flush: the next pull sends them. */
  #owed = false;
  /** The heap holding this stream's next heartbeat or write-timeout check, if any. */
  #deadlines: Deadlines | undefined;
  /** Internal, for the deadline heap (see `_deadlines.ts`): this stream's index in it. */
  [deadlineSlot]: number = -1;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  /** Made on first use of `signal`: a broker's idle connection never needs one. */
  #abort: AbortController | undefined;
  /** Why the stream ended; undefined while open. */
  #reason: StreamClosedError | undefined;
  /** The broker's removal of this stream from its channels (see `_stream_control.ts`). */
  #onEnd: ((arg: unknown) => void) | undefined;
  #onEndArg: unknown;
  /** The broker's replay feeder, waiting for room (see `_stream_control.ts`). */
  #roomCallback: (() => void) | undefined;
  #roomEmpty = false;
  #external: AbortSignal | undefined;
  readonly #bufferSize: number;
  readonly #bufferBytes: number;
  readonly #heartbeat: number | null;
  readonly #writeTimeout: number | null;
  readonly #writeDelay: number;

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
    this.#bufferSize = checkPositiveInteger(
      "EventStream",
      "bufferSize",
      options.bufferSize,
      DEFAULT_BUFFER_SIZE,
    );
    this.#bufferBytes = checkPositiveInteger(
      "EventStream",
      "bufferBytes",
      options.bufferBytes,
      DEFAULT_BUFFER_BYTES,
    );
    this.#writeDelay = checkWriteDelay(options.writeDelay);
    const opening = options.retry === undefined ? HEARTBEAT : encodeText(retryFrame(options.retry));
    this.readable = new ReadableStream<Uint8Array>(new Source(this), { highWaterMark: 0 });
    this.#queue.push(opening);
    this.#counted = 1;
    this.#queuedBytes = opening.byteLength;
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) {
        this.#end(streamClosed("aborted", signal.reason), false);
        return;
      }
      this.#external = signal;
      this.#onExternalAbort = () => this.#end(streamClosed("aborted", signal.reason), false);
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
   * import assert from "node:assert/strict";
   *
   * const stream = new EventStream({ heartbeat: null });
   * await stream.send({ event: "status", data: "ready", retry: 2000 });
   * stream.close();
   * const text = await new Response(stream.readable).text();
   * assert.equal(text, ":\n\nevent: status\nretry: 2000\ndata: ready\n\n");
   * ```
   */
  send(event: ServerSentEvent): Promise<void> {
    if (this.#state === CLOSED) return quietRejection(this.#reason);
    let frame: string;
    try {
      frame = encodeEvent(event);
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
   * import assert from "node:assert/strict";
   *
   * const stream = new EventStream({ heartbeat: null });
   * await stream.publish({ n: 1 }, { event: "tick", id: 1 });
   * stream.close();
   * const text = await new Response(stream.readable).text();
   * assert.equal(text, ':\n\nevent: tick\nid: 1\ndata: {"n":1}\n\n');
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
   * import assert from "node:assert/strict";
   *
   * const stream = new EventStream({ heartbeat: null });
   * stream.comment("hello");
   * stream.close();
   * assert.equal(await new Response(stream.readable).text(), ":\n\n: hello\n\n");
   * ```
   */
  comment(text: string): void {
    const frame = encodeEvent({ comment: text });
    if (this.#state === CLOSED || this.#full()) return;
    this.#push(frame);
  }

  /**
   * Ends the stream: what is queued is still delivered, then the body ends. The signal aborts
   * at once (reason `"closed"`); sends that wait for buffer space reject. Calling it again does
   * nothing.
   * @example Close after a last event
   * ```ts
   * import { EventStream } from "@flume/sse";
   * import assert from "node:assert/strict";
   *
   * const stream = new EventStream({ heartbeat: null });
   * await stream.publish("bye", { event: "end" });
   * stream.close();
   * assert.equal(stream.closed, true);
   * assert.equal(await new Response(stream.readable).text(), ":\n\nevent: end\ndata: bye\n\n");
   * ```
   */
  close(): void {
    this.#end(streamClosed("closed"), true);
  }

  /**
   * Wraps the stream in a `Response` with the SSE headers (see `sseResponse`).
   * @param init Status and headers; caller headers replace the defaults of the same name, and a
   * `signal` closes the stream when it aborts. The stream options of `sseResponse` are ignored:
   * this stream has its own.
   * @returns The response.
   * @example Answer a request
   * ```ts
   * import { EventStream } from "@flume/sse";
   * import assert from "node:assert/strict";
   *
   * const stream = new EventStream();
   * const response = stream.response({ headers: { "Access-Control-Allow-Origin": "*" } });
   * assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
   * assert.equal(response.headers.get("access-control-allow-origin"), "*");
   * stream.close();
   * await response.body?.cancel();
   * ```
   */
  response(init?: SseResponseInit): Response {
    return streamResponse(this, init);
  }

  /** Internal, for the broker (see `_stream_control.ts`); `EventStream` is its `ControlledStream`. */
  [offerFrame](frame: Uint8Array, policy: OverflowPolicy | "pinned"): number {
    if (this.#state === CLOSED) return -1;
    if (policy === "pinned") {
      this.#queue.push(new Pinned(frame));
      this.#counted++;
      this.#queuedBytes += frame.byteLength;
      if (this.#pulling) this.#schedule(true);
      return 0;
    }
    let dropped = 0;
    if (this.#full()) {
      if (policy === "disconnect") {
        this.#end(streamClosed("overflow"), false);
        return -1;
      }
      dropped = this.#dropOldest();
    }
    this.#push(frame);
    return dropped;
  }

  /** Internal, for the broker (see `_stream_control.ts`): the replay's "feed me" hook. */
  [onRoom](callback: () => void, empty = false): boolean {
    if (this.#state === CLOSED) return false;
    if (empty ? this.#counted === 0 : !this.#full()) return true;
    this.#roomCallback = callback;
    this.#roomEmpty = empty;
    return false;
  }

  /** Runs the broker's room callback once a flush has made room (see `_stream_control.ts`). */
  #roomMade(): void {
    const callback = this.#roomCallback;
    if (callback === undefined || (this.#roomEmpty ? this.#counted > 0 : this.#full())) return;
    this.#roomCallback = undefined;
    this.#owed = true;
    callback();
  }

  /** Internal, for the broker (see `_stream_control.ts`). */
  [onStreamEnd]<T>(callback: (arg: T) => void, arg: T): void {
    this.#onEnd = callback as (arg: unknown) => void;
    this.#onEndArg = arg;
  }

  /** Internal, for the broker (see `_stream_control.ts`). */
  get [closeReason](): StreamClosedError | undefined {
    return this.#reason;
  }

  #sendFrame(frame: string): Promise<void> {
    if (this.#waiters === undefined && !this.#full()) {
      this.#push(frame);
      return RESOLVED;
    }
    if ((this.#waiters?.length ?? 0) >= this.#bufferSize) {
      return Promise.reject(
        new StreamOverflowError(
          `Cannot send event: the buffer of ${this.#bufferSize} frames is full and as many sends are waiting; await each send`,
          { bufferSize: this.#bufferSize },
        ),
      );
    }
    const queued = new Promise<void>((resolve, reject) => {
      (this.#waiters ??= []).push({ frame, resolve, reject });
    });
    queued.catch(noop); // see quietRejection
    return queued;
  }

  /** A frame is always accepted while nothing that counts is queued, however large. */
  #full(): boolean {
    return this.#counted > 0 &&
      (this.#counted >= this.#bufferSize || this.#queuedBytes >= this.#bufferBytes);
  }

  #push(frame: string | Uint8Array): void {
    this.#queue.push(frame);
    this.#counted++;
    this.#queuedBytes += sizeOf(frame);
    if (this.#pulling) this.#schedule(true);
  }

  /** "drop-oldest": discards the oldest frames until there is room; pinned ones stay. */
  #dropOldest(): number {
    const queue = this.#queue;
    let dropped = 0;
    let at = 0;
    while (this.#full() && at < queue.length) {
      const frame = queue[at]!;
      if (frame instanceof Pinned) {
        at++;
        continue;
      }
      queue.splice(at, 1);
      this.#counted--;
      this.#queuedBytes -= sizeOf(frame);
      dropped++;
    }
    return dropped;
  }

  /**
   * Internal, for the broker: its `FlushScheduler` instead of the shared one (see
   * `_flush_scheduler.ts`). Typed `object` here only because the scheduler's type is internal
   * and this signature is visible in the public docs.
   */
  [useScheduler](scheduler: object): void {
    this.#scheduler = scheduler as FlushScheduler;
  }

  /**
   * Asks the scheduler for a flush: the runtime is waiting and frames are queued (`pushed`:
   * false when the replay feeder queued them as the client took the last chunk, which is then not
   * paced by the window). Never a synchronous flush: the frames a producer queues in one go leave
   * as one chunk.
   *
   * The frames of a quiet stream leave within this turn of the event loop. Those of a busy one
   * wait, a Nagle-like window in which the events of the next turns join its chunk (one write instead of one per
   * event): one that handed out events less than `writeDelay` ms ago waits until then. One that
   * did within `BUSY_SPAN`, while the writes of its scheduler's last flushes kept the event loop
   * busy for `writeDelay` or more (`lag`), waits `writeDelay` from now: that is a producer at full
   * speed, which publishes as soon as those writes are done, so that its events are as far apart
   * as the writes take; without this rule each of them would look quiet and get writes of its
   * own, which is what keeps it slow. Once held, its events come close together and the first
   * rule keeps them batched. Only an event that comes as the event loop frees up counts (a
   * producer paced by a timer comes later), and a stream whose holds for the loop keep catching
   * fewer than 3 events stops holding for the loop for a while (`LAG_MUTE`). A chunk as large as one hand-out (64 KiB) or the buffer leaves at
   * once: waiting would only fill the buffer.
   */
  #schedule(pushed: boolean): void {
    const due = this.#due;
    if (due === READY) return;
    const urgent = this.#writeDelay === 0 || this.#counted >= this.#bufferSize ||
      this.#queuedBytes >= CHUNK_BYTES;
    if (due !== UNSCHEDULED) {
      if (!urgent) return; // held already: these frames join that chunk
      this.#scheduler.cancel(this, due);
    } else if (!urgent && pushed) {
      const now = clock.now();
      const lastBatch = this.#lastBatch;
      let at = lastBatch + this.#writeDelay;
      if (at <= now && now - lastBatch < BUSY_SPAN) {
        const scheduler = this.#scheduler;
        if (
          scheduler.lag >= this.#writeDelay && now - scheduler.lagAt < this.#writeDelay &&
          now >= this.#lagMuteUntil
        ) {
          // On the ms: the streams one publish reaches share a bucket and a timer.
          at = Math.floor(now) + this.#writeDelay;
          this.#lagHold = true;
        }
      }
      if (at > now) {
        this.#due = at;
        this.#scheduler.hold(this, at);
        return;
      }
    }
    this.#due = READY;
    this.#scheduler.ready(this);
  }

  /** Internal, for the scheduler (see `_flush_scheduler.ts`): the flush asked for is due. */
  [flushDue](now: number, due: number): void {
    if (this.#due !== due) return; // a stale call: the stream asked again, or ended
    this.#due = UNSCHEDULED;
    if (!this.#pulling || this.#state !== OPEN) return;
    this.#owed = false;
    const queue = this.#queue;
    if (this.#lagHold) {
      this.#lagHold = false;
      // Holds for a busy event loop in a row that caught fewer than 3 events: see `LAG_MUTE`.
      if (due !== READY) {
        if (queue.length >= USEFUL_HOLD) this.#uselessHolds = 0;
        else if (++this.#uselessHolds >= USELESS_HOLDS) {
          this.#uselessHolds = 0;
          this.#lagMuteUntil = now + LAG_MUTE;
        }
      }
    }
    // A heartbeat (or the opening comment) alone does not make a stream busy.
    if (queue.length > 1 || (queue.length === 1 && queue[0] !== HEARTBEAT)) {
      if (due === READY && now - this.#lastBatch < BUSY_SPAN && this.#writeDelay > 0) {
        this.#scheduler.wantLag();
      }
      this.#lastBatch = now;
    }
    this.#flush();
  }

  #flush(): void {
    const queue = this.#queue;
    if (queue.length === 0) return;
    this.#queue = [];
    this.#counted = 0;
    this.#queuedBytes = 0;
    this.#chunks = toChunks(queue);
    this.#handOut();
    const waiters = this.#waiters;
    while (waiters !== undefined && waiters.length > 0 && !this.#full()) {
      const waiter = waiters.shift()!;
      this.#queue.push(waiter.frame);
      this.#counted++;
      this.#queuedBytes += sizeOf(waiter.frame);
      waiter.resolve();
    }
    if (waiters?.length === 0) this.#waiters = undefined;
    this.#roomMade();
  }

  /**
   * Gives the runtime the next chunk. The write timeout counts from here: a runtime that does not
   * come back for more within it is stuck on a client that stopped reading.
   */
  #handOut(): void {
    const chunk = this.#chunks.shift()!;
    this.#pulling = false;
    this.#lastFlush = clock.now();
    this.#controller.enqueue(chunk);
  }

  /** The listener on the options' signal; made only when there is one. */
  #onExternalAbort: (() => void) | undefined;

  static {
    sourceStarted = (stream, controller) => {
      stream.#controller = controller;
    };
    sourcePulled = (stream) => {
      if (stream.#chunks.length > 0) return stream.#handOut();
      stream.#pulling = true;
      if (stream.#queue.length > 0) stream.#schedule(!stream.#owed);
    };
    sourceCancelled = (stream, reason) => {
      stream.#end(streamClosed("cancelled", reason), false);
    };
  }

  /** Internal, for the deadline heap (see `_deadlines.ts`): this stream's check is due. */
  [onDeadline](): void {
    this.#tick();
  }

  /**
   * Sets the next heartbeat or write-timeout check, in the one heap of deadlines rather than a
   * timer of its own; set again only when it comes, so no timer work per event.
   */
  #arm(): void {
    const since = clock.now() - this.#lastFlush;
    let delay = Infinity;
    const heartbeat = this.#heartbeat;
    const writeTimeout = this.#writeTimeout;
    if (heartbeat !== null) delay = since < heartbeat ? heartbeat - since : heartbeat;
    if (writeTimeout !== null) {
      delay = Math.min(delay, since < writeTimeout ? writeTimeout - since : writeTimeout);
    }
    if (delay === Infinity) return;
    // The heap of the clock in use now (a test may have swapped clocks since the last check).
    const heap = deadlines();
    if (heap !== this.#deadlines) this.#deadlines?.delete(this);
    this.#deadlines = heap;
    heap.set(this, clock.now() + delay);
  }

  /**
   * The heartbeat is data like any other: it is handed out as a chunk, and a runtime that has not
   * come back for more `writeTimeout` ms later ends the stream. What the runtime cannot show us
   * is a client whose kernel still takes bytes into its buffers while its app reads nothing: on
   * a quiet stream that only fills them at heartbeat pace (see docs/operations.md).
   */
  #tick(): void {
    const since = clock.now() - this.#lastFlush;
    if (this.#pulling) {
      // Idle: the runtime is waiting for us. Keep the connection (and every proxy) awake.
      if (this.#heartbeat !== null && since >= this.#heartbeat) this.#push(HEARTBEAT);
    } else if (this.#writeTimeout !== null && since >= this.#writeTimeout) {
      // The runtime has not come back for more since our last chunk: the client stopped reading.
      this.#end(streamClosed("timeout"), false);
      return;
    }
    this.#arm();
  }

  #end(reason: StreamClosedError, graceful: boolean): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    if (this.#due !== UNSCHEDULED) {
      if (this.#due !== READY) this.#scheduler.cancel(this, this.#due);
      this.#due = UNSCHEDULED;
    }
    this.#deadlines?.delete(this);
    this.#deadlines = undefined;
    if (this.#onExternalAbort) this.#external?.removeEventListener("abort", this.#onExternalAbort);
    this.#external = undefined;
    this.#onExternalAbort = undefined;
    const waiters = this.#waiters;
    this.#waiters = undefined;
    for (const waiter of waiters ?? []) waiter.reject(reason);
    const chunks = this.#chunks;
    this.#chunks = NO_CHUNKS;
    try {
      if (graceful) {
        // What is queued still leaves: handed over beyond the high-water mark (the runtime
        // drains it, then the body ends), as no timer may outlive the stream. A client that
        // stopped reading holds it (at most the buffer's bounds and pinned frames) until its
        // socket goes; see docs/operations.md.
        for (const chunk of chunks) this.#controller.enqueue(chunk);
        if (this.#queue.length > 0) {
          for (const chunk of toChunks(this.#queue)) this.#controller.enqueue(chunk);
        }
      }
      // Not graceful: what was not handed out yet is dropped here, never given to the runtime.
      if (reason.reason === "timeout") this.#controller.error(reason);
      else this.#controller.close();
    } catch {
      // Already closed or errored by the reader's cancel().
    }
    this.#queue = [];
    this.#counted = 0;
    this.#queuedBytes = 0;
    this.#reason = reason;
    this.#abort?.abort(reason);
    this.#roomCallback = undefined;
    const onEnd = this.#onEnd;
    const arg = this.#onEndArg;
    this.#onEnd = undefined;
    this.#onEndArg = undefined;
    onEnd?.(arg);
  }
}

/** Validates `writeDelay`: ms from 0 (off) to {@linkcode MAX_WRITE_DELAY}. */
export function checkWriteDelay(value: number | undefined, api = "EventStream"): number {
  if (value === undefined) return DEFAULT_WRITE_DELAY;
  if (typeof value !== "number" || !(value >= 0 && value <= MAX_WRITE_DELAY)) {
    throw new RangeError(
      `Cannot create ${api}: \`writeDelay\` must be a number of ms from 0 to ${MAX_WRITE_DELAY}, got \`${
        String(value)
      }\``,
    );
  }
  return value;
}

/**
 * The chunks of a flush, none above {@linkcode CHUNK_BYTES}. Runs of text are encoded once (far
 * cheaper than once per frame: Deno's encode has a fixed cost) and small frames are joined, so one
 * write carries them all; a large frame leaves as views of its bytes, the same bytes for every
 * client that shares it, never copied; a long run of text is encoded in pieces of its own.
 */
function toChunks(queue: readonly Frame[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let parts: Uint8Array[] = [];
  let total = 0;
  let text = "";
  const endChunk = (): void => {
    if (parts.length === 1) chunks.push(parts[0]!);
    else if (parts.length > 1) chunks.push(concatBytes(parts, total));
    parts = [];
    total = 0;
  };
  const join = (bytes: Uint8Array): void => {
    if (total + bytes.byteLength > CHUNK_BYTES) endChunk();
    parts.push(bytes);
    total += bytes.byteLength;
  };
  const endText = (): void => {
    if (text === "") return;
    // A flush's usual run of small frames (a flush is due at 64 KiB) is encoded once,
    // as one chunk: one write, as before chunks were bounded. Only longer text is cut.
    if (text.length <= SHORT_TEXT) join(encodeText(text));
    else {
      endChunk();
      encodePieces(text, chunks);
    }
    text = "";
  };
  for (const frame of queue) {
    if (typeof frame === "string") {
      text += frame;
      if (text.length >= SHORT_TEXT) endText();
      continue;
    }
    endText();
    const bytes = frame instanceof Pinned ? frame.bytes : frame;
    if (bytes.byteLength < SHARED_FRAME_BYTES) {
      join(bytes);
      continue;
    }
    endChunk();
    const length = bytes.byteLength;
    for (let at = 0; at < length; at += CHUNK_BYTES) {
      chunks.push(bytes.subarray(at, Math.min(at + CHUNK_BYTES, length)));
    }
  }
  endText();
  endChunk();
  return chunks;
}

/** Text up to this many code units is encoded whole (at most 384 KiB, mostly about 64 KiB). */
const SHORT_TEXT = 2 * CHUNK_BYTES;
const pieceEncoder = new TextEncoder();

/**
 * Encodes a long text into chunks of at most {@linkcode CHUNK_BYTES}, each its own buffer, so the
 * one the runtime holds for a client that stopped reading pins no more than that.
 */
function encodePieces(text: string, chunks: Uint8Array[]): void {
  const length = text.length;
  let at = 0;
  while (at < length) {
    let end = Math.min(at + CHUNK_BYTES, length);
    // Never cut a surrogate pair: its lone half would be encoded as U+FFFD.
    const last = text.charCodeAt(end - 1);
    if (end < length && last >= 0xd800 && last <= 0xdbff) end--;
    const buffer = new Uint8Array(CHUNK_BYTES);
    const { read, written } = pieceEncoder.encodeInto(text.slice(at, end), buffer);
    chunks.push(written === CHUNK_BYTES ? buffer : buffer.subarray(0, written));
    at += read;
  }
}
