import { clock, type TimerHandle } from "../_clock.ts";
import { EventTooLargeError, type ParsedEvent, Parser } from "../_parser.ts";
import { abortableDelay } from "./_abortable_delay.ts";
import { type Backoff, backoffDelay, clampRetry, MAX_TIMEOUT } from "./_backoff.ts";
import { ConnectError } from "./connect_error.ts";

/**
 * How {@linkcode connect} spaces its reconnects.
 *
 * With `{ jitter: 0, resetAfter: 0 }` (and a server that answers) it reconnects exactly as
 * `EventSource` does: after the reconnection time, every time.
 */
export interface BackoffOptions {
  /**
   * The reconnection time in ms until the server sends a `retry:` field: how long the first
   * reconnect after a lost connection waits (on average, see `jitter`). Repeated failures grow
   * the wait from this value when the server's `retry:` is lower.
   * @default {3_000}
   */
  initial?: number;
  /**
   * The longest wait in ms that repeated failures grow to. A server's `retry:` above it still
   * wins, up to one hour: a larger `retry:` counts as one hour.
   * @default {30_000}
   */
  max?: number;
  /**
   * How much each further failure in a row multiplies the wait (1 keeps it constant).
   * @default {2}
   */
  factor?: number;
  /**
   * How far, as a share of the wait (0 to 1), every wait is spread at random either way: the
   * wait is drawn evenly from `wait × (1 − jitter)` to `wait × (1 + jitter)`, so its mean stays
   * the wait. The default spreads clients cut off together over twice the reconnection time
   * instead of bringing them all back in the same millisecond; 0 waits exactly.
   * @default {1}
   */
  jitter?: number;
  /**
   * How long in ms a connection must stay open to end a failure streak. A connection that ends
   * sooner, even one that carried events, counts as a failure, so a server or proxy that accepts
   * and drops every connection gets ever longer waits instead of a reconnect loop. 0 counts every
   * accepted response as a success.
   * @default {5_000}
   */
  resetAfter?: number;
}

/** What {@linkcode ConnectOptions.onRetry} is told before each reconnect. */
export interface RetryInfo {
  /**
   * 1 for the first reconnect after a connection that stayed open `backoff.resetAfter` ms (or
   * the first failure), then 2, 3… while connections fail or end sooner.
   */
  attempt: number;
  /** The wait in ms before the reconnect, jitter included. */
  delay: number;
  /**
   * Why the connection was lost: a network error, a `TimeoutError` `DOMException` from
   * `inactivityTimeout`, or `undefined` when the server ended the stream cleanly.
   */
  error: unknown;
}

/**
 * Where a connection stands: `"connecting"` while a request is on its way or a reconnect is
 * pending, `"open"` while a stream is being read, `"closed"` for good.
 */
export type ConnectionState = "connecting" | "open" | "closed";

/**
 * Options of {@linkcode connect}. Any other `RequestInit` field (`method`, `body`, `credentials`,
 * `mode`, `referrerPolicy`, …) is passed on to every request.
 */
