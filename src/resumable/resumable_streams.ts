/**
 * `ResumableStreams`: generations (a producer's events under an id) that outlive their
 * connections. See docs/resumable-streams.md for the design.
 * @module
 */

import { checkOptionalMs, checkPositiveInteger } from "../_options.ts";
import { encodeText } from "../_bytes.ts";
import { STREAM_RESET_EVENT } from "../_replay.ts";
import { encodeBody, encodeEvent, MAX_ID_LENGTH } from "../_wire.ts";
import { requestSignal } from "../_runtime.ts";
import { offerFrame, onRoom, onStreamEnd } from "../_stream_control.ts";
import { EventStream } from "../event_stream.ts";
import { adapterFor } from "../redis/_adapters.ts";
import type { RedisBridgeAdapter } from "../redis/redis_bridge_adapter.ts";
import { eventId, type Log, positionOf, type ResumableEndReason } from "./_log.ts";
import { type ParsedEvent, Parser } from "../_parser.ts";
import { MemoryStore } from "./_memory_store.ts";
import { RedisStore } from "./_redis_store.ts";
import type { ResumableStatus, StartOutcome, Store } from "./_store.ts";

export type { ResumableEndReason } from "./_log.ts";
export type { ResumableStatus } from "./_store.ts";

/**
 * The name of the end marker event: the last event of every generation, whose data says why it
 * ended. A producer may not send an event of that name.
 *
 * @example Tell "finished" from "cut off" when reading a generation in code
 * ```ts
 * import { END_EVENT, ResumableStreams } from "@flume/sse/resumable";
 * import assert from "node:assert/strict";
 *
 * const resumable = new ResumableStreams({ heartbeat: null });
 * await resumable.start("answer-1", (stream) => stream.publish("hello"));
 * await resumable.finished("answer-1");
 * const events = [];
 * for await (const event of (await resumable.events("answer-1"))!) events.push(event);
 * assert.equal(events.at(-1)?.event, END_EVENT);
 * assert.deepEqual(JSON.parse(events.at(-1)!.data), { reason: "complete" });
 * await resumable.close();
 * ```
 */
export const END_EVENT = "end";

/**
 * The longest id of a generation, in UTF-16 code units; a longer one is refused with a
 * `RangeError`.
 *
 * @example An id one character too long
 * ```ts
 * import { MAX_STREAM_ID_LENGTH, ResumableStreams } from "@flume/sse/resumable";
 * import assert from "node:assert/strict";
 *
 * const resumable = new ResumableStreams({ heartbeat: null });
 * const id = "x".repeat(MAX_STREAM_ID_LENGTH + 1);
 * await assert.rejects(async () => await resumable.start(id, () => {}), RangeError);
 * await resumable.close();
 * ```
 */
export const MAX_STREAM_ID_LENGTH = 256;

/** What `start()` did: ran the producer, or why not. */
export type ResumableStartResult =
  /** This call runs the producer. */
  | "started"
  /** A producer already runs under the id (here or on another worker): none was started. */
  | "running"
  /** The generation under the id has ended and is still kept: none was started. */
  | "ended"
  /** The memory store holds `maxStreams` generations already: none was started. */
  | "full";

/** The Redis connections of a {@linkcode ResumableStreams} shared by workers. */
export type ResumableRedisOptions =
  /** Two connected clients of npm `redis`, `ioredis` or Bun's `RedisClient`, as `redisBridge` takes. */
  | { client: object; subscriber: object; adapter?: undefined }
  /** Any other client, through the adapter `redisBridge` uses. */
  | { adapter: RedisBridgeAdapter; client?: undefined; subscriber?: undefined };

