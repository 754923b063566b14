/**
 * The contract between `EventStream` and the broker, and nothing more: the four things a broker
 * needs from a stream that its public API does not offer. They are methods of `EventStream` under
 * the symbols below, which no entry point exports, so users cannot reach them while a reader (and
 * "go to definition") can follow every call from the broker to its one implementation.
 *
 * Why not a listener on `stream.signal`: the signal's `AbortController` is made only when someone
 * reads `signal`, so a broker's idle connection owns none (about 0.5 KiB less per connection);
 * {@linkcode onStreamEnd} is the broker's cheaper way to learn that a stream ended.
 * @module
 */

import type { StreamClosedError } from "./errors.ts";

/** What the broker does with a frame when a client's buffer is full. */
export type OverflowPolicy = "disconnect" | "drop-oldest";

/**
 * How a frame is queued: under an overflow policy, or `"pinned"`: whatever the bounds and never
 * discarded (a piece of a replay, which must arrive without a hole, or the last frames of a
 * shutdown), but counted against the bounds once queued like any frame, so that a client that
 * stops reading is dropped by `writeTimeout` as usual. The broker offers a replay piece only when
 * {@linkcode onRoom} says there is room: that is what bounds it.
 */
export type OfferPolicy = OverflowPolicy | "pinned";

/**
 * Queues a frame without waiting. Returns how many queued frames `"drop-oldest"` discarded to make
 * room (0 mostly), or -1 when the stream is or became closed and the frame was not queued.
 */
export const offerFrame: unique symbol = Symbol("flume.offerFrame");

/**
 * Sets the one callback (the broker's) called once, with `arg`, when the stream ends: a function
 * shared by every stream of a broker and its subscriber record, not a closure per stream.
 */
export const onStreamEnd: unique symbol = Symbol("flume.onStreamEnd");

/**
 * Whether the buffer has room now, or with `empty` whether nothing is queued (then `true`, and the
 * callback is dropped); otherwise `false`, and the callback runs once, when the client has taken
 * what is queued. It never runs if the stream ends first; a newer callback replaces an older one.
 * The broker feeds a replay with it, one piece at a time, and queues the live events it held
 * meanwhile (at most a buffer of them) into an empty buffer.
 */
export const onRoom: unique symbol = Symbol("flume.onRoom");

/** Why the stream ended, or undefined while it is open. */
export const closeReason: unique symbol = Symbol("flume.closeReason");

/** A stream as the broker drives it. */
export interface ControlledStream {
  readonly closed: boolean;
  [offerFrame](frame: Uint8Array, policy: OfferPolicy): number;
  [onStreamEnd]<T>(callback: (arg: T) => void, arg: T): void;
  [onRoom](callback: () => void, empty?: boolean): boolean;
  readonly [closeReason]: StreamClosedError | undefined;
}