export interface ConnectOptions extends Omit<RequestInit, "headers" | "signal" | "window"> {
  /**
   * Headers of every request, or a function that returns them, called before every connect and
   * reconnect (so an expired token can be refreshed). A throw or rejection ends the iteration
   * with that error. `Accept: text/event-stream` is added unless given; `Last-Event-ID` is set
   * by the client.
   * @default {undefined}
   */
  headers?: HeadersInit | (() => HeadersInit | Promise<HeadersInit>) | undefined;
  /**
   * The `fetch` to use (a wrapper that logs, signs or mocks requests).
   * @default {globalThis.fetch}
   */
  fetch?: ((input: Request, init?: RequestInit) => Promise<Response>) | undefined;
  /**
   * Aborting it ends the iteration at once, as `close()` does: it completes, it does not throw.
   * @default {undefined}
   */
  signal?: AbortSignal | undefined;
  /**
   * The last event id from an earlier session, sent as `Last-Event-ID` on the first request so
   * the server can resume.
   * @default {""}
   */
  lastEventId?: string | undefined;
  /**
   * How reconnects are spaced.
   * @default {{ initial: 3_000, max: 30_000, factor: 2, jitter: 1, resetAfter: 5_000 }}
   */
  backoff?: BackoffOptions | undefined;
  /**
   * Milliseconds without a single byte (not even a heartbeat comment) after which the
   * connection counts as dead and is replaced: a half-open TCP connection otherwise waits
   * forever. Set it above the server's heartbeat interval; `null` turns it off, as in
   * `EventSource`.
   * @default {null}
   */
  inactivityTimeout?: number | null | undefined;
  /**
   * The most UTF-16 code units one event (its data and an unfinished line) may hold. A server
   * that sends more ends the iteration with an `EventTooLargeError` instead of making the
   * client buffer without bound; there is no reconnect, as the server would send it again.
   * @default {16_777_216}
   */
  maxEventSize?: number | undefined;
  /**
   * Called when a response is accepted (2xx, `text/event-stream`), before its first event is
   * read. A throw or rejection ends the iteration with that error.
   * @default {undefined}
   */
  onOpen?: ((response: Response) => void | Promise<void>) | undefined;
  /**
   * Called with every error the connection meets, before it reconnects or before the iteration
   * throws it: a network error, an inactivity `TimeoutError`, a `ConnectError`, an
   * `EventTooLargeError`. A clean end of stream is not an error.
   * @default {undefined}
   */
  onError?: ((error: unknown) => void) | undefined;
  /**
   * Called before each reconnect with the attempt number, the wait and the reason.
   * @default {undefined}
   */
  onRetry?: ((info: RetryInfo) => void) | undefined;
}

/** A running connection: iterate it once with `for await`. */
export interface Connection extends AsyncIterable<ParsedEvent> {
  /** Ends the connection at once, also during a reconnect wait; the iteration completes. */
  close(): void;
  /**
   * The last event id as of the last event the iteration gave out (or of the last id-only
   * block read after it): what the next `Last-Event-ID` header carries.
   */
  readonly lastEventId: string;
  /** Where the connection stands. */
  readonly state: ConnectionState;
}

