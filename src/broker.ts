import {
  checkWriteDelay,
  DEFAULT_BUFFER_BYTES,
  DEFAULT_BUFFER_SIZE,
  EventStream,
} from "./event_stream.ts";
import { FlushScheduler, useScheduler } from "./_flush_scheduler.ts";
import type { ServerSentEvent } from "./server_sent_event.ts";
import {
  closeReason,
  type ControlledStream,
  offerFrame,
  type OfferPolicy,
  onRoom,
  onStreamEnd,
  type OverflowPolicy,
} from "./_stream_control.ts";
import { checkId, encodeBody, encodeEvent, MAX_ID_LENGTH, retryFrame } from "./_wire.ts";
import { encodeText } from "./_bytes.ts";
import { checkOptionalMs, checkPositiveInteger } from "./_options.ts";
import { quietRejection } from "./_promise.ts";
import { clock } from "./_clock.ts";
import { bridgeStatsOf, historyStatsOf } from "./_bridge_stats.ts";
import { requestSignal } from "./_runtime.ts";
import type { SseResponseInit } from "./_response.ts";
import type { Bridge, BridgeEvent, BridgeGap, BridgePartitions, BridgeReplay } from "./bridge.ts";
import { DEFAULT_HISTORY_BYTES, DEFAULT_HISTORY_TTL, MemoryBridge } from "./_memory_bridge.ts";
import { BrokerClosedError, BrokerLimitError } from "./errors.ts";
import { type BrokerMetrics, emptyMetrics } from "./format_metrics.ts";
import {
  encodeStored,
  encodeStoredAs,
  gapSignal,
  heldAfter,
  type HeldEvent,
  SharedReplay,
  STREAM_RESET_EVENT,
} from "./_replay.ts";

export { STREAM_RESET_EVENT } from "./_replay.ts";

/**
 * The declared event names as one object, each name a key set to `true`: checked against the
 * broker's `Events` type in both directions (a name missing or extra is a compile error), or, with
 * no type given, the source the names are inferred from.
 *
 * @example Names declared once, inferred by the broker
 * ```ts
 * import { Broker, type EventVocabulary } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const vocabulary: EventVocabulary<{ note: string; read: number }> = { note: true, read: true };
 * const broker = new Broker({ events: vocabulary });
 * assert.deepEqual(broker.events, ["note", "read"]);
 * await broker.close();
 * ```
 */
export type EventVocabulary<Events> = { readonly [Name in keyof Events]: true };

/** Options of {@linkcode Broker}. */
export interface BrokerOptions<Events extends object = Record<string, unknown>> {
  /**
   * The declared vocabulary: publishing any other event name throws a `TypeError` (an event
   * without a name counts as `"message"`). All names are allowed when absent. Either a list of
   * names, or an {@linkcode EventVocabulary} object (`{ note: true, read: true }`), which the
   * compiler checks against `Events` for missing names too and infers `Events` from when no type
   * is given.
   */
  events?: readonly (keyof Events & string)[] | EventVocabulary<Events> | undefined;
  /**
   * Frames queued per client; a publish never waits for a slow client, `overflow` decides.
   * @default {256}
   */
  bufferSize?: number | undefined;
  /**
   * Bytes queued per client before its buffer counts as full, whatever the frame count.
   * @default {1_048_576}
   */
  bufferBytes?: number | undefined;
  /**
   * What a client whose buffer is full gets: `"disconnect"` ends its stream (the browser
   * reconnects and, with history, replays what it missed); `"drop-oldest"` discards its oldest
   * queued frames to make room.
   * @default {"disconnect"}
   */
  overflow?: OverflowPolicy | undefined;
  /**
   * Events kept per channel for `Last-Event-ID` replay; with it, events without an id get one.
   * @default {0}
   */
  history?: number | undefined;
  /**
   * Milliseconds after which the history of a channel that nobody published to or resumed from
   * is freed (checked at each publish and replay, no timer). A client that comes back from a
   * position in freed history gets the gap signal.
   * @default {3_600_000}
   */
  historyTtl?: number | undefined;
  /**
   * Estimated bytes of history the broker holds at most, over all channels: beyond it the
   * channels used least recently are freed first (their clients get the gap signal). Given to
   * the bridge, which maps it to its store.
   * @default {33_554_432}
   */
  historyBytes?: number | undefined;
  /**
   * Keepalive interval of every stream in ms, `null` for none (see `EventStream`).
   * @default {5_000}
   */
  heartbeat?: number | null | undefined;
  /**
   * How long a client may leave a chunk unread before it is dropped (see `EventStream`).
   * @default {30_000}
   */
  writeTimeout?: number | null | undefined;
  /**
   * The most ms a client's next chunk is held so that the events of the following turns of the
   * event loop join it (see `EventStream`): a client that was written to less than `writeDelay`
   * ms ago waits until then, a quiet one gets its event at once. One timer per broker serves
   * every held client. `0` turns batching off.
   * @default {5}
   */
  writeDelay?: number | undefined;
  /** Clients of the whole broker beyond which `subscribe()` throws and `response()` answers 503. */
  maxClients?: number | undefined;
  /** Clients of one channel beyond which `subscribe()` throws and `response()` answers 503. */
  maxClientsPerChannel?: number | undefined;
  /**
   * Seconds a client turned away with 503 is told to wait at least: each 503 answers a random
   * whole number of seconds from `retryAfter` to twice it (`Retry-After`), so that clients turned
   * away together do not all come back together.
   * @default {5}
   */
  retryAfter?: number | undefined;
  /**
   * New clients admitted per second at most, on average (a token bucket, read at each subscribe,
   * no timer): beyond it `subscribe()` throws {@linkcode BrokerLimitError} (reason
   * `"admission"`) and `response()` answers 503 with the jittered `Retry-After`, so that a
   * reconnect storm is spread out instead of served all at once. No limit when absent.
   */
  admissionRate?: number | undefined;
  /**
   * New clients admitted at once beyond the rate after a quiet spell: the bucket's size.
   * Only with `admissionRate`.
   * @default {the admissionRate rounded up: one second's worth}
   */
  admissionBurst?: number | undefined;
  /** Carries events between brokers (workers, hosts); one in memory when absent. */
  bridge?: Bridge | undefined;
  /**
   * Called with errors that have no caller to reject: a failed replay (the client then gets the
   * gap signal) or a bridge failure.
   * @default {console.error}
   */
  onError?(error: unknown): void;
}