/** Options of {@linkcode ResumableStreams}. */
export interface ResumableStreamsOptions {
  /**
   * Keep the generations in Redis, so that every worker sharing it can start, serve and cancel
   * them; in this process's memory when absent.
   */
  redis?: ResumableRedisOptions | undefined;
  /**
   * Prefix of every Redis key and channel.
   * @default {"flume:resumable:"}
   */
  prefix?: string | undefined;
  /**
   * Milliseconds a generation is kept after its end marker; then readers get 404.
   * @default {600_000}
   */
  retention?: number | undefined;
  /**
   * Events a producer may send; the next one ends the generation with the reason `"limit"`.
   * @default {10_000}
   */
  maxEvents?: number | undefined;
  /**
   * Bytes of event text a generation may hold; past it the generation ends with `"limit"`.
   * @default {4_194_304}
   */
  maxBytes?: number | undefined;
  /**
   * Generations the memory store holds at once (running or kept); `start()` answers `"full"`
   * beyond it. Redis is bounded by its own `maxmemory`.
   * @default {1_000}
   */
  maxStreams?: number | undefined;
  /**
   * Milliseconds of the lease a worker holds on a generation it runs (Redis only), renewed every
   * third of it: a generation whose worker died ends with the reason `"lost"` at most this long
   * after (plus `poll`).
   * @default {10_000}
   */
  lease?: number | undefined;
  /**
   * Milliseconds after which a worker with readers reads a running generation from Redis again
   * without waiting for a pub/sub message (Redis only): the bound on a missed message.
   * @default {1_000}
   */
  poll?: number | undefined;
  /**
   * Keepalive interval of every reader's stream (see `EventStream`).
   * @default {5_000}
   */
  heartbeat?: number | null | undefined;
  /**
   * Called with what a producer threw, and with Redis errors the store recovers from.
   * @default {console.error}
   */
  onError?: ((error: unknown) => void) | undefined;
}

/** An event as a producer sends it: ids are given by the generation. */
export interface ResumableEvent {
  /** The payload: a string as is, a `Uint8Array` as UTF-8 text, anything else as JSON. */
  data: unknown;
  /** The event type; not {@linkcode END_EVENT} nor `stream-reset`, which readers rely on. */
  event?: string | undefined;
}

/** A stored event as {@linkcode ResumableStreams.events} gives it. */
export interface ResumableStoredEvent {
  /** Its id in the generation (`<token>-<seq>`): what a reader resumes after. */
  id: string;
  /** Its type: `"message"` when unnamed; {@linkcode END_EVENT} for the end marker. */
  event: string;
  /** Its data as stored: JSON text for anything but a string or bytes. */
  data: string;
}

/** Options of {@linkcode ResumableStreams.events}. */
export interface ResumableReadOptions {
  /** Read the events after this id of the generation; from the start when absent. */
  lastEventId?: string | undefined;
  /**
   * Follow the live tail until the end marker (yielded last); when false, stop after the events
   * stored when `events()` was called.
   * @default {false}
   */
  live?: boolean | undefined;
  /** Stops the iteration (it then returns). */
  signal?: AbortSignal | undefined;
}

/** What a producer writes to. */
export interface ResumableWriter {
  /** The id of the generation. */
  readonly id: string;
  /**
   * Aborts when the generation is cancelled (on any worker), reaches a limit, loses its lease,
   * or the instance closes: the producer should stop.
   */
  readonly signal: AbortSignal;
  /**
   * Stores one event and hands it to every reader.
   * @param event The event.
   * @returns A promise of the stored event's id (`<token>-<seq>`, what a reader sends back as
   * `Last-Event-ID`) once it is stored; it rejects with a `TypeError`/`RangeError` for an event
   * that cannot be encoded, and with the signal's reason once the generation cannot take more.
   */
  send(event: ResumableEvent): Promise<string>;
  /**
   * Stores one event made of `data` and a type: a shorthand of `send()`.
   * @param data The payload.
   * @param options The event type.
   * @returns A promise of the stored event's id, as `send()` gives.
   */
  publish(data: unknown, options?: { event?: string | undefined }): Promise<string>;
}