/**
 * Connects to a Server-Sent Events endpoint with `fetch` and yields its events as an
 * `EventSource` would dispatch them, reconnecting when the connection drops.
 *
 * It follows the HTML "EventSource" processing model, with the things `EventSource` cannot do:
 * custom headers (also a function called on every reconnect), any method and body, a
 * user-supplied `fetch`, backoff with jitter, an inactivity timeout, and hooks.
 *
 * - The connection starts when iteration starts; a `Connection` is iterated once.
 * - A network error (also on the first connect), a stream that ends (also cleanly), or an
 *   `inactivityTimeout` reconnects. The `Last-Event-ID` header carries the last id seen,
 *   encoded as UTF-8 as browsers do, and only when it is not empty.
 * - A 204 response ends the iteration normally, for good.
 * - A 503 or 429 with a `Retry-After` header (a full server, a deploy, an admission rate) is
 *   a wait, not a refusal: the next connect comes after at least that long (capped at an hour,
 *   like `retry:`), and `onError` gets a {@linkcode ConnectError}. `EventSource` gives up for
 *   good on any status but 200.
 * - Any other status outside 200–299, or a content type other than `text/event-stream`, makes
 *   the iteration throw a {@linkcode ConnectError} with no reconnect. (`EventSource` accepts
 *   only 200; any 2xx is accepted here.)
 * - `close()`, the `signal`, or leaving the `for await` loop ends it at once: the body is
 *   cancelled, timers cleared, listeners removed.
 *
 * Reconnects are kinder to servers than `EventSource`'s, which waits exactly the reconnection
 * time after every drop, whatever happens:
 * - Every wait is jittered, the first one included: spread evenly over 0 to twice the
 *   reconnection time (the server's `retry:`, or `backoff.initial`). When a server restarts and
 *   drops thousands of clients at once, they come back spread over that window at the rate
 *   the server chose on average, not all in the same millisecond.
 * - A `retry:` above one hour counts as one hour, and no wait exceeds the largest timer the
 *   runtime keeps: a huge `retry:` can never overflow a timer into a 1 ms reconnect loop.
 * - A connection that fails, or ends less than `backoff.resetAfter` ms after it opened (even
 *   with events), counts as a failure: failures in a row grow the wait by `backoff.factor`
 *   (from the reconnection time, or `backoff.initial` if longer) up to `backoff.max`. A server
 *   that sends `retry: 0` and closes, or a proxy that drops every stream, gets a few requests,
 *   then one every few seconds, not hundreds per second.
 *
 * `{ backoff: { jitter: 0, resetAfter: 0 } }` gives `EventSource`'s schedule back.
 *
 * Runtime quirk: Bun's `fetch` cuts a response idle for 5 minutes; every request passes Bun's
 * `timeout: false` extension to turn that off (other runtimes ignore it), and
 * `inactivityTimeout` is the portable replacement.
 *
 * @see {@link https://html.spec.whatwg.org/multipage/server-sent-events.html#the-eventsource-interface}
 *
 * @param input The endpoint URL, or a `Request` to take the method, headers and body from.
 * @param options Headers, `fetch`, reconnect policy, timeouts, hooks and `RequestInit` fields.
 * @returns The connection: an async iterable of events with `close()`, `lastEventId` and
 * `state`.
 * @throws {TypeError} `input` is not a valid URL or `Request`.
 * @throws {RangeError} An option is out of range.
 *
 * @example Read an authenticated stream and resume where it stopped
 * This one is not run: it needs a live server, a token source and `localStorage`.
 * ```ts ignore
 * import { connect } from "@flume/sse/client";
 *
 * const events = connect("https://example.com/events", {
 *   headers: async () => ({ Authorization: `Bearer ${await getToken()}` }),
 *   lastEventId: localStorage.getItem("lastEventId") ?? "",
 *   inactivityTimeout: 45_000,
 *   onRetry: ({ attempt, delay }) => console.log(`reconnect #${attempt} in ${delay} ms`),
 * });
 * for await (const event of events) {
 *   console.log(event.type, event.data);
 *   localStorage.setItem("lastEventId", events.lastEventId);
 * }
 * declare function getToken(): Promise<string>;
 * ```
 *
 * @example Stop after the first event
 * ```ts
 * import { connect } from "@flume/sse/client";
 * import assert from "node:assert/strict";
 *
 * const fetchStub = () =>
 *   Promise.resolve(
 *     new Response("data: hello\n\n", { headers: { "Content-Type": "text/event-stream" } }),
 *   );
 * const connection = connect("https://example.com/events", { fetch: fetchStub });
 * const seen = [];
 * for await (const event of connection) {
 *   seen.push(event);
 *   break; // cancels the body; no reconnect and no timer is left behind
 * }
 * assert.deepEqual(seen, [{ type: "message", data: "hello", lastEventId: "" }]);
 * assert.equal(connection.state, "closed");
 * ```
 *
 * @example Resume with Last-Event-ID after the server ends the stream
 * ```ts
 * import { connect } from "@flume/sse/client";
 * import assert from "node:assert/strict";
 *
 * const sent: (string | null)[] = [];
 * const fetchStub = (request: Request) => {
 *   sent.push(request.headers.get("Last-Event-ID"));
 *   const body = sent.length === 1 ? "retry: 10\nid: 1\ndata: one\n\n" : "id: 2\ndata: two\n\n";
 *   return Promise.resolve(new Response(body, { headers: { "Content-Type": "text/event-stream" } }));
 * };
 * const data = [];
 * for await (const event of connect("https://example.com/events", { fetch: fetchStub })) {
 *   data.push(event.data);
 *   if (data.length === 2) break;
 * }
 * assert.deepEqual(data, ["one", "two"]);
 * assert.deepEqual(sent, [null, "1"]); // the reconnect, 0 to 20 ms later, resumed after id 1
 * ```
 */
export function connect(input: string | URL | Request, options: ConnectOptions = {}): Connection {
  return new ClientConnection(input, options);
}

/** Bun's per-request switch for its 5-minute fetch idle timeout; other runtimes ignore it. */
const NO_RUNTIME_IDLE_TIMEOUT = { timeout: false } as RequestInit;

