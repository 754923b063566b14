/**
 * The replay seam: what a client that comes back with a `Last-Event-ID` gets, and in what order.
 *
 * While the bridge fetches what the client missed, the live events for it are held back (within
 * the client's bounds); then the replay goes out in pieces of at most {@linkcode PIECE_BYTES},
 * each encoded when a client first needs it and offered only while the client's buffer has room,
 * and after the last piece the held events that the replay did not already carry. So a replay of
 * any length arrives without a hole and in order, whatever the overflow policy, while a client
 * that stops reading pins about one buffer of it, not all of it.
 *
 * Clients that resume from the same place at the same time (a reconnect storm after a deploy)
 * share one {@linkcode SharedReplay}: one bridge read, and the same bytes of every piece.
 * @module
 */

import type { BridgeEvent, BridgeReplay } from "./bridge.ts";
import { encodeText } from "./_bytes.ts";
import { encodeEvent, MAX_ID_LENGTH, withId } from "./_wire.ts";

/**
 * The gap signal: the app should refetch its state. A client gets it in two cases:
 *
 * - it resumes with a `Last-Event-ID` whose missed events are no longer all in history (or that
 *   the broker does not know, e.g. after a restart): then it ends the replay;
 * - in-band, on its open stream, when the bridge lost events for good while the client was
 *   connected (Redis restarted without persistence, or missed events were trimmed before they
 *   could be fetched): then it comes in order, after the events from before the loss and before
 *   those from after it, and the stream stays open.
 *
 * Its data is JSON: `{ "channels": [...], "lastEventId": "..." | null }`, the client's channels
 * whose events were lost and the position before the loss: the id the client came back with, or
 * for an in-band signal the id of the last event delivered before the loss (`null` when there was
 * none). Its `id`, when known, is the newest position, so the client resumes from there next
 * time. The name is reserved: publishing it throws.
 *
 * @example Refetch state in the browser on a gap
 * ```ts ignore
 * // In the browser (EventSource is not a server API):
 * const source = new EventSource("/events");
 * source.addEventListener("stream-reset", () => refetchEverything());
 * ```
 */
export const STREAM_RESET_EVENT = "stream-reset";

/**
 * The most bytes of one replay piece: the unit in which a replay is encoded and queued. Small
 * enough that a client that stops reading pins little beyond its buffer, large enough that a
 * replay of many small events leaves in few writes.
 */
export const PIECE_BYTES = 65_536;

/**
 * A live event held back while a replay is fetched and sent, or an in-band gap signal held in
 * its place among them (`gap`: never dropped; its `seq` is the position the bridge went on from,
 * `Infinity` when unknown). `partition` only from a bridge with partitions: `seq` is then in
 * that partition's order.
 */
export interface HeldEvent {
  partition?: number | undefined;
  seq: number;
  frame: Uint8Array;
  gap?: true | undefined;
}

/** What a bridge answered, or `head: undefined` when it failed (then every channel has a gap). */
export type ReplayAnswer = Pick<BridgeReplay, "events" | "gaps"> & {
  head: BridgeReplay["head"] | undefined;
};

/** The bytes of a stored event: its frame with its id line in place. */
export function encodeStored(event: BridgeEvent): Uint8Array {
  return encodeText(withId(event.body, event.id));
}

/** The bytes of a stored event with another id than its own: a partitioned bridge's position. */
export function encodeStoredAs(event: BridgeEvent, id: string): Uint8Array {
  return encodeText(withId(event.body, id));
}

/**
 * Where a replay brings its clients: a seq, or with a partitioned bridge one per partition
 * (index = partition; a missing entry brings nothing on that partition).
 */
export type ReplayPosition = number | readonly (number | undefined)[];

/**
 * The held events that come after the replay, in order. A held gap signal goes by the position
 * the bridge went on from: at or before the replay's, the replay was read after the loss and
 * tells the client the truth itself (and the signal's id would take it back); after it, or
 * unknown (`Infinity`), the signal is kept, as a second signal costs a refetch and a missing one
 * a silent hole. With a position per partition, each held event is compared with the replay's
 * position on its own partition.
 */
export function heldAfter(held: readonly HeldEvent[], upTo: ReplayPosition): HeldEvent[] {
  if (typeof upTo === "number") return held.filter((event) => event.seq > upTo);
  return held.filter((event) => event.seq > (upTo[event.partition ?? 0] ?? -Infinity));
}

/**
 * The text of one gap signal (see {@linkcode STREAM_RESET_EVENT}).
 * @param channels The channels whose events were lost.
 * @param lastEventId The position before the loss, or null when there was none.
 * @param id The position to resume from, when known.
 * @returns The frame.
 * @throws {TypeError} `id` is not one the wire can carry.
 */
export function gapSignal(
  channels: readonly string[],
  lastEventId: string | null,
  id: string | undefined,
): string {
  return encodeEvent({
    event: STREAM_RESET_EVENT,
    ...(id === undefined ? {} : { id }),
    data: { channels, lastEventId },
  });
}

/**
 * One read of history and its encoded pieces, shared by every client that resumes from the same
 * `Last-Event-ID` on the same channels while nothing was delivered in between (so that no live
 * event can fall between the read and a client that joins it late). A piece is encoded when the
 * first client needs it and freed once every client has taken it, so a read holds the pieces
 * between its slowest and its fastest client, and nothing once they are gone.
 */
