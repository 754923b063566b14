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
  /** Why the stream ended. */
  readonly reason: StreamCloseReason;

  /**
   * Creates the error.
   * @param reason Why the stream ended.
   * @param options The underlying cause, if any.
   */
  constructor(reason: StreamCloseReason, options?: ErrorOptions) {
    super(`Cannot send event: the stream is closed (${MESSAGES[reason]})`, options);
    this.name = "StreamClosedError";
    this.reason = reason;
  }
}

const MESSAGES: Record<StreamCloseReason, string> = {
  closed: "`close()` was called",
  cancelled: "the client went away",
  aborted: "its signal aborted",
  timeout: "the client stopped reading",
  overflow: "the client fell too far behind",
};

/**
 * A send was refused because too many sends are already waiting for buffer space: the producer
 * does not await its sends. Awaiting each `send()`/`publish()` never meets this error.
 *
 * @example Await each publish so the buffer bounds memory
 * ```ts
 * import { EventStream } from "@flume/sse";
 *
 * const stream = new EventStream({ heartbeat: null, bufferSize: 4 });
 * const reader = stream.readable.getReader();
 * const reading = (async () => { while (!(await reader.read()).done); })();
 * for (let n = 0; n < 100; n++) await stream.publish(n); // waits while the buffer is full
 * stream.close();
 * await reading;
 * ```
 */
export class StreamOverflowError extends RangeError {
  /** The buffer size in frames that was full. */
  readonly bufferSize: number;

  /**
   * Creates the error.
   * @param bufferSize The buffer size in frames.
   */
  constructor(bufferSize: number) {
    super(
      `Cannot send event: the buffer of ${bufferSize} frames is full and as many sends are waiting; await each send`,
    );
    this.name = "StreamOverflowError";
    this.bufferSize = bufferSize;
  }
}