/** A connection that calls for a reconnect: why it ended, and how long it was open. */
interface Lost {
  /** The error, or `undefined` for a clean end of stream. */
  error: unknown;
  /** Milliseconds from the accepted response to the end; 0 when none was accepted. */
  openFor: number;
  /** The least wait the server asked for (a 503 or 429 with `Retry-After`), in ms. */
  retryAfter?: number;
}

/** What one connect step gives: a stream to read, a lost attempt, or the end for good. */
type Opened = { response: Response } | { lost: Lost } | "done";

class ClientConnection implements Connection {
  #request: Request;
  #options: ConnectOptions;
  #fetch: (input: Request, init?: RequestInit) => Promise<Response>;
  #backoff: Backoff;
  #inactivityTimeout: number | null;
  #maxEventSize: number;
  /** Aborted by `close()`, the signal, or the end of the iteration. */
  #closer = new AbortController();
  /** The request or stream being read now; aborting it drops only this connection. */
  #attempt: AbortController | undefined;
  #state: ConnectionState = "connecting";
  #iterated = false;
  /** What the consumer has seen. */
  #lastEventId: string;
  /** What the next `Last-Event-ID` header carries: the parser's last event id. */
  #resumeId: string;
  /** [spec] The reconnection time: `backoff.initial`, then the server's (clamped) `retry:`. */
  #reconnectionTime: number;
  /** Connections in a row that failed or ended within `backoff.resetAfter`. */
  #failures = 0;