export class SharedReplay {
  /**
   * Whether a client may still join: the broker closes it when an event on its channels is
   * delivered after the read began; it is closed too once its first piece is freed.
   */
  open = true;
  /** How many stored events it carries (known once `ready` has resolved). */
  events = 0;
  /** Whether it ends with the gap signal (known once `ready` has resolved). */
  gap = false;
  /** The position it brings a client to: held events at or before it are in it already. */
  upTo: ReplayPosition = -Infinity;
  /** Resolves once the bridge has answered (or failed: then a gap); never rejects. */
  readonly ready: Promise<void>;
  /** Clients reading it. */
  #users = 0;
  #pieces: (Uint8Array | undefined)[] = [];
  /** How many clients take the piece at each index next. */
  #next: number[] = [];
  /** Pieces before it are freed. */
  #low = 0;
  #writer: PieceWriter | undefined;

  /**
   * @param read The bridge's answer.
   * @param channels The channels it is for (all of them have a gap when the read fails).
   * @param lastEventId The id the clients came back with (echoed in the gap signal, cut to the
   * id length limit).
   * @param onError Told when the read fails.
   */
  constructor(
    read: Promise<BridgeReplay>,
    channels: readonly string[],
    lastEventId: string,
    onError: (error: unknown) => void,
  ) {
    const echo = lastEventId.slice(0, MAX_ID_LENGTH);
    this.ready = read.then(
      (answer) => this.#settle(answer, echo),
      (error) => {
        onError(error);
        this.#settle({ events: [], gaps: [...channels], head: undefined }, echo);
      },
    );
  }

  /** Adds a client, at the first piece. */
  join(): void {
    this.#users++;
    this.#next[0] = (this.#next[0] ?? 0) + 1;
  }

  /**
   * The piece a client at `index` takes next, encoded on first use; undefined past the last one.
   * The client is then at `index + 1`.
   * @param index Where the client is: 0 for the first piece.
   */
  take(index: number): Uint8Array | undefined {
    const pieces = this.#pieces;
    while (index >= pieces.length) {
      const piece = this.#writer?.next();
      if (piece === undefined) {
        this.#writer = undefined; // the events are no longer needed
        return undefined;
      }
      pieces.push(piece);
    }
    const piece = pieces[index];
    this.#next[index]!--;
    this.#next[index + 1] = (this.#next[index + 1] ?? 0) + 1;
    this.#free();
    return piece;
  }

  /**
   * Removes a client.
   * @param index Where the client was.
   * @returns How many clients are left.
   */
  leave(index: number): number {
    this.#users--;
    this.#next[index]!--;
    this.#free();
    return this.#users;
  }

  /** Frees the pieces that every client has taken. */
  #free(): void {
    const pieces = this.#pieces;
    while (this.#low < pieces.length && !this.#next[this.#low]) {
      pieces[this.#low++] = undefined;
      this.open = false;
    }
  }

  #settle(answer: ReplayAnswer, echo: string): void {
    const { events, gaps, head } = answer;
    const seqs = head?.seqs;
    if (seqs === undefined) {
      let upTo = head?.seq ?? -Infinity;
      for (const event of events) if (event.seq > upTo) upTo = event.seq;
      this.upTo = upTo;
    } else {
      // Per partition: the head's position on it, or the newest event replayed from it.
      const upTo = [...seqs];
      for (const event of events) {
        const partition = event.partition ?? 0;
        if (event.seq > (upTo[partition] ?? -Infinity)) upTo[partition] = event.seq;
      }
      this.upTo = upTo;
    }
    this.events = events.length;
    this.gap = gaps.length > 0;
    const signal = this.gap ? gapSignal(gaps, echo, head?.id) : undefined;
    this.#writer = new PieceWriter(events, signal);
  }
}

const encoder = new TextEncoder();
const isHighSurrogate = (code: number): boolean => code >= 0xd800 && code <= 0xdbff;

/**
 * Writes the frames of a replay into pieces of at most `PIECE_BYTES`, one piece per call. Frames
 * are joined into text of about a piece at a time and encoded straight into the piece: many small
 * events cost one encode per piece, and an event larger than a piece is cut across several
 * (the wire does not care where a chunk ends), so no step holds more than a piece of bytes.
 */
class PieceWriter {
  #events: readonly BridgeEvent[];
  #next = 0;
  #signal: string | undefined;
  /** Text taken from the frames and not encoded yet, from `#at` on. */
  #text = "";
  #at = 0;

  constructor(events: readonly BridgeEvent[], signal: string | undefined) {
    this.#events = events;
    this.#signal = signal;
  }

  next(): Uint8Array | undefined {
    const out = new Uint8Array(PIECE_BYTES);
    let written = 0;
    while (written < PIECE_BYTES) {
      if (this.#at >= this.#text.length && !this.#refill()) break;
      const text = this.#text;
      let end = Math.min(text.length, this.#at + (PIECE_BYTES - written));
      // Never cut a surrogate pair: encodeInto would write each half as U+FFFD.
      if (end < text.length && end > this.#at && isHighSurrogate(text.charCodeAt(end - 1))) end--;
      const part = text.slice(this.#at, end);
      const result = encoder.encodeInto(part, out.subarray(written));
      this.#at += result.read;
      written += result.written;
      if (result.read < part.length || part.length === 0) break; // the piece is full
    }
    if (written === 0) return undefined;
    return written === PIECE_BYTES ? out : out.slice(0, written);
  }

  /** Takes the next frames, about a piece of text; false when there are none left. */
  #refill(): boolean {
    const events = this.#events;
    let text = "";
    while (text.length < PIECE_BYTES && this.#next < events.length) {
      const event = events[this.#next++]!;
      text += withId(event.body, event.id);
    }
    if (text.length < PIECE_BYTES && this.#next >= events.length && this.#signal !== undefined) {
      text += this.#signal;
      this.#signal = undefined;
    }
    if (this.#next >= events.length) this.#events = [];
    this.#text = text;
    this.#at = 0;
    return text !== "";
  }
}
