import { EventTooLargeError, type ParsedEvent, Parser } from "../_parser.ts";
import { abortableDelay } from "./_abortable_delay.ts";
import { type Backoff, backoffDelay } from "./_backoff.ts";
import { ConnectError } from "./connect_error.ts";

/** How {@linkcode connect} spaces its reconnects. */
export interface BackoffOptions {
  /**
   * The reconnection time in ms until the server sends a `retry:` field: how long the first
   * reconnect after a lost connection waits.
   * @default {3_000}
   */
  initial?: number;
  /**
   * The longest wait in ms that repeated failures grow to. A server's `retry:` above it still
   * wins: the reconnection time is a floor.
   * @default {30_000}
   */
  max?: number;
  /**
   * How much each further failure in a row multiplies the wait (1 keeps it constant).
   * @default {2}
   */
  factor?: number;
  /**
   * The largest share of a grown wait that is taken off at random (0 to 1), so that clients cut
   * off together do not all come back at the same moment.
   * @default {0.5}
   */
  jitter?: number;
}

/** What {@linkcode ConnectOptions.onRetry} is told before each reconnect. */
export interface RetryInfo {
  /** 1 for the first reconnect after a working connection, then 2, 3… while attempts fail. */
  attempt: number;
  /** The wait in ms before the reconnect. */
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
  headers?: HeadersInit | (() => HeadersInit | Promise<HeadersInit>);
  /**
   * The `fetch` to use (a wrapper that logs, signs or mocks requests).
   * @default {globalThis.fetch}
   */
  fetch?: (input: Request, init?: RequestInit) => Promise<Response>;
  /**
   * Aborting it ends the iteration at once, as `close()` does: it completes, it does not throw.
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The last event id from an earlier session, sent as `Last-Event-ID` on the first request so
   * the server can resume.
   * @default {""}
   */
  lastEventId?: string;
  /** How reconnects are spaced. */
  backoff?: BackoffOptions;
  /**
   * Milliseconds without a single byte (not even a heartbeat comment) after which the
   * connection counts as dead and is replaced: a half-open TCP connection otherwise waits
   * forever. Set it above the server's heartbeat interval; `null` turns it off, as in
   * `EventSource`.
   * @default {null}
   */
  inactivityTimeout?: number | null;
  /**
   * The most UTF-16 code units one event (its data and an unfinished line) may hold. A server
   * that sends more ends the iteration with an `EventTooLargeError` instead of making the
   * client buffer without bound; there is no reconnect, as the server would send it again.
   * @default {16_777_216}
   */
  maxEventSize?: number;
  /**
   * Called when a response is accepted (2xx, `text/event-stream`), before its first event is
   * read. A throw or rejection ends the iteration with that error.
   * @default {undefined}
   */
  onOpen?(response: Response): void | Promise<void>;
  /**
   * Called with every error the connection meets, before it reconnects or before the iteration
   * throws it: a network error, an inactivity `TimeoutError`, a `ConnectError`, an
   * `EventTooLargeError`. A clean end of stream is not an error.
   * @default {undefined}
   */
  onError?(error: unknown): void;
  /**
   * Called before each reconnect with the attempt number, the wait and the reason.
   * @default {undefined}
   */
  onRetry?(info: RetryInfo): void;
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

const MAX_TIMEOUT = 2_147_483_647;

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
 *   `inactivityTimeout` reconnects after the reconnection time: `backoff.initial`, then the
 *   server's `retry:`. Failures in a row (a connection that brings no byte) grow the wait by
 *   `backoff.factor` up to `backoff.max`, with jitter. The `Last-Event-ID` header carries the
 *   last id seen, encoded as UTF-8 as browsers do, and only when it is not empty.
 * - A 204 response ends the iteration normally, for good.
 * - A status outside 200–299, or a content type other than `text/event-stream`, makes the
 *   iteration throw a {@linkcode ConnectError} with no reconnect. (`EventSource` accepts only
 *   200; any 2xx is accepted here.)
 * - `close()`, the `signal`, or leaving the `for await` loop ends it at once: the body is
 *   cancelled, timers cleared, listeners removed.
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
 * const seen = [];
 * for await (const event of connect("https://example.com/events", { fetch: fetchStub })) {
 *   seen.push(event);
 *   break; // cancels the body; no reconnect and no timer is left behind
 * }
 * assert.deepEqual(seen, [{ type: "message", data: "hello", lastEventId: "" }]);
 * ```
 */
export function connect(input: string | URL | Request, options: ConnectOptions = {}): Connection {
  return new ClientConnection(input, options);
}

/** Bun's per-request switch for its 5-minute fetch idle timeout; other runtimes ignore it. */
const NO_RUNTIME_IDLE_TIMEOUT = { timeout: false } as RequestInit;

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
      jitter: checkNumber("backoff.jitter", backoff?.jitter, 0.5, 0, 1),
    };
    if (inactivityTimeout === undefined || inactivityTimeout === null) {
      this.#inactivityTimeout = null;
    } else {
      this.#inactivityTimeout = checkNumber(
        "inactivityTimeout",
        inactivityTimeout,
        0,
        1,
        MAX_TIMEOUT,
      );
    }
    this.#maxEventSize = checkNumber("maxEventSize", maxEventSize, 16_777_216, 1, Infinity);
    // [spec] EventSource fetches with cache mode "no-store".
    this.#request = new Request(input, { cache: "no-store", ...init });
    this.#lastEventId = lastEventId ?? "";
    this.#resumeId = this.#lastEventId;
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

  async *#run(): AsyncGenerator<ParsedEvent, void, undefined> {
    const closed = this.#closer.signal;
    const external = this.#options.signal;
    const onExternalAbort = (): void => this.close();
    const onClose = (): void => this.#attempt?.abort(closed.reason);
    if (external?.aborted) this.close();
    external?.addEventListener("abort", onExternalAbort, { once: true });
    closed.addEventListener("abort", onClose, { once: true });
    let reconnectionTime = this.#backoff.initial;
    let failures = 0;
    try {
      while (!closed.aborted) {
        this.#state = "connecting";
        const attempt = new AbortController();
        this.#attempt = attempt;
        const request = await this.#buildRequest(attempt.signal);
        if (closed.aborted) return;
        let response: Response | undefined;
        let error: unknown;
        let gotBytes = false;
        try {
          response = await this.#open(request, attempt);
        } catch (cause) {
          if (closed.aborted) return;
          error = cause;
        }
        if (response !== undefined) {
          if (response.status === 204) {
            // [spec] "No Content" tells the client to stop reconnecting.
            response.body?.cancel().catch(ignore);
            return;
          }
          const refusal = checkResponse(response);
          if (refusal !== undefined) {
            response.body?.cancel().catch(ignore);
            this.#options.onError?.(refusal);
            throw refusal;
          }
          const reader = response.body?.getReader();
          const onAttemptAbort = (): void => {
            reader?.cancel(attempt.signal.reason).catch(ignore);
          };
          attempt.signal.addEventListener("abort", onAttemptAbort, { once: true });
          try {
            this.#state = "open";
            await this.#options.onOpen?.(response);
            if (closed.aborted) return;
            const queue: ParsedEvent[] = [];
            const parser = new Parser({
              onEvent: (event) => queue.push(event),
              onRetry: (ms) => reconnectionTime = ms,
              maxEventSize: this.#maxEventSize,
            }, this.#resumeId);
            // The parse engine drops the leading BOM itself, so the decoder must keep it.
            const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
            while (reader !== undefined) {
              let chunk: Uint8Array | undefined;
              try {
                chunk = await this.#read(reader, attempt);
              } catch (cause) {
                if (closed.aborted) return;
                error = attempt.signal.aborted ? attempt.signal.reason : cause;
                break;
              }
              if (chunk === undefined) {
                parser.feed(decoder.decode());
                parser.end();
                break;
              }
              if (chunk.byteLength > 0) gotBytes = true;
              try {
                parser.feed(decoder.decode(chunk, { stream: true }));
              } catch (cause) {
                if (cause instanceof EventTooLargeError) this.#options.onError?.(cause);
                throw cause;
              } finally {
                this.#resumeId = parser.lastEventId;
              }
              for (let i = 0; i < queue.length; i++) {
                this.#lastEventId = queue[i].lastEventId;
                yield queue[i];
                // [spec] Nothing is dispatched after close(), not even events already parsed.
                if (closed.aborted) return;
              }
              queue.length = 0;
              this.#lastEventId = this.#resumeId;
            }
          } finally {
            attempt.signal.removeEventListener("abort", onAttemptAbort);
            reader?.cancel().catch(ignore);
          }
        }
        if (closed.aborted) return;
        this.#state = "connecting";
        if (error !== undefined) this.#options.onError?.(error);
        failures = gotBytes ? 1 : failures + 1;
        const delay = backoffDelay(failures, reconnectionTime, this.#backoff);
        this.#options.onRetry?.({ attempt: failures, delay, error });
        if (!(await abortableDelay(delay, closed))) return;
      }
    } finally {
      this.#attempt = undefined;
      external?.removeEventListener("abort", onExternalAbort);
      closed.removeEventListener("abort", onClose);
      this.close();
    }
  }

  async #buildRequest(signal: AbortSignal): Promise<Request> {
    const given = this.#options.headers;
    const extra = typeof given === "function" ? await given() : given;
    const headers = new Headers(this.#request.headers);
    if (extra !== undefined) new Headers(extra).forEach((value, name) => headers.set(name, value));
    if (!headers.has("accept")) headers.set("accept", "text/event-stream");
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
        clearTimeout(timer);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#fetch(request, NO_RUNTIME_IDLE_TIMEOUT).then((response) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        // A response that comes after the abort is not read: let its connection go.
        if (signal.aborted) response.body?.cancel().catch(ignore);
        else resolve(response);
      }, (error) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        reject(signal.aborted ? signal.reason : error);
      });
    });
  }

  /** Starts the inactivity clock of an attempt, if there is one. */
  #armTimeout(attempt: AbortController): ReturnType<typeof setTimeout> | undefined {
    const ms = this.#inactivityTimeout;
    if (ms === null) return undefined;
    return setTimeout(() => {
      attempt.abort(
        new DOMException(`Connection timed out: no data for ${ms} ms`, "TimeoutError"),
      );
    }, ms);
  }

  /** Reads one chunk; `undefined` at the end of the stream. */
  async #read(
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
      clearTimeout(timer);
    }
  }
}

/** Why a response cannot be read as an event stream, if it cannot. */
function checkResponse(response: Response): ConnectError | undefined {
  if (response.status < 200 || response.status > 299) {
    return new ConnectError(
      response,
      `Cannot connect to event stream: the server answered with status ${response.status}`,
    );
  }
  const contentType = response.headers.get("content-type");
  const essence = contentType?.split(";", 1)[0].trim().toLowerCase();
  if (essence !== "text/event-stream") {
    return new ConnectError(
      response,
      `Cannot connect to event stream: expected content type \`text/event-stream\`, got \`${
        contentType ?? "none"
      }\``,
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
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
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