  constructor(input: string | URL | Request, options: ConnectOptions) {
    const {
      headers: _headers,
      fetch: fetchFn,
      signal: _signal,
      lastEventId,
      backoff,
      inactivityTimeout,
      maxEventSize,
      onOpen: _onOpen,
      onError: _onError,
      onRetry: _onRetry,
      ...init
    } = options;
    this.#options = options;
    this.#fetch = fetchFn ?? ((request, init) => fetch(request, init));
    this.#backoff = {
      initial: checkNumber("backoff.initial", backoff?.initial, 3_000, 0, MAX_TIMEOUT),
      max: checkNumber("backoff.max", backoff?.max, 30_000, 0, MAX_TIMEOUT),
      factor: checkNumber("backoff.factor", backoff?.factor, 2, 1, 1_000),
      jitter: checkNumber("backoff.jitter", backoff?.jitter, 1, 0, 1),
      resetAfter: checkNumber("backoff.resetAfter", backoff?.resetAfter, 5_000, 0, MAX_TIMEOUT),
    };
    this.#inactivityTimeout = inactivityTimeout === undefined || inactivityTimeout === null
      ? null
      : checkNumber("inactivityTimeout", inactivityTimeout, 0, 1, MAX_TIMEOUT);
    this.#maxEventSize = checkNumber("maxEventSize", maxEventSize, 16_777_216, 1, Infinity);
    // [spec] EventSource fetches with cache mode "no-store".
    this.#request = new Request(input, { cache: "no-store", ...init });
    this.#lastEventId = lastEventId ?? "";
    this.#resumeId = this.#lastEventId;
    this.#reconnectionTime = this.#backoff.initial;
  }

  get lastEventId(): string {
    return this.#lastEventId;
  }

  get state(): ConnectionState {
    return this.#state;
  }

  close(): void {
    this.#state = "closed";
    this.#closer.abort();
  }

  [Symbol.asyncIterator](): AsyncIterator<ParsedEvent> {
    if (this.#iterated) {
      throw new TypeError("Cannot iterate connection: it is already being iterated");
    }
    this.#iterated = true;
    return this.#run();
  }

  /** The loop: connect, read, decide how long to wait, wait; until closed or done for good. */
  async *#run(): AsyncGenerator<ParsedEvent, void, undefined> {
    const closed = this.#closer.signal;
    const stopListening = this.#listenForClose();
    try {
      while (!closed.aborted) {
        const attempt = new AbortController();
        this.#attempt = attempt;
        const opened = await this.#connect(attempt);
        if (opened === "done") return;
        const lost = "lost" in opened ? opened.lost : yield* this.#read(opened.response, attempt);
        if (closed.aborted) return;
        const delay = this.#decideReconnect(lost);
        if (!(await abortableDelay(delay, closed))) return;
      }
    } finally {
      this.#attempt = undefined;
      stopListening();
      this.close();
    }
  }

  /**
   * Ties the external signal to `close()`, and `close()` to the attempt in flight.
   * @returns A function that removes both listeners.
   */
  #listenForClose(): () => void {
    const closed = this.#closer.signal;
    const external = this.#options.signal;
    const onExternalAbort = (): void => this.close();
    const onClose = (): void => this.#attempt?.abort(closed.reason);
    if (external?.aborted) this.close();
    external?.addEventListener("abort", onExternalAbort, { once: true });
    closed.addEventListener("abort", onClose, { once: true });
    return () => {
      external?.removeEventListener("abort", onExternalAbort);
      closed.removeEventListener("abort", onClose);
    };
  }

  /**
   * Step 1: sends the request and vets the response. A 204 or `close()` is the end for good; a
   * refused response throws; a network error is a lost attempt.
   */
  async #connect(attempt: AbortController): Promise<Opened> {
    this.#state = "connecting";
    const request = await this.#buildRequest(attempt.signal);
    if (this.#closer.signal.aborted) return "done";
    let response: Response;
    try {
      response = await this.#open(request, attempt);
    } catch (error) {
      return this.#closer.signal.aborted ? "done" : { lost: { error, openFor: 0 } };
    }
    if (response.status === 204) {
      // [spec] "No Content" tells the client to stop reconnecting.
      response.body?.cancel().catch(ignore);
      return "done";
    }
    const wait = retryAfterOf(response);
    if (wait !== undefined) {
      // "Come back later" (a full server, a deploy, an admission rate): a wait, not a refusal.
      if (isStream(response.body)) response.body.cancel().catch(ignore);
      const error = new ConnectError(
        `Cannot connect to event stream: the server is busy (status ${response.status}), retry after ${wait} ms`,
        { response },
      );
      return { lost: { error, openFor: 0, retryAfter: wait } };
    }
    const refusal = checkResponse(response) ?? checkBody(response);
    if (refusal !== undefined) {
      if (isStream(response.body)) response.body.cancel().catch(ignore);
      this.#options.onError?.(refusal);
      throw refusal;
    }
    return { response };
  }

  /**
   * Step 2: reads an accepted stream and yields its events until it ends or fails.
   * @returns How it was lost; `undefined` when the connection was closed meanwhile.
   */
  async *#read(
    response: Response,
    attempt: AbortController,
  ): AsyncGenerator<ParsedEvent, Lost | undefined, undefined> {
    const closed = this.#closer.signal;
    const openedAt = clock.now();
    const lost = (error: unknown): Lost => ({ error, openFor: clock.now() - openedAt });
    const reader = response.body?.getReader();
    const onAttemptAbort = (): void => {
      reader?.cancel(attempt.signal.reason).catch(ignore);
    };
    attempt.signal.addEventListener("abort", onAttemptAbort, { once: true });
    try {
      this.#state = "open";
      await this.#options.onOpen?.(response);
      if (closed.aborted) return undefined;
      // A 2xx without a body is an empty stream.
      if (reader === undefined) return lost(undefined);
      const queue: ParsedEvent[] = [];
      const parser = new Parser({
        onEvent: (event) => queue.push(event),
        onRetry: (ms) => this.#reconnectionTime = clampRetry(ms),
        maxEventSize: this.#maxEventSize,
      }, this.#resumeId);
      // The parse engine drops the leading BOM itself, so the decoder must keep it.
      const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
      while (true) {
        let chunk: Uint8Array | undefined;
        try {
          chunk = await this.#readChunk(reader, attempt);
        } catch (cause) {
          if (closed.aborted) return undefined;
          return lost(attempt.signal.aborted ? attempt.signal.reason : cause);
        }
        if (chunk === undefined) {
          this.#parse(parser, decoder.decode(), true);
          return lost(undefined);
        }
        this.#parse(parser, decoder.decode(chunk, { stream: true }), false);
        for (const event of queue) {
          this.#lastEventId = event.lastEventId;
          yield event;
          // [spec] Nothing is dispatched after close(), not even events already parsed.
          if (closed.aborted) return undefined;
        }
        queue.length = 0;
        this.#lastEventId = this.#resumeId;
      }
    } finally {
      attempt.signal.removeEventListener("abort", onAttemptAbort);
      reader?.cancel().catch(ignore);
    }
  }

  /** Feeds text to the parser and keeps the resume id in step; reports an event too large. */
  #parse(parser: Parser, text: string, last: boolean): void {
    try {
      parser.feed(text);
      if (last) parser.end();
    } catch (cause) {
      if (cause instanceof EventTooLargeError) this.#options.onError?.(cause);
      throw cause;
    } finally {
      this.#resumeId = parser.lastEventId;
    }
  }

  /**
   * Step 3: reports the loss and works out the wait. A connection that stayed open
   * `backoff.resetAfter` ms ends the failure streak; any other loss extends it.
   * @returns The wait in ms before the next connect.
   */
  #decideReconnect(lost: Lost | undefined): number {
    const { error, openFor, retryAfter = 0 } = lost ?? { error: undefined, openFor: 0 };
    this.#state = "connecting";
    if (error !== undefined) this.#options.onError?.(error);
    const healthy = openFor > 0 && openFor >= this.#backoff.resetAfter;
    this.#failures = healthy ? 1 : this.#failures + 1;
    const delay = Math.max(
      backoffDelay(this.#failures, this.#reconnectionTime, this.#backoff),
      retryAfter,
    );
    this.#options.onRetry?.({ attempt: this.#failures, delay, error });
    return delay;
  }

  async #buildRequest(signal: AbortSignal): Promise<Request> {
    const given = this.#options.headers;
    const extra = typeof given === "function" ? await given() : given;
    const headers = new Headers(this.#request.headers);
    if (extra !== undefined) new Headers(extra).forEach((value, name) => headers.set(name, value));
    if (!headers.has("accept")) headers.set("accept", "text/event-stream");
    if (SERVER_RUNTIME && !headers.has("cache-control")) headers.set("cache-control", "no-cache");
    if (this.#resumeId !== "") {
      const value = lastEventIdHeader(this.#resumeId);
      if (value !== undefined) headers.set("last-event-id", value);
    }
    // A clone keeps the template's body unread for the next reconnect.
    return new Request(this.#request.clone(), { headers, signal });
  }

  /**
   * Fetches within the inactivity timeout; settles when the attempt aborts, even if a custom
   * `fetch` ignores the signal.
   */
  #open(request: Request, attempt: AbortController): Promise<Response> {
    const signal = attempt.signal;
    return new Promise((resolve, reject) => {
      const timer = this.#armTimeout(attempt);
      const onAbort = (): void => {
        clock.clearTimeout(timer);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#fetch(request, NO_RUNTIME_IDLE_TIMEOUT).then((response) => {
        clock.clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        // A response that comes after the abort is not read: let its connection go.
        if (signal.aborted) response.body?.cancel().catch(ignore);
        else resolve(response);
      }, (error) => {
        clock.clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        reject(signal.aborted ? signal.reason : error);
      });
    });
  }

  /** Starts the inactivity clock of an attempt, if there is one. */
  #armTimeout(attempt: AbortController): TimerHandle | undefined {
    const ms = this.#inactivityTimeout;
    if (ms === null) return undefined;
    return clock.setTimeout(timeOut, ms, { attempt, ms });
  }

  /** Reads one chunk; `undefined` at the end of the stream. */
  async #readChunk(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    attempt: AbortController,
  ): Promise<Uint8Array | undefined> {
    // The clock runs only while waiting for bytes: a slow consumer is not a dead connection.
    const timer = this.#armTimeout(attempt);
    try {
      const { done, value } = await reader.read();
      // A custom fetch may ignore the signal: the reader was cancelled, so done is not the end.
      if (attempt.signal.aborted) throw attempt.signal.reason;
      return done ? undefined : value;
    } finally {
      clock.clearTimeout(timer);
    }
  }
}