/** What {@linkcode ResumableStreams.metrics} reports, for this instance. */
export interface ResumableMetrics {
  /** Generations held here: kept in memory, or mirrored from Redis for readers. */
  streams: number;
  /** Events held here (end markers included). */
  events: number;
  /** Bytes of the frames held here. */
  bytes: number;
  /** Producers running on this instance. */
  running: number;
  /** Readers connected to this instance. */
  readers: number;
  /** Producers this instance started. */
  started: number;
  /** Of those, how many ended for each reason. */
  ended: Record<ResumableEndReason, number>;
  /** Generations the memory store freed at the end of their retention. */
  expired: number;
}

interface Running {
  controller: AbortController;
}

/**
 * Generations that outlive their connections: a producer runs under an id to completion whether
 * or not anyone reads; its events are kept with ids (in memory, or in Redis for every worker)
 * until `retention` ms after its end; any number of readers get everything after their
 * `Last-Event-ID` (or from the start), then the live tail, then the end marker event
 * ({@linkcode END_EVENT}) and the body's end, so that a client tells "finished" from "cut off".
 *
 * @example A generation read after it finished, then resumed from an id
 * ```ts
 * import assert from "node:assert/strict";
 * import { EventParserStream } from "@flume/sse";
 * import { ResumableStreams } from "@flume/sse/resumable";
 *
 * const resumable = new ResumableStreams({ heartbeat: null });
 * assert.equal(
 *   await resumable.start("answer-1", async (stream) => {
 *     for (const word of ["Hello", "there", "!"]) await stream.publish(word);
 *   }),
 *   "started",
 * );
 * await resumable.finished("answer-1");
 *
 * const read = async (request: Request) => {
 *   const response = await resumable.response("answer-1", request);
 *   const events = [];
 *   for await (const event of response.body!.pipeThrough(new EventParserStream())) {
 *     events.push(event);
 *   }
 *   return events;
 * };
 * const all = await read(new Request("http://localhost/answer-1"));
 * assert.deepEqual(all.map((e) => e.data), ["Hello", "there", "!", '{"reason":"complete"}']);
 * assert.equal(all.at(-1)?.type, "end");
 *
 * // Back with the id of "Hello": the rest, then the end marker.
 * const headers = { "Last-Event-ID": all[0]!.lastEventId };
 * const rest = await read(new Request("http://localhost/answer-1", { headers }));
 * assert.deepEqual(rest.map((e) => e.data), ["there", "!", '{"reason":"complete"}']);
 * await resumable.close();
 * ```
 */