/** Options of {@linkcode Broker.subscribe}. */
export interface SubscribeOptions {
  /** Aborting it ends the stream and removes the subscription. */
  signal?: AbortSignal | undefined;
  /** The client's `Last-Event-ID`: with history, what it missed is sent first. */
  lastEventId?: string | undefined;
}

/** Options of {@linkcode Broker.publish}, typed by the declared events. */
export interface BrokerPublishOptions<Name extends string = string> {
  /** The event type; `"message"` when absent. */
  event?: Name | undefined;
  /**
   * The event id; with history, the broker assigns one when absent. A number is sent as its
   * decimal text. At most 256 characters, so that a client can resume from it.
   */
  id?: string | number | undefined;
}

/**
 * The options argument of `publish()` and `broadcast()`: optional while `"message"` (the name of
 * an unnamed event) is among the declared events, which it is when none are declared; otherwise
 * required, with an `event` name, so that an unnamed publish is a compile error too: it reads
 * "An argument for 'options_with_event_name' was not provided".
 */
export type PublishRest<Events, Name extends string> = "message" extends keyof Events
  ? [options?: BrokerPublishOptions<Name>]
  : [options_with_event_name: BrokerPublishOptions<Name> & { event: Name }];

/** Options of {@linkcode Broker.close}. */
export interface BrokerCloseOptions {
  /** A last event for every client, before its stream ends (e.g. "server restarting"). */
  event?: ServerSentEvent | undefined;
  /**
   * The reconnection delay to give every client first, in ms: a number, or `[min, max]` for a
   * random delay per client, so that thousands of clients do not all reconnect at once after a
   * deploy.
   */
  retry?: number | readonly [number, number] | undefined;
}

interface Subscriber {
  stream: EventStream;
  channels: readonly string[];
  /**
   * With a partitioned bridge only: the partitions of its channels and the broadcast one,
   * sorted, distinct, and their text, the key of the frames it shares with other clients.
   */
  partitions?: readonly number[] | undefined;
  partitionKey?: string | undefined;
  /** Its replay while it is fetched and sent; undefined before and after. */
  resume?: Resume | undefined;
}

/** A client's replay in progress. */
interface Resume {
  shared: SharedReplay;
  /** The key of `shared` among the broker's replays. */
  key: string;
  /** The index of the next piece to queue. */
  next: number;
  /** Queues more pieces: what the stream calls when it has room again. */
  feed: () => void;
  /** Every piece is queued: the held events go next, into an empty buffer. */
  done: boolean;
  /** Live events held back meanwhile, within the client's bounds. */
  held: HeldEvent[];
  heldBytes: number;
}

/**
 * Channels of clients with fan-out: "send this notification to every open tab of user 42",
 * "push this price to everyone on the ticker".
 *
 * Each publish is encoded once and the same bytes are queued to every subscriber, each behind
 * its own bounded buffer: a publish never waits for a slow client, and the `overflow` policy
 * decides what a client that falls behind gets. With `history`, a client that comes back with
 * `Last-Event-ID` gets exactly what it missed on all its channels, or the
 * {@linkcode STREAM_RESET_EVENT} gap signal when that is no longer known.
 *
 * @typeParam Events Event names mapped to the type of their data: publishing an undeclared name
 * or the wrong data is then a compile error.
 *
 * @example Notifications per user
 * ```ts
 * import { Broker } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * type Events = { notification: { text: string }; read: { id: string } };
 * const broker = new Broker<Events>({ events: ["notification", "read"], history: 100 });
 *
 * async function handler(request: Request): Promise<Response> {
 *   const user = new URL(request.url).searchParams.get("user") ?? "anonymous";
 *   if (request.method === "POST") {
 *     await broker.publish(`user:${user}`, await request.json(), { event: "notification" });
 *     return new Response(null, { status: 204 });
 *   }
 *   return broker.response(`user:${user}`, request);
 * }
 * // Deno.serve(handler) or Bun.serve({ fetch: handler }); here, two requests by hand:
 * const stream = await handler(new Request("http://localhost/?user=42"));
 * const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
 * assert.equal((await reader.read()).value, ":\n\n"); // the opening comment
 * const post = new Request("http://localhost/?user=42", {
 *   method: "POST",
 *   body: JSON.stringify({ text: "hi" }),
 * });
 * assert.equal((await handler(post)).status, 204);
 * assert.match((await reader.read()).value!, /^event: notification\nid: .+\ndata: {"text":"hi"}\n\n$/);
 * await broker.close();
 * ```
 */
