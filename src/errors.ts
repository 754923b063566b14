/**
 * The package's domain errors: the ones a caller branches on. Each takes `(message, options)`,
 * its structured fields in the options next to `cause`, and sets `name` as a class field.
 * @module
 */

/** Why a stream ended, as {@linkcode StreamClosedError.reason} tells it. */
export type StreamCloseReason =
  /** `close()` was called. */
  | "closed"
  /** The reader cancelled the body: the client went away. */
  | "cancelled"
  /** The `signal` given in the options aborted. */
  | "aborted"
  /** A chunk could not be delivered within `writeTimeout`: the client stopped reading. */
  | "timeout"
  /** The client's buffer overflowed under the `"disconnect"` policy. */
  | "overflow";

/** Options of {@linkcode StreamClosedError}. */
export interface StreamClosedErrorOptions extends ErrorOptions {
  /** Why the stream ended. */
  reason: StreamCloseReason;
}

/**
 * The stream is closed: the error that a send or publish on a closed stream rejects with, and the
 * `reason` of the stream's `signal`.
 *
 * @example Tell a closed stream from a real failure
 * ```ts
 * import { EventStream, StreamClosedError } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const stream = new EventStream({ heartbeat: null });
 * stream.close();
 * await assert.rejects(stream.publish("late"), StreamClosedError);
 * assert.equal((stream.signal.reason as StreamClosedError).reason, "closed");
 * ```
 */
export class StreamClosedError extends Error {
  /** The error's name. */
  override name: string = "StreamClosedError";
  /** Why the stream ended. */
  readonly reason: StreamCloseReason;

  /**
   * Creates the error.
   * @param message What failed.
   * @param options Why the stream ended, and the underlying cause, if any.
   */
  constructor(message: string, options: StreamClosedErrorOptions) {
    super(message, options);
    this.reason = options.reason;
  }
}

const CLOSE_MESSAGES: Record<StreamCloseReason, string> = {
  closed: "`close()` was called",
  cancelled: "the client went away",
  aborted: "its signal aborted",
  timeout: "the client stopped reading",
  overflow: "the client fell too far behind",
};

/**
 * The {@linkcode StreamClosedError} for a reason, with the package's message.
 * @param reason Why the stream ended.
 * @param cause The underlying cause, if any.
 * @returns The error.
 */
export function streamClosed(reason: StreamCloseReason, cause?: unknown): StreamClosedError {
  const message = `Cannot send event: the stream is closed (${CLOSE_MESSAGES[reason]})`;
  return new StreamClosedError(
    message,
    cause === undefined ? { reason } : { reason, cause },
  );
}

/** Options of {@linkcode StreamOverflowError}. */
export interface StreamOverflowErrorOptions extends ErrorOptions {
  /** The buffer size in frames that was full. */
  bufferSize: number;
}

/**
 * A send was refused because too many sends are already waiting for buffer space: the producer
 * does not await its sends. Awaiting each `send()`/`publish()` never meets this error.
 *
 * @example Await each publish so the buffer bounds memory
 * ```ts
 * import { EventStream } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const stream = new EventStream({ heartbeat: null, bufferSize: 4 });
 * const reader = stream.readable.getReader();
 * let chunks = 0;
 * const reading = (async () => {
 *   while (!(await reader.read()).done) chunks++;
 * })();
 * for (let n = 0; n < 100; n++) await stream.publish(n); // waits while the buffer is full
 * stream.close();
 * await reading;
 * assert.ok(chunks > 1);
 * ```
 */
export class StreamOverflowError extends RangeError {
  /** The error's name. */
  override name: string = "StreamOverflowError";
  /** The buffer size in frames that was full. */
  readonly bufferSize: number;

  /**
   * Creates the error.
   * @param message What failed.
   * @param options The buffer size that was full.
   */
  constructor(message: string, options: StreamOverflowErrorOptions) {
    super(message, options);
    this.bufferSize = options.bufferSize;
  }
}

/**
 * The broker is closed: what `publish()`, `broadcast()` and `subscribe()` throw after `close()`.
 *
 * @example Tell a closed broker apart
 * ```ts
 * import { Broker, BrokerClosedError } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const broker = new Broker();
 * await broker.close();
 * await assert.rejects(broker.publish("news", "late"), BrokerClosedError);
 * ```
 */
export class BrokerClosedError extends Error {
  /** The error's name. */
  override name: string = "BrokerClosedError";

  /**
   * Creates the error.
   * @param message What failed.
   * @param options The underlying cause, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Which limit turned a client away, as {@linkcode BrokerLimitError.reason} tells it. */
export type BrokerLimitReason =
  /** `maxClients`: the broker has its maximum of clients. */
  | "clients"
  /** `maxClientsPerChannel`: one of the client's channels has its maximum. */
  | "channel"
  /** `admissionRate`: more new clients came in a short time than the broker admits; it passes soon. */
  | "admission";

/** Options of {@linkcode BrokerLimitError}. */
export interface BrokerLimitErrorOptions extends ErrorOptions {
  /** Which limit was reached. */
  reason: BrokerLimitReason;
  /** The limit that was reached: clients, or for `"admission"` new clients per second. */
  limit: number;
  /** The channel whose limit was reached; absent for the whole broker's. */
  channel?: string | undefined;
}

/**
 * A subscription was refused because a client limit or the admission rate was reached
 * (`response()` answers 503 with a jittered `Retry-After`).
 *
 * @example Handle the limit yourself
 * ```ts
 * import { Broker, BrokerLimitError } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const broker = new Broker({ maxClients: 1 });
 * broker.subscribe("a");
 * assert.throws(() => broker.subscribe("b"), BrokerLimitError);
 * try {
 *   broker.subscribe("b");
 * } catch (error) {
 *   assert.equal((error as BrokerLimitError).reason, "clients");
 * }
 * await broker.close();
 * ```
 */
export class BrokerLimitError extends RangeError {
  /** The error's name. */
  override name: string = "BrokerLimitError";
  /** Which limit was reached. */
  readonly reason: BrokerLimitReason;
  /** The limit that was reached: clients, or for `"admission"` new clients per second. */
  readonly limit: number;
  /** The channel whose limit was reached, or undefined for the whole broker's. */
  readonly channel: string | undefined;

  /**
   * Creates the error.
   * @param message What failed.
   * @param options Which limit, its value, and the channel for a per-channel limit.
   */
  constructor(message: string, options: BrokerLimitErrorOptions) {
    super(message, options);
    this.reason = options.reason;
    this.limit = options.limit;
    this.channel = options.channel;
  }
}