export class ResumableStreams {
  readonly #store: Store;
  readonly #ready: Promise<void>;
  readonly #heartbeat: number | null | undefined;
  readonly #maxEvents: number;
  readonly #onError: (error: unknown) => void;
  readonly #running = new Map<string, Running>();
  readonly #finished = new Map<string, Promise<void>>();
  #readers = 0;
  #started = 0;
  readonly #ended: Record<ResumableEndReason, number> = {
    complete: 0,
    cancelled: 0,
    failed: 0,
    limit: 0,
    lost: 0,
  };
  #closed = false;

  /**
   * Creates the instance; with `redis`, it subscribes at once (calls wait for it).
   * @param options Storage, limits and the readers' heartbeat.
   * @throws {RangeError} A limit is not a positive integer.
   * @throws {TypeError} `redis` holds neither two known clients nor an adapter.
   */
  constructor(options: ResumableStreamsOptions = {}) {
    const retention = ms("retention", options.retention, 600_000);
    const maxEvents = positive("maxEvents", options.maxEvents, 10_000);
    const maxBytes = positive("maxBytes", options.maxBytes, 4_194_304);
    const maxStreams = positive("maxStreams", options.maxStreams, 1_000);
    const lease = ms("lease", options.lease, 10_000);
    const poll = ms("poll", options.poll, 1_000);
    this.#maxEvents = maxEvents;
    this.#heartbeat = options.heartbeat;
    this.#onError = options.onError ?? ((error) => console.error(error));
    const redis = options.redis;
    if (redis === undefined) {
      this.#store = new MemoryStore({ retention, maxEvents, maxBytes, maxStreams }, endBody);
    } else {
      const adapter = redis.adapter ?? adapterFor(redis.client, redis.subscriber);
      const prefix = options.prefix ?? "flume:resumable:";
      this.#store = new RedisStore(
        adapter,
        { retention, maxEvents, maxBytes, prefix, lease, poll },
        endBody,
        this.#onError,
      );
    }
    this.#ready = this.#store.open((id) => this.#running.get(id)?.controller.abort(cancelled()));
    // A failed subscribe surfaces on the first call that waits for it, not as an unhandled one.
    this.#ready.catch(() => {});
  }

  /**
   * Runs `producer` under `id` unless a generation exists under it; the producer runs to
   * completion whether or not anyone reads, and its promise settling ends the generation.
   * @param id The generation's id: 1 to 256 characters, no control characters.
   * @param producer Writes the events; stops when `stream.signal` aborts.
   * @returns Whether it started, or why not.
   * @throws {TypeError} `id` is not a string or has a control character, or `producer` is not a
   * function.
   * @throws {RangeError} `id` is empty or too long.
   * @example A second start of a running id runs nothing
   * ```ts
   * import assert from "node:assert/strict";
   * import { ResumableStreams } from "@flume/sse/resumable";
   *
   * const resumable = new ResumableStreams({ heartbeat: null });
   * let runs = 0;
   * const producer = async () => {
   *   runs++;
   *   await new Promise((resolve) => setTimeout(resolve, 10));
   * };
   * assert.equal(await resumable.start("job", producer), "started");
   * assert.equal(await resumable.start("job", producer), "running");
   * await resumable.finished("job");
   * assert.equal(await resumable.start("job", producer), "ended");
   * assert.equal(runs, 1);
   * await resumable.close();
   * ```
   */
  async start(
    id: string,
    producer: (stream: ResumableWriter) => void | Promise<unknown>,
  ): Promise<ResumableStartResult> {
    checkStreamId("start stream", id);
    if (typeof producer !== "function") {
      throw new TypeError(
        `Cannot start stream: \`producer\` must be a function, got \`${typeOf(producer)}\``,
      );
    }
    await this.#ready;
    this.#checkOpen("start stream");
    const token = newToken();
    const outcome: StartOutcome = await this.#store.start(id, token);
    if (outcome !== "started") return outcome;
    this.#started++;
    const controller = new AbortController();
    this.#running.set(id, { controller });
    const done = this.#run(id, token, controller, producer);
    this.#finished.set(id, done);
    void done.finally(() => {
      if (this.#finished.get(id) === done) this.#finished.delete(id);
    });
    return "started";
  }

  /**
   * Waits until a producer this instance started has ended and its end marker is stored.
   * @param id The generation's id.
   * @returns A promise that resolves then (at once when none runs here).
   */
  finished(id: string): Promise<void> {
    return this.#finished.get(id) ?? Promise.resolve();
  }

  /**
   * Answers a reader of `id`: the events after its `Last-Event-ID` (all of them without one),
   * then the live tail, then the end marker, then the end of the body. A `Last-Event-ID` that is
   * not one of this generation's gets a `stream-reset` event first, then everything.
   *
   * The other answers: 404 when there is no generation under `id` (unknown, or expired after
   * its retention), 204 when `Last-Event-ID` is the end marker's (the client has it all: an
   * `EventSource` and `connect()` stop there), 400 for a malformed id (a client controls it),
   * 503 with `Retry-After` when Redis cannot be read.
   * @param id The generation's id, as the client asked for it.
   * @param request The request: its signal ends the stream, its `Last-Event-ID` resumes it.
   * @param init Status and headers of the event-stream response.
   * @returns The response.
   * @example An unknown id is gone
   * ```ts
   * import assert from "node:assert/strict";
   * import { ResumableStreams } from "@flume/sse/resumable";
   *
   * const resumable = new ResumableStreams();
   * const response = await resumable.response("nope", new Request("http://localhost/"));
   * assert.equal(response.status, 404);
   * await resumable.close();
   * ```
   */
  async response(id: string, request: Request, init?: ResponseInit): Promise<Response> {
    try {
      checkStreamId("resume stream", id);
    } catch (error) {
      return textResponse(400, (error as Error).message);
    }
    await this.#ready;
    this.#checkOpen("resume stream");
    let log: Log | undefined;
    try {
      log = await this.#store.attach(id);
    } catch (error) {
      this.#onError(error);
      return textResponse(
        503,
        `Cannot resume stream: the store is unreachable, try again`,
        { "Retry-After": "1" },
      );
    }
    if (!log) {
      return textResponse(
        404,
        `Cannot resume stream: no stream \`${id}\` (never started, or expired after its retention)`,
      );
    }
    const header = request.headers.get("last-event-id");
    let cursor = 0;
    let reset: Uint8Array | undefined;
    if (header !== null && header !== "") {
      cursor = positionOf(header, log.token, log.entries.length);
      if (cursor < 0) {
        cursor = 0;
        reset = encodeText(encodeEvent({
          event: STREAM_RESET_EVENT,
          data: { stream: id, lastEventId: header.slice(0, MAX_ID_LENGTH) },
        }));
      } else if (log.ended && cursor >= log.entries.length) {
        this.#store.release(id, log);
        return new Response(null, { status: 204 });
      }
    }
    // Deno aborts request.signal after a successful response too (and warns); the body's
    // cancel() sees a disconnect there (see requestSignal).
    const signal = requestSignal(request);
    const stream = new EventStream({
      ...(signal ? { signal } : {}),
      ...(this.#heartbeat === undefined ? {} : { heartbeat: this.#heartbeat }),
    });
    if (reset) stream[offerFrame](reset, "pinned");
    this.#readers++;
    void this.#serve(stream, log, cursor).finally(() => {
      this.#readers--;
      this.#store.release(id, log);
    });
    return stream.response(init);
  }

  /**
   * Reads a generation's stored events in code (what `response()` sends, without HTTP): the
   * events after `lastEventId`, in order; with `live`, then the live tail up to the end marker.
   * The iteration returns early when the generation is dropped (expired, or the instance
   * closed) or `signal` aborts. Iterate it to its end or leave the loop (`break`): either lets
   * go of the generation; an iterator never started holds it.
   * @param id The generation's id.
   * @param options Where to start, whether to follow, and a signal.
   * @returns The events, or undefined when there is no generation under `id`.
   * @throws {TypeError} `id` is not a string or has a control character.
   * @throws {RangeError} `id` is empty or too long, or `lastEventId` is not one of this
   * generation's ids.
   * @example What a finished generation holds
   * ```ts
   * import assert from "node:assert/strict";
   * import { ResumableStreams } from "@flume/sse/resumable";
   *
   * const resumable = new ResumableStreams();
   * let first = "";
   * await resumable.start("g", async (stream) => {
   *   first = await stream.publish("a");
   *   await stream.publish({ b: 1 }, { event: "obj" });
   * });
   * await resumable.finished("g");
   * const events = [];
   * for await (const event of (await resumable.events("g", { lastEventId: first }))!) {
   *   events.push([event.event, event.data]);
   * }
   * assert.deepEqual(events, [["obj", '{"b":1}'], ["end", '{"reason":"complete"}']]);
   * assert.equal(await resumable.events("none"), undefined);
   * await resumable.close();
   * ```
   */
  async events(
    id: string,
    options: ResumableReadOptions = {},
  ): Promise<AsyncGenerator<ResumableStoredEvent, void, undefined> | undefined> {
    checkStreamId("read stream", id);
    await this.#ready;
    this.#checkOpen("read stream");
    // The stored count comes from the truth (Redis, not a mirror that may lag): every event
    // stored before this call is read.
    const target = options.live ? Infinity : (await this.#store.status(id))?.events;
    if (target === undefined) return undefined;
    const log = await this.#store.attach(id);
    if (!log) return undefined;
    let cursor = 0;
    const after = options.lastEventId;
    if (after !== undefined) {
      // A mirror learns its token with its first read, which attach() awaited.
      cursor = positionOf(after, log.token, Math.max(log.entries.length, target));
      if (cursor < 0) {
        this.#store.release(id, log);
        throw new RangeError(
          `Cannot read stream: \`lastEventId\` is not an id of \`${id}\`, got \`${
            after.slice(0, 256)
          }\``,
        );
      }
    }
    return this.#read(id, log, cursor, target, options.signal);
  }

  async *#read(
    id: string,
    log: Log,
    cursor: number,
    target: number,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<ResumableStoredEvent, void, undefined> {
    let parsed: ParsedEvent | undefined;
    const parser = new Parser({
      onEvent: (event) => parsed = event,
      maxEventSize: Number.MAX_SAFE_INTEGER,
    });
    const decoder = new TextDecoder();
    try {
      let index = cursor;
      while (index < target && !log.gone && !signal?.aborted) {
        if (index < log.entries.length) {
          const entry = log.entries[index++]!;
          parsed = undefined;
          parser.feed(decoder.decode(entry.frame));
          if (parsed) {
            const { type, data, lastEventId } = parsed as ParsedEvent;
            yield { id: lastEventId, event: type, data };
          }
          if (entry.end) return;
          continue;
        }
        let wake!: () => void;
        const sleeping = new Promise<void>((resolve) => wake = resolve);
        const unwait = log.wait(wake);
        signal?.addEventListener("abort", wake, { once: true });
        await sleeping;
        unwait();
        signal?.removeEventListener("abort", wake);
      }
    } finally {
      this.#store.release(id, log);
    }
  }

  /**
   * Cancels a running generation wherever its producer runs: its end marker (reason
   * `"cancelled"`) is stored at once, so readers end, and the producer's signal aborts.
   * @param id The generation's id.
   * @returns Whether a running generation was cancelled.
   * @throws {TypeError} `id` is not a string or has a control character.
   * @throws {RangeError} `id` is empty or too long.
   * @example Stop a producer that would run for ever
   * ```ts
   * import assert from "node:assert/strict";
   * import { ResumableStreams } from "@flume/sse/resumable";
   *
   * const resumable = new ResumableStreams();
   * let stopped = false;
   * await resumable.start("forever", async (stream) => {
   *   await new Promise((resolve) => stream.signal.addEventListener("abort", resolve));
   *   stopped = true;
   * });
   * assert.equal(await resumable.cancel("forever"), true);
   * await resumable.finished("forever");
   * assert.equal(stopped, true);
   * assert.equal((await resumable.status("forever"))?.reason, "cancelled");
   * await resumable.close();
   * ```
   */
  async cancel(id: string): Promise<boolean> {
    checkStreamId("cancel stream", id);
    await this.#ready;
    this.#checkOpen("cancel stream");
    const cancelledNow = await this.#store.end(id, "cancelled");
    this.#running.get(id)?.controller.abort(cancelled());
    return cancelledNow;
  }

  /**
   * The state of a generation.
   * @param id The generation's id.
   * @returns Its state, events and end reason, or undefined when there is none (never started,
   * or expired).
   * @throws {TypeError} `id` is not a string or has a control character.
   * @throws {RangeError} `id` is empty or too long.
   */
  async status(id: string): Promise<ResumableStatus | undefined> {
    checkStreamId("read stream status", id);
    await this.#ready;
    this.#checkOpen("read stream status");
    return await this.#store.status(id);
  }

  /**
   * What this instance holds and runs now, and how its producers ended.
   * @returns The figures.
   */
  metrics(): ResumableMetrics {
    const held = this.#store.held();
    return {
      streams: held.streams,
      events: held.events,
      bytes: held.bytes,
      running: this.#running.size,
      readers: this.#readers,
      started: this.#started,
      ended: { ...this.#ended },
      expired: held.expired,
    };
  }

  /**
   * Stops every producer running here (their generations end as `"cancelled"`, and their
   * signals abort; it does not wait for them to return), ends every reader's stream, frees what
   * the memory store holds and unsubscribes from Redis. The Redis connections stay yours.
   * @returns A promise that resolves when all of it is done.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#ready.catch(() => {});
    // The end markers first, then the signals: a producer that ignores its signal must not hold
    // up a shutdown, so close() does not wait for the producers to return.
    await Promise.allSettled(
      [...this.#running.keys()].map((id) => this.#store.end(id, "cancelled")),
    );
    for (const { controller } of this.#running.values()) controller.abort(cancelled());
    await this.#store.close();
  }

  async #run(
    id: string,
    token: string,
    controller: AbortController,
    producer: (stream: ResumableWriter) => void | Promise<unknown>,
  ): Promise<void> {
    const writer = new Writer(id, token, controller, this.#store, this.#maxEvents);
    const release = this.#store.hold(id, () => controller.abort(lost()));
    let reason: ResumableEndReason = "complete";
    try {
      await producer(writer);
      await writer.drain();
    } catch (error) {
      if (!controller.signal.aborted) {
        reason = "failed";
        this.#onError(error);
      }
    }
    release();
    if (controller.signal.aborted) reason = reasonOf(controller.signal.reason);
    try {
      // After a cancel or a limit the end marker is stored already: this does nothing then.
      await this.#store.end(id, reason);
    } catch (error) {
      // Redis is unreachable: the lease runs out and a reader ends the generation as "lost".
      this.#onError(error);
    }
    this.#ended[reason]++;
    this.#running.delete(id);
  }

  /**
   * Feeds one reader from `log`: what is there while the client has room, then sleeps until
   * the log grows, the client takes what is queued, or the stream ends.
   */
  async #serve(stream: EventStream, log: Log, cursor: number): Promise<void> {
    let wake: (() => void) | undefined;
    const poke = (): void => {
      const resolve = wake;
      wake = undefined;
      resolve?.();
    };
    stream[onStreamEnd](poke, undefined);
    let index = cursor;
    while (!stream.closed) {
      if (log.gone) {
        // Expired (or closed) while being read: the client reconnects and gets 404.
        stream.close();
        return;
      }
      if (index < log.entries.length) {
        const sleeping = new Promise<void>((resolve) => wake = resolve);
        if (!stream[onRoom](poke)) {
          await sleeping;
          continue;
        }
        wake = undefined;
        const entry = log.entries[index++]!;
        stream[offerFrame](entry.frame, "pinned");
        if (entry.end) {
          stream.close();
          return;
        }
        continue;
      }
      const sleeping = new Promise<void>((resolve) => wake = resolve);
      const unwait = log.wait(poke);
      await sleeping;
      unwait();
    }
  }

  #checkOpen(action: string): void {
    if (this.#closed) throw new TypeError(`Cannot ${action}: the instance is closed`);
  }
}