/** Ends an attempt that went `ms` without a byte. */
function timeOut({ attempt, ms }: { attempt: AbortController; ms: number }): void {
  attempt.abort(new DOMException(`Cannot read event stream: no data for ${ms} ms`, "TimeoutError"));
}

/**
 * The wait a 503 or 429 asks for with `Retry-After` (seconds, or an HTTP date), in ms, capped like
 * `retry:`; undefined for any other response, or a header that says nothing usable.
 */
function retryAfterOf(response: Response): number | undefined {
  if (response.status !== 503 && response.status !== 429) return undefined;
  const value = response.headers.get("retry-after")?.trim();
  if (!value) return undefined;
  const ms = /^\d+$/.test(value) ? Number(value) * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? clampRetry(Math.max(0, ms)) : undefined;
}

/** Why a response cannot be read as an event stream, if it cannot. */
function checkResponse(response: Response): ConnectError | undefined {
  if (response.status < 200 || response.status > 299) {
    return new ConnectError(
      `Cannot connect to event stream: status must be 2xx, got \`${response.status}\``,
      { response },
    );
  }
  const contentType = response.headers.get("content-type");
  const essence = contentType?.split(";", 1)[0]?.trim().toLowerCase();
  if (essence !== "text/event-stream") {
    return new ConnectError(
      `Cannot connect to event stream: content type must be \`text/event-stream\`, got \`${
        contentType ?? ""
      }\``,
      { response },
    );
  }
  return undefined;
}