export class Broker<Events extends object = Record<string, unknown>> {
  #channels = new Map<string, Set<Subscriber>>();
  #clients = new Set<Subscriber>();
  /** What every subscriber's stream calls when it ends: one function, no closure per client. */
  readonly #onEnd = (subscriber: Subscriber): void => this.#remove(subscriber);
  /** Replays in progress by key (channels and `Last-Event-ID`); each shared by its clients. */
  #replays = new Map<string, SharedReplay>();
  #bridge: Bridge;
  /** The bridge's partitions, read once: undefined for a bridge with one order. */
  readonly #partitions: BridgePartitions | undefined;
  #closed = false;
  readonly #events: ReadonlySet<string> | undefined;
  readonly #history: number;
  readonly #overflow: OverflowPolicy;
  readonly #maxClients: number;
  readonly #maxPerChannel: number;
  readonly #retryAfter: number;
  /** The admission bucket: its size and refill in thousandths of a client (per ms), and fill. */
  readonly #admissionRate: number;
  readonly #admissionSize: number;
  #admissionTokens = 0;
  #admissionAt = 0;
  readonly #streamOptions: {
    heartbeat?: number | null | undefined;
    writeTimeout?: number | null | undefined;
    bufferSize?: number | undefined;
    bufferBytes?: number | undefined;
    writeDelay?: number | undefined;
  };
  /** Flushes every client's queued frames: one task per turn or window, not one per client. */
  readonly #scheduler = new FlushScheduler();
  readonly #onError: (error: unknown) => void;
  #metrics: BrokerMetrics = emptyMetrics();

  /**
   * Creates a broker whose event names are declared once, as an {@linkcode EventVocabulary}:
   * `Events` is inferred from it, or checked against it when given.
   * @param options Vocabulary, buffer bounds and policy, history, limits and bridge.
   * @throws {RangeError} An option is out of range.
   * @throws {TypeError} `overflow` is not a known policy, or an event name is not a string.
   */
  constructor(
    options: Omit<BrokerOptions<Events>, "events"> & { events: EventVocabulary<Events> },
  );
  /**
   * Creates a broker.
   * @param options Vocabulary, buffer bounds and policy, history, limits and bridge.
   * @throws {RangeError} An option is out of range.
   * @throws {TypeError} `overflow` is not a known policy, or an event name is not a string.
   */
  constructor(
    options?: Omit<BrokerOptions<Events>, "events"> & {
      events?: readonly (keyof Events & string)[] | undefined;
    },
  );
  /**
   * Creates a broker from options built beforehand.
   * @param options Vocabulary, buffer bounds and policy, history, limits and bridge.
   * @throws {RangeError} An option is out of range.
   * @throws {TypeError} `overflow` is not a known policy, or an event name is not a string.
   */
  constructor(options?: BrokerOptions<Events>);
  constructor(options: BrokerOptions<Events> = {}) {
    const history = options.history ?? 0;
    if (!Number.isSafeInteger(history) || history < 0) {
      throw new RangeError(
        `Cannot create Broker: \`history\` must be a non-negative integer, got \`${
          String(history)
        }\``,
      );
    }
    this.#history = history;
    const historyLimits = {
      ttl: checkPositiveInteger("Broker", "historyTtl", options.historyTtl, DEFAULT_HISTORY_TTL),
      bytes: checkPositiveInteger(
        "Broker",
        "historyBytes",
        options.historyBytes,
        DEFAULT_HISTORY_BYTES,
      ),
    };
    const overflow = options.overflow ?? "disconnect";
    if (overflow !== "disconnect" && overflow !== "drop-oldest") {
      throw new TypeError(
        `Cannot create Broker: \`overflow\` must be "disconnect" or "drop-oldest", got \`${
          String(overflow)
        }\``,
      );
    }
    this.#overflow = overflow;
    if (options.events) this.#events = declaredNames(options.events);
    this.#maxClients = options.maxClients === undefined
      ? Infinity
      : checkPositiveInteger("Broker", "maxClients", options.maxClients, 0);
    this.#maxPerChannel = options.maxClientsPerChannel === undefined
      ? Infinity
      : checkPositiveInteger("Broker", "maxClientsPerChannel", options.maxClientsPerChannel, 0);
    this.#retryAfter = checkPositiveInteger("Broker", "retryAfter", options.retryAfter, 5);
    const rate = options.admissionRate;
    if (rate !== undefined && (typeof rate !== "number" || !(rate > 0) || !Number.isFinite(rate))) {
      throw new RangeError(
        `Cannot create Broker: \`admissionRate\` must be a positive number of clients per second, got \`${
          String(rate)
        }\``,
      );
    }
    if (rate === undefined && options.admissionBurst !== undefined) {
      throw new TypeError("Cannot create Broker: `admissionBurst` needs `admissionRate`");
    }
    // In thousandths of a client, so that whole rates and whole ms add up exactly.
    this.#admissionRate = rate ?? Infinity;
    this.#admissionSize = 1_000 *
      checkPositiveInteger(
        "Broker",
        "admissionBurst",
        options.admissionBurst,
        Math.ceil(rate ?? 1),
      );
    this.#admissionTokens = this.#admissionSize;
    this.#admissionAt = clock.now();
    // Checked here, under the broker's name: the streams that use them only come with clients.
    checkOptionalMs("Broker", "heartbeat", options.heartbeat, null);
    checkOptionalMs("Broker", "writeTimeout", options.writeTimeout, null);
    checkPositiveInteger("Broker", "bufferSize", options.bufferSize, 1);
    checkPositiveInteger("Broker", "bufferBytes", options.bufferBytes, 1);
    checkWriteDelay(options.writeDelay, "Broker");
    this.#streamOptions = {
      heartbeat: options.heartbeat,
      writeTimeout: options.writeTimeout,
      bufferSize: options.bufferSize,
      bufferBytes: options.bufferBytes,
      writeDelay: options.writeDelay,
    };
    this.#onError = options.onError ?? ((error) => console.error("Broker:", error));
    this.#bridge = options.bridge ?? new MemoryBridge();
    this.#partitions = this.#bridge.partitions;
    this.#bridge.open(this.#deliver, this.#lost, historyLimits).catch(this.#onError);
  }

  /** The declared event names, or undefined when every name is allowed. */
  get events(): readonly string[] | undefined {
    return this.#events ? [...this.#events] : undefined;
  }

  /**
   * Registers a new client on one or more channels, at once: a publish right after this call
   * reaches it. The client is removed from every channel the moment its stream ends.
   * @param channels A channel name or several; duplicates count once.
   * @param options A signal that ends the stream, and the client's `Last-Event-ID`.
   * @returns The client's stream; serve it with `stream.response()`.
   * @throws {BrokerClosedError} The broker is closed.
   * @throws {BrokerLimitError} `maxClients` or `maxClientsPerChannel` is reached, or more new
   * clients came than `admissionRate` admits.
   * @throws {TypeError} A channel name is not a non-empty string.
   * @example Subscribe to a user's channel and the global one
   * ```ts
   * import { Broker } from "@flume/sse";
   *
   * import assert from "node:assert/strict";
   *
   * const broker = new Broker();
   * const stream = broker.subscribe(["user:42", "global"]);
   * assert.equal(broker.clientCount("user:42"), 1);
   * await broker.publish("global", "hello");
   * stream.close();
   * assert.equal(await new Response(stream.readable).text(), ":\n\ndata: hello\n\n");
   * assert.equal(broker.clientCount(), 0);
   * await broker.close();
   * ```
   */
  subscribe(channels: string | readonly string[], options: SubscribeOptions = {}): EventStream {
    if (this.#closed) throw brokerClosed("subscribe");
    const names = normalizeChannels(channels);
    this.#checkLimits(names);
    this.#admit();
    const stream = new EventStream(
      options.signal ? { ...this.#streamOptions, signal: options.signal } : this.#streamOptions,
    );
    if (stream.closed) return stream;
    stream[useScheduler](this.#scheduler);
    const partitions = this.#partitions;
    let subscriber: Subscriber;
    if (partitions) {
      const own = partitionsOf(names, partitions);
      subscriber = { stream, channels: names, partitions: own, partitionKey: own.join(",") };
    } else {
      subscriber = { stream, channels: names };
    }
    for (const name of names) {
      let set = this.#channels.get(name);
      if (!set) {
        this.#channels.set(name, set = new Set());
        this.#interest(name, true);
      }
      set.add(subscriber);
    }
    this.#clients.add(subscriber);
    this.#metrics.connectionsTotal++;
    stream[onStreamEnd](this.#onEnd, subscriber);
    const lastEventId = options.lastEventId;
    if (this.#history > 0 && lastEventId) this.#replay(subscriber, lastEventId);
    return stream;
  }

  /**
   * Answers an SSE request in one call: subscribes with the request's `Last-Event-ID` header and
   * its disconnect, and answers 503 beyond the client limits or the admission rate, or once the
   * broker is closed (a shutdown in progress). A 503's `Retry-After` is a random whole number of
   * seconds from `retryAfter` to twice it.
   * @param channels A channel name or several.
   * @param request The incoming request.
   * @param init Status and headers of the response.
   * @returns The streaming response, or a 503 response.
   * @throws {TypeError} A channel name is not a non-empty string.
   * @example Serve a room
   * ```ts
   * import { Broker } from "@flume/sse";
   *
   * import assert from "node:assert/strict";
   *
   * const broker = new Broker({ history: 50 });
   * function handler(request: Request): Response {
   *   const room = new URL(request.url).searchParams.get("room") ?? "lobby";
   *   return broker.response(`room:${room}`, request);
   * }
   * const response = handler(new Request("http://localhost/?room=7"));
   * assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
   * assert.equal(broker.clientCount("room:7"), 1);
   * await broker.close();
   * assert.equal(handler(new Request("http://localhost/")).status, 503); // closed: come back later
   * ```
   */
  response(
    channels: string | readonly string[],
    request: Request,
    init?: SseResponseInit,
  ): Response {
    let stream: EventStream;
    try {
      const signal = requestSignal(request);
      stream = this.subscribe(channels, {
        lastEventId: request.headers.get("last-event-id") ?? undefined,
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      // A closed broker (a shutdown in progress) is as temporary as a full one for the client.
      if (!(error instanceof BrokerLimitError || error instanceof BrokerClosedError)) throw error;
      return new Response(`${error.message}\n`, {
        status: 503,
        headers: {
          "retry-after": String(this.#retryAfterJittered()),
          "content-type": "text/plain",
        },
      });
    }
    return stream.response(init);
  }

  /**
   * Publishes one event to every subscriber of a channel, on every worker that shares the
   * bridge. The frame is encoded once for all of them.
   * @param channel The channel.
   * @param data The payload: a string as is, a `Uint8Array` as UTF-8 text, anything else as JSON.
   * @param options The event name (one of the declared ones) and id.
   * @returns A promise that resolves once every local subscriber has the frame queued. It
   * rejects with a `TypeError`/`RangeError` for an event that cannot be encoded or an undeclared
   * name (nothing is sent), and with {@linkcode BrokerClosedError} after `close()`.
   * @example Publish a typed event
   * ```ts
   * import { Broker } from "@flume/sse";
   *
   * import assert from "node:assert/strict";
   *
   * const broker = new Broker<{ price: number }>({ events: ["price"] });
   * const stream = broker.subscribe("ticker:ACME");
   * await broker.publish("ticker:ACME", 12.5, { event: "price" });
   * // An undeclared name is a compile error, and a TypeError at run time:
   * const untyped = broker as unknown as Broker;
   * await assert.rejects(untyped.publish("ticker:ACME", 1, { event: "volume" }), TypeError);
   * await broker.close();
   * assert.equal(await new Response(stream.readable).text(), ":\n\nevent: price\ndata: 12.5\n\n");
   * ```
   */
  publish<Name extends keyof Events & string>(
    channel: string,
    data: Events[Name],
    ...[options]: PublishRest<Events, Name>
  ): Promise<void> {
    try {
      checkChannel(channel);
      return this.#publish(channel, data, options);
    } catch (error) {
      return rejectWith(error);
    }
  }

  /**
   * Publishes one event to every client of the broker, once each, whatever its channels.
   * @param data The payload.
   * @param options The event name and id.
   * @returns A promise that resolves once every local client has the frame queued.
   * @example Tell everyone
   * ```ts
   * import { Broker } from "@flume/sse";
   *
   * import assert from "node:assert/strict";
   *
   * const broker = new Broker();
   * const a = broker.subscribe("room:1");
   * const b = broker.subscribe(["room:2", "room:3"]);
   * await broker.broadcast({ text: "maintenance at 22:00" }, { event: "announcement" });
   * await broker.close();
   * const frame = ':\n\nevent: announcement\ndata: {"text":"maintenance at 22:00"}\n\n';
   * assert.equal(await new Response(a.readable).text(), frame);
   * assert.equal(await new Response(b.readable).text(), frame); // once, though on two channels
   * ```
   */
  broadcast<Name extends keyof Events & string>(
    data: Events[Name],
    ...[options]: PublishRest<Events, Name>
  ): Promise<void> {
    try {
      return this.#publish(null, data, options);
    } catch (error) {
      return rejectWith(error);
    }
  }

  /**
   * Counts clients (not memberships: a client on three channels counts once).
   * @param channel Count only this channel's clients.
   * @returns The number of clients.
   * @example Is user 42 online?
   * ```ts
   * import { Broker } from "@flume/sse";
   *
   * import assert from "node:assert/strict";
   *
   * const broker = new Broker();
   * assert.equal(broker.clientCount("user:42") > 0, false);
   * broker.subscribe(["user:42", "global"]);
   * assert.equal(broker.clientCount("user:42") > 0, true);
   * assert.equal(broker.clientCount(), 1); // one client, though on two channels
   * await broker.close();
   * ```
   */
  clientCount(channel?: string): number {
    if (channel === undefined) return this.#clients.size;
    return this.#channels.get(channel)?.size ?? 0;
  }

  /**
   * A snapshot of the broker's counters (see {@linkcode formatMetrics} for Prometheus).
   * @returns The counters.
   * @example Log the number of clients
   * ```ts
   * import { Broker } from "@flume/sse";
   *
   * import assert from "node:assert/strict";
   *
   * const broker = new Broker();
   * broker.subscribe("news");
   * await broker.publish("news", "hello");
   * const metrics = broker.metrics();
   * assert.equal(metrics.clients, 1);
   * assert.equal(metrics.eventsDelivered, 1);
   * await broker.close();
   * ```
   */
  metrics(): BrokerMetrics {
    const history = historyStatsOf(this.#bridge);
    const bridge = bridgeStatsOf(this.#bridge);
    return {
      ...this.#metrics,
      clients: this.#clients.size,
      ...(history && {
        historyEvictions: history.evictions,
        historyExpirations: history.expirations,
        historyBytes: history.bytes,
      }),
      ...(bridge && {
        eventsHealed: bridge.eventsHealed,
        holesHealed: bridge.holesHealed,
        bridgeLosses: bridge.losses,
        messagesRefused: bridge.messagesRefused,
      }),
    };
  }

  /**
   * Ends every stream and the bridge: producers see their signals abort, later calls throw
   * {@linkcode BrokerClosedError}. Clients can first get a last event and a reconnection delay.
   * @param options A last event, and a `retry` (or a random one per client within a range).
   * @returns A promise that resolves when the bridge is closed; every stream has ended by then.
   * @example Drain on shutdown, spreading reconnects over 1 to 10 s
   * ```ts
   * import { Broker } from "@flume/sse";
   *
   * import assert from "node:assert/strict";
   *
   * const broker = new Broker();
   * const stream = broker.subscribe("news");
   * await broker.close({ event: { event: "bye", data: "restarting" }, retry: [1_000, 10_000] });
   * const text = await new Response(stream.readable).text();
   * assert.match(text, /^:\n\nretry: \d+\n\nevent: bye\ndata: restarting\n\n$/);
   * const retry = Number(/retry: (\d+)/.exec(text)![1]);
   * assert.ok(retry >= 1_000 && retry <= 10_000);
   * ```
   */
  async close(options: BrokerCloseOptions = {}): Promise<void> {
    if (this.#closed) return;
    const final = options.event === undefined ? undefined : encodeText(encodeEvent(options.event));
    const retry = options.retry;
    if (retry !== undefined) retryFor(retry); // validate before anything ends
    this.#closed = true;
    for (const subscriber of [...this.#clients]) {
      const stream = subscriber.stream;
      // Pinned: the last words reach a client whatever its buffer holds.
      if (retry !== undefined) {
        stream[offerFrame](encodeText(retryFrame(retryFor(retry))), "pinned");
      }
      if (final) stream[offerFrame](final, "pinned");
      stream.close();
    }
    try {
      await this.#bridge.close();
    } catch (error) {
      this.#onError(error);
    }
  }

  #publish(
    channel: string | null,
    data: unknown,
    options: BrokerPublishOptions | undefined,
  ): Promise<void> {
    if (this.#closed) throw brokerClosed("publish");
    const name = options?.event;
    this.#checkName(name);
    const id = options?.id === undefined ? undefined : checkPublishedId(options.id);
    const body = encodeBody(name, data);
    return this.#bridge.publish(
      id === undefined ? { channel, body } : { channel, body, id },
      this.#history,
    )
      .then(() => {});
  }

  #checkName(name: string | undefined): void {
    if (name === STREAM_RESET_EVENT) {
      throw new TypeError(
        `Cannot publish event: \`${STREAM_RESET_EVENT}\` is reserved for the gap signal`,
      );
    }
    const events = this.#events;
    if (events && !events.has(name ?? "message")) {
      throw new TypeError(
        `Cannot publish event: \`${name ?? "message"}\` is not a declared event name (declared: ${
          [...events].map((n) => `\`${n}\``).join(", ")
        })`,
      );
    }
  }

  #checkLimits(names: readonly string[]): void {
    if (this.#clients.size >= this.#maxClients) {
      this.#metrics.connectionsRejected++;
      throw new BrokerLimitError(
        `Cannot subscribe: the broker has its maximum of ${this.#maxClients} clients`,
        { reason: "clients", limit: this.#maxClients },
      );
    }
    for (const name of names) {
      if ((this.#channels.get(name)?.size ?? 0) >= this.#maxPerChannel) {
        this.#metrics.connectionsRejected++;
        throw new BrokerLimitError(
          `Cannot subscribe: channel \`${name}\` has its maximum of ${this.#maxPerChannel} clients`,
          { reason: "channel", limit: this.#maxPerChannel, channel: name },
        );
      }
    }
  }

  /**
   * Takes one token of the admission bucket, refilled by the time since the last call: a token
   * bucket needs no timer.
   */
  #admit(): void {
    const rate = this.#admissionRate;
    if (rate === Infinity) return;
    const now = clock.now();
    const tokens = Math.min(
      this.#admissionSize,
      this.#admissionTokens + (now - this.#admissionAt) * rate,
    );
    this.#admissionAt = now;
    if (tokens < 1_000) {
      this.#admissionTokens = tokens;
      this.#metrics.connectionsRejected++;
      throw new BrokerLimitError(
        `Cannot subscribe: the broker admits at most ${rate} new clients per second (burst ${
          this.#admissionSize / 1_000
        })`,
        { reason: "admission", limit: rate },
      );
    }
    this.#admissionTokens = tokens - 1_000;
  }

  /** [RFC 9110 §10.2.3] A `Retry-After` in whole seconds, from `retryAfter` to twice it. */
  #retryAfterJittered(): number {
    const min = this.#retryAfter;
    return min + Math.floor(Math.random() * (min + 1));
  }

  /** Tells the bridge that the first client joined a channel, or that its last one left. */
  #interest(name: string, on: boolean): void {
    const bridge = this.#bridge;
    if (bridge.interest === undefined) return;
    try {
      bridge.interest(name, on);
    } catch (error) {
      // Thrown on, it would leave the client half registered: reported, and the client stays.
      this.#onError(error);
    }
  }

  /** The one delivery path: every event, local or from another worker, in `seq` order. */
  #deliver = (event: BridgeEvent): void => {
    this.#metrics.eventsPublished++;
    if (this.#partitions && event.id !== undefined) {
      this.#deliverPartitioned(event, this.#partitions);
      return;
    }
    const frame = encodeStored(event);
    if (event.channel === null) {
      for (const subscriber of this.#clients) this.#offer(subscriber, event, frame);
    } else {
      const set = this.#channels.get(event.channel);
      if (set) { for (const subscriber of set) this.#offer(subscriber, event, frame); }
    }
  };

  /**
   * A partitioned bridge's event: each client's frame carries the bridge's position on the
   * client's partitions, so one frame is encoded per distinct partition set among the clients,
   * not per client. Clients on one channel (or on channels of one partition) share one.
   */
  #deliverPartitioned(event: BridgeEvent, partitions: BridgePartitions): void {
    const targets = event.channel === null ? this.#clients : this.#channels.get(event.channel);
    if (targets === undefined) return;
    // Consecutive clients mostly share a set: the last one is checked first, and the map of
    // frames only exists once a second set shows up.
    let lastKey: string | undefined;
    let lastFrame: Uint8Array | undefined;
    let frames: Map<string, Uint8Array> | undefined;
    for (const subscriber of targets) {
      const key = subscriber.partitionKey!;
      let frame = key === lastKey ? lastFrame : frames?.get(key);
      if (frame === undefined) {
        frame = encodeStoredAs(event, partitions.idFor(subscriber.partitions!));
        if (lastKey !== undefined) (frames ??= new Map([[lastKey, lastFrame!]])).set(key, frame);
      }
      lastKey = key;
      lastFrame = frame;
      this.#offer(subscriber, event, frame);
    }
  }

  /**
   * The bridge lost events for good (called in order with `#deliver`): every affected client gets
   * the gap signal on its open stream, in order, and stays connected. Ending streams instead
   * would turn one Redis fault into a reconnect storm of the whole fleet.
   */
  #lost = (gap: BridgeGap): void => {
    // A client that joined a read begun before the loss would miss this signal.
    for (const shared of this.#replays.values()) shared.open = false;
    if (this.#partitions) {
      this.#lostPartitioned(gap, this.#partitions);
      return;
    }
    const lost = gap.channels === null ? null : new Set(gap.channels);
    let affected: Iterable<Subscriber> = this.#clients;
    if (lost !== null) {
      const some = new Set<Subscriber>();
      for (const name of lost) {
        for (const subscriber of this.#channels.get(name) ?? []) some.add(subscriber);
      }
      affected = some;
    }
    const after = gap.after ?? null;
    const seq = gap.head?.seq ?? Infinity;
    // Clients with the same affected channels share one frame.
    const frames = new Map<string, Uint8Array>();
    for (const subscriber of affected) {
      const channels = lost === null
        ? subscriber.channels
        : subscriber.channels.filter((name) => lost.has(name));
      const key = JSON.stringify(channels);
      let frame = frames.get(key);
      if (frame === undefined) {
        frames.set(key, frame = this.#gapFrame(channels, after, gap.head?.id));
      }
      const resume = subscriber.resume;
      if (resume === undefined) {
        this.#pinGap(subscriber.stream, frame);
      } else {
        // Mid-resume: in order among the held live events; the replay decides if it still counts.
        resume.held.push({ seq, frame, gap: true });
        resume.heldBytes += frame.byteLength;
      }
    }
  };

  /**
   * A partitioned bridge's loss. In one partition: only the clients with a channel in it get the
   * signal (every client for the broadcast partition), naming their channels in it. Without a
   * partition, the loss may be anywhere: the clients of `channels` (all when null), at an unknown
   * position. Each signal's id is the bridge's position (past the loss) on the client's
   * partitions; clients with the same partitions and channels share one frame.
   */
  #lostPartitioned(gap: BridgeGap, partitions: BridgePartitions): void {
    const partition = gap.partition;
    const lost = gap.channels === null ? null : new Set(gap.channels);
    const broadcast = partition === partitions.count - 1;
    let affected: Iterable<Subscriber> = this.#clients;
    if (lost !== null && !broadcast) {
      const some = new Set<Subscriber>();
      for (const name of lost) {
        for (const subscriber of this.#channels.get(name) ?? []) some.add(subscriber);
      }
      affected = some;
    }
    const after = gap.after ?? null;
    // Unknown partition: the held signal cannot be placed against a replay, so it is kept.
    const seq = partition === undefined ? Infinity : gap.head?.seq ?? Infinity;
    const frames = new Map<string, Uint8Array>();
    for (const subscriber of affected) {
      if (lost === null && !broadcast && partition !== undefined) {
        if (!subscriber.partitions!.includes(partition)) continue;
      }
      const channels = partition === undefined
        ? (lost === null ? subscriber.channels : subscriber.channels.filter((n) => lost.has(n)))
        : broadcast
        ? subscriber.channels
        : subscriber.channels.filter((name) => partitions.of(name) === partition);
      if (channels.length === 0) continue; // no channel in the lost partition
      const key = subscriber.partitionKey + JSON.stringify(channels);
      let frame = frames.get(key);
      if (frame === undefined) {
        const id = partitions.idFor(subscriber.partitions!);
        frames.set(key, frame = this.#gapFrame(channels, after, id));
      }
      const resume = subscriber.resume;
      if (resume === undefined) {
        this.#pinGap(subscriber.stream, frame);
      } else {
        resume.held.push({ partition: partition ?? 0, seq, frame, gap: true });
        resume.heldBytes += frame.byteLength;
      }
    }
  }

  /** The gap signal's bytes; without the id when the bridge's id cannot go on the wire. */
  #gapFrame(channels: readonly string[], after: string | null, id: string | undefined): Uint8Array {
    try {
      return encodeText(gapSignal(channels, after, id));
    } catch (error) {
      this.#onError(error);
      return encodeText(gapSignal(channels, after, undefined));
    }
  }

  /** Queues a gap signal: pinned, as a hole that nobody is told of is the one thing not allowed. */
  #pinGap(stream: ControlledStream, frame: Uint8Array): void {
    if (stream[offerFrame](frame, "pinned") < 0) return;
    this.#metrics.gapSignals++;
    this.#metrics.bytesQueued += frame.byteLength;
  }

  #offer(subscriber: Subscriber, event: BridgeEvent, frame: Uint8Array): void {
    const resume = subscriber.resume;
    if (resume === undefined) {
      this.#queue(subscriber.stream, frame, this.#overflow);
      return;
    }
    // An event on these channels fell after the shared read began: a client that joined the read
    // now would miss it, so later clients get a read of their own.
    resume.shared.open = false;
    const held = resume.held;
    const bufferSize = this.#streamOptions.bufferSize ?? DEFAULT_BUFFER_SIZE;
    const bufferBytes = this.#streamOptions.bufferBytes ?? DEFAULT_BUFFER_BYTES;
    const full = (): boolean =>
      held.length > 0 && (held.length >= bufferSize || resume.heldBytes >= bufferBytes);
    if (full()) {
      if (this.#overflow === "disconnect") {
        this.#overflowHeld(subscriber, resume, frame);
        return;
      }
      // "drop-oldest": the oldest held events go, as the oldest queued frames would; a held gap
      // signal stays, as a pinned frame does.
      while (full()) {
        const oldest = held.findIndex((event) => !event.gap);
        if (oldest < 0) break;
        resume.heldBytes -= held.splice(oldest, 1)[0]!.frame.byteLength;
        this.#metrics.slowConsumers++;
      }
    }
    held.push(
      this.#partitions
        ? { partition: event.partition ?? 0, seq: event.seq, frame }
        : { seq: event.seq, frame },
    );
    resume.heldBytes += frame.byteLength;
  }

  /** A client's held events passed its bounds under "disconnect": it ends as any that overflows. */
  #overflowHeld(subscriber: Subscriber, resume: Resume, frame: Uint8Array): void {
    const stream = subscriber.stream;
    if (!stream[onRoom](resume.feed)) {
      // Its buffer is full of replay too: the frame ends it, with reason "overflow".
      this.#queue(stream, frame, "disconnect");
      return;
    }
    // Its buffer has room: the bridge has not answered yet, or the last pieces wait to be taken.
    // End it gracefully (reason "closed"): what is queued still goes out, and the client comes
    // back from the last id it got.
    this.#metrics.slowConsumers++;
    stream.close();
  }

  #queue(stream: ControlledStream, frame: Uint8Array, policy: OfferPolicy): void {
    const metrics = this.#metrics;
    const before = stream.closed;
    const dropped = stream[offerFrame](frame, policy);
    if (dropped >= 0) {
      metrics.eventsDelivered++;
      metrics.bytesQueued += frame.byteLength;
      metrics.slowConsumers += dropped;
    } else if (!before && stream[closeReason]?.reason === "overflow") {
      metrics.slowConsumers++;
    }
  }

  /**
   * Holds the client's live events, fetches what it missed (or joins an identical read in
   * progress), then sends both in order.
   */
  #replay(subscriber: Subscriber, lastEventId: string): void {
    const channels = subscriber.channels;
    const key = JSON.stringify(channels) + lastEventId;
    let shared = this.#replays.get(key);
    if (shared?.open) {
      this.#metrics.replaysShared++;
    } else {
      let read: Promise<BridgeReplay>;
      try {
        read = this.#bridge.replay(channels, lastEventId);
      } catch (error) {
        read = Promise.reject(error);
      }
      // A closed read with the same key lives on with its clients; new ones get this one.
      shared = new SharedReplay(read, channels, lastEventId, this.#onError);
      this.#replays.set(key, shared);
      this.#metrics.replaysInProgress++;
    }
    shared.join();
    const resume: Resume = {
      shared,
      key,
      next: 0,
      feed: () => this.#feed(subscriber),
      done: false,
      held: [],
      heldBytes: 0,
    };
    subscriber.resume = resume;
    void shared.ready.then(() => this.#sendReplay(subscriber, resume));
  }

  #sendReplay(subscriber: Subscriber, resume: Resume): void {
    if (subscriber.resume !== resume) return; // it left meanwhile
    const { shared } = resume;
    const metrics = this.#metrics;
    if (shared.gap) metrics.replayMisses++;
    else metrics.replayHits++;
    metrics.eventsDelivered += shared.events;
    this.#feed(subscriber);
  }

  /**
   * Queues replay pieces while the client's buffer has room, then waits for the client to take
   * them. [seam] Pinned: never discarded (that would be a hole), and counted against the
   * client's bounds, so one that stops reading pins about one buffer and meets `writeTimeout`.
   * After the last piece, once the buffer is empty, the held events that the replay did not carry.
   */
  #feed(subscriber: Subscriber): void {
    const resume = subscriber.resume;
    if (resume === undefined) return;
    const stream = subscriber.stream;
    while (stream[onRoom](resume.feed, resume.done)) {
      if (resume.done) {
        // The held events are within the client's bounds: an empty buffer takes them all.
        this.#release(subscriber);
        for (const event of heldAfter(resume.held, resume.shared.upTo)) {
          if (event.gap) this.#pinGap(stream, event.frame);
          else this.#queue(stream, event.frame, this.#overflow);
        }
        return;
      }
      const piece = resume.shared.take(resume.next);
      if (piece === undefined) {
        resume.done = true;
        continue;
      }
      resume.next++;
      stream[offerFrame](piece, "pinned");
      this.#metrics.bytesQueued += piece.byteLength;
    }
  }

  /** Ends the client's part in its replay; the last client of a shared read lets it go. */
  #release(subscriber: Subscriber): void {
    const resume = subscriber.resume;
    if (resume === undefined) return;
    subscriber.resume = undefined;
    const shared = resume.shared;
    if (shared.leave(resume.next) > 0) return;
    this.#metrics.replaysInProgress--;
    if (this.#replays.get(resume.key) === shared) this.#replays.delete(resume.key);
  }

  #remove(subscriber: Subscriber): void {
    if (!this.#clients.delete(subscriber)) return;
    this.#release(subscriber);
    for (const name of subscriber.channels) {
      const set = this.#channels.get(name);
      if (!set) continue;
      set.delete(subscriber);
      if (set.size === 0) {
        this.#channels.delete(name);
        this.#interest(name, false);
      }
    }
  }
}

/** A client's partitions: those of its channels and the broadcast one, sorted, distinct. */
function partitionsOf(names: readonly string[], partitions: BridgePartitions): readonly number[] {
  const own = new Set<number>([partitions.count - 1]);
  for (const name of names) own.add(partitions.of(name));
  return [...own].sort((a, b) => a - b);
}

/** The names of an `events` option, a list or a vocabulary object, each one a valid event name. */
function declaredNames(events: readonly unknown[] | object): ReadonlySet<string> {
  const names: unknown[] = Array.isArray(events) ? events : Object.keys(events);
  if (!Array.isArray(events)) {
    for (const [name, value] of Object.entries(events)) {
      if (value !== true) {
        throw new TypeError(
          `Cannot create Broker: every name in an \`events\` object must be set to \`true\`, got \`${name}: ${
            String(value)
          }\``,
        );
      }
    }
  }
  for (const name of names) {
    if (typeof name !== "string") {
      throw new TypeError("Cannot create Broker: every name in `events` must be a string");
    }
    encodeEvent({ event: name });
  }
  return new Set(names as string[]);
}

/** A publish after close() must not crash a process that fired it and forgot it. */
function rejectWith(error: unknown): Promise<never> {
  return error instanceof BrokerClosedError ? quietRejection(error) : Promise.reject(error);
}

function brokerClosed(action: string): BrokerClosedError {
  return new BrokerClosedError(`Cannot ${action}: the broker is closed`);
}

/** An id a client can resume from: one the wire carries, within the length a lookup accepts. */
function checkPublishedId(id: string | number): string {
  const text = checkId(id);
  if (text.length > MAX_ID_LENGTH) {
    throw new RangeError(
      `Cannot publish event: \`id\` must be at most ${MAX_ID_LENGTH} characters so that clients can resume from it, got ${text.length}`,
    );
  }
  return text;
}

function normalizeChannels(channels: string | readonly string[]): readonly string[] {
  if (typeof channels === "string") {
    checkChannel(channels);
    return [channels];
  }
  if (!Array.isArray(channels) || channels.length === 0) {
    throw new TypeError(
      "Cannot subscribe: `channels` must be a channel name or a non-empty array of them",
    );
  }
  for (const channel of channels) checkChannel(channel);
  return [...new Set(channels)];
}

/**
 * The longest channel name, in UTF-16 code units: a name is a key of every map that holds the
 * channel (and of the Redis keys of its history), so a client that picks names cannot make each
 * entry cost more than this.
 */
const MAX_CHANNEL_LENGTH = 1024;

function checkChannel(channel: unknown): asserts channel is string {
  if (typeof channel !== "string" || channel === "") {
    throw new TypeError(
      `Cannot use channel: a channel name must be a non-empty string, got \`${
        typeof channel === "string" ? '""' : String(channel)
      }\``,
    );
  }
  if (channel.length > MAX_CHANNEL_LENGTH) {
    throw new RangeError(
      `Cannot use channel: a channel name must be at most ${MAX_CHANNEL_LENGTH} characters, got ${channel.length}`,
    );
  }
}

function retryFor(retry: number | readonly [number, number]): number {
  const [min, max] = typeof retry === "number" ? [retry, retry] : retry;
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || min < 0 || max < min) {
    throw new RangeError(
      `Cannot close broker: \`retry\` must be a non-negative integer or a [min, max] range of them, got \`${
        String(retry)
      }\``,
    );
  }
  return min + Math.floor(Math.random() * (max - min + 1));
}