/** Writes a producer's events, in order, in batches while a store call is in flight. */
class Writer implements ResumableWriter {
  readonly id: string;
  readonly #controller: AbortController;
  readonly #store: Store;
  readonly #max: number;
  readonly #token: string;
  /** Events stored: this writer is the only one appending to its generation. */
  #stored = 0;
  #queue: { body: string; resolve: (id: string) => void; reject: (error: unknown) => void }[] = [];
  #flushing: Promise<void> | undefined;

  constructor(id: string, token: string, controller: AbortController, store: Store, max: number) {
    this.id = id;
    this.#token = token;
    this.#controller = controller;
    this.#store = store;
    this.#max = max;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  send(event: ResumableEvent): Promise<string> {
    if (this.signal.aborted) return Promise.reject(this.signal.reason);
    let body: string;
    try {
      if (event === null || typeof event !== "object") {
        throw new TypeError(`Cannot send event: expected an object, got \`${typeOf(event)}\``);
      }
      if (event.event === END_EVENT || event.event === STREAM_RESET_EVENT) {
        throw new TypeError(
          `Cannot send event: the type \`${event.event}\` is reserved for readers`,
        );
      }
      body = encodeBody(event.event, event.data);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#queue.length >= this.#max) {
      return Promise.reject(
        new RangeError(
          `Cannot send event: ${this.#max} events are waiting to be stored, await send()`,
        ),
      );
    }
    return new Promise<string>((resolve, reject) => {
      this.#queue.push({ body, resolve, reject });
      this.#flushing ??= this.#flush();
    });
  }