const utf8 = new TextEncoder();

/**
 * [spec] The id "encoded as UTF-8": `Headers` hold byte strings, so each UTF-8 byte becomes one
 * char and the wire carries the bytes a browser sends. An id with a control character (other
 * than tab) cannot be sent: some runtimes refuse the whole request, so the header is left out.
 */
function lastEventIdHeader(id: string): string | undefined {
  const bytes = utf8.encode(id);
  let value = "";
  for (const byte of bytes) {
    if ((byte < 0x20 && byte !== 0x09) || byte === 0x7f) return undefined;
    value += String.fromCharCode(byte);
  }
  return value;
}

function checkNumber(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value >= min && value <= max)) {
    throw new RangeError(
      `Cannot connect: \`${name}\` must be a number from ${min} to ${max}, got \`${
        String(value)
      }\``,
    );
  }
  return value;
}

function ignore(): void {}

/**
 * Whether this is a server runtime (Deno, Bun, Node, workerd) rather than a browser.
 *
 * [spec] EventSource fetches with cache mode "no-store", and a browser turns that into a
 * `Cache-Control: no-cache` request header, so no cache or proxy answers with a stored stream.
 * Server runtimes accept the mode but send no such header, so the client adds it there itself;
 * not in a browser, where the header would also make a cross-origin request need a preflight.
 */
const SERVER_RUNTIME: boolean = (() => {
  const g = globalThis as {
    Deno?: unknown;
    Bun?: unknown;
    process?: { versions?: { node?: unknown } };
    navigator?: { userAgent?: unknown };
  };
  return g.Deno !== undefined || g.Bun !== undefined ||
    typeof g.process?.versions?.node === "string" ||
    g.navigator?.userAgent === "Cloudflare-Workers";
})();

function isStream(body: unknown): body is ReadableStream<Uint8Array> {
  return typeof (body as { getReader?: unknown } | null)?.getReader === "function";
}

/**
 * A body that is neither `null` nor a `ReadableStream` (from a custom `fetch` that builds its
 * own response object) cannot be read as a stream: a `TypeError`, reported like a refusal.
 */
function checkBody(response: Response): TypeError | undefined {
  const body: unknown = response.body;
  if (body === null || body === undefined || isStream(body)) return undefined;
  const kind = typeof body === "object" ? body.constructor?.name ?? "object" : typeof body;
  return new TypeError(
    `Cannot read event stream: the response body is not a ReadableStream, got \`${kind}\``,
  );
}