  publish(data: unknown, options?: { event?: string | undefined }): Promise<string> {
    return this.send({ data, event: options?.event });
  }

  /** Resolves when everything sent is stored (or refused). */
  async drain(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  async #flush(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, 512);
      try {
        const outcome = await this.#store.append(this.id, batch.map((item) => item.body));
        if (outcome === "ok") {
          for (const item of batch) item.resolve(eventId(this.#token, ++this.#stored));
          continue;
        }
        if (!this.signal.aborted) {
          this.#controller.abort(outcome === "limit" ? limitReached(this.id) : cancelled());
        }
      } catch (error) {
        for (const item of batch) item.reject(error);
        continue;
      }
      for (const item of [...batch, ...this.#queue.splice(0)]) item.reject(this.signal.reason);
    }
    this.#flushing = undefined;
  }
}

/** The end marker's body: `event: end` and `{"reason": ...}`. */
function endBody(reason: ResumableEndReason): string {
  return encodeBody(END_EVENT, { reason });
}

/** A random token: the prefix of a generation's event ids. */
function newToken(): string {
  return crypto.randomUUID().slice(0, 8);
}

/** The reasons a producer's signal aborts with, recognised by their message. */
function cancelled(): DOMException {
  return new DOMException("Cannot continue stream: it was cancelled", "AbortError");
}
function lost(): DOMException {
  return new DOMException("Cannot continue stream: this worker lost its lease", "AbortError");
}
function limitReached(id: string): RangeError {
  return new RangeError(
    `Cannot continue stream: \`${id}\` reached its \`maxEvents\` or \`maxBytes\` limit`,
  );
}
function reasonOf(reason: unknown): ResumableEndReason {
  if (reason instanceof RangeError) return "limit";
  if (reason instanceof DOMException && reason.message.includes("lease")) return "lost";
  return "cancelled";
}

/**
 * Checks the id of a generation.
 * @throws {TypeError} Not a string, or holds a control character.
 * @throws {RangeError} Empty or longer than {@linkcode MAX_STREAM_ID_LENGTH}.
 */
function checkStreamId(action: string, id: unknown): asserts id is string {
  if (typeof id !== "string") {
    throw new TypeError(`Cannot ${action}: \`id\` must be a string, got \`${typeOf(id)}\``);
  }
  if (id.length === 0 || id.length > MAX_STREAM_ID_LENGTH) {
    throw new RangeError(
      `Cannot ${action}: \`id\` must be 1 to ${MAX_STREAM_ID_LENGTH} characters long, got \`${id.length}\``,
    );
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(id)) {
    throw new TypeError(`Cannot ${action}: \`id\` contains a control character`);
  }
}

function positive(name: string, value: number | undefined, fallback: number): number {
  return checkPositiveInteger("ResumableStreams", name, value, fallback);
}

function ms(name: string, value: number | undefined, fallback: number): number {
  return checkOptionalMs("ResumableStreams", name, value, fallback) ?? fallback;
}

function textResponse(status: number, text: string, headers?: Record<string, string>): Response {
  return new Response(text, {
    status,
    headers: {
      "Content-Type": "text/plain; charset=utf-8",
      "Cache-Control": "no-store",
      ...headers,
    },
  });
}

function typeOf(value: unknown): string {
  return value === null ? "null" : typeof value;
}
