/**
 * The events of one generation as a worker holds them: the memory store's only copy, or the
 * Redis store's mirror of the stream in Redis. Readers read it by index and sleep on it; every
 * frame is encoded once, with its id, and its bytes are shared by every reader.
 * @module
 */

import { encodeText } from "../_bytes.ts";
import { withId } from "../_wire.ts";

/** One stored event: the frame to send (id line included) and whether it is the end marker. */
export interface Entry {
  readonly frame: Uint8Array;
  readonly end: boolean;
}

/** How a generation ended, as its end marker says. */
export type ResumableEndReason =
  /** The producer's promise resolved. */
  | "complete"
  /** `cancel()` was called, on this worker or another, or the instance was closed. */
  | "cancelled"
  /** The producer threw (the error went to `onError`). */
  | "failed"
  /** The producer sent more than `maxEvents` events or `maxBytes` bytes. */
  | "limit"
  /** The worker that ran the producer stopped renewing its lease (Redis only): it died. */
  | "lost";

/** The id of event `seq` of a generation: `<token>-<seq>`, unique to that generation. */
export function eventId(token: string, seq: number): string {
  return `${token}-${seq}`;
}

/**
 * The position after which a `Last-Event-ID` resumes, or -1 when it is not one of this
 * generation's ids (another generation's, a forged one, or one beyond what exists).
 */
export function positionOf(lastEventId: string, token: string, head: number): number {
  const dash = lastEventId.lastIndexOf("-");
  if (dash < 0 || lastEventId.slice(0, dash) !== token) return -1;
  const digits = lastEventId.slice(dash + 1);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(digits)) return -1;
  const seq = Number(digits);
  return seq <= head ? seq : -1;
}

/** A generation's events, in order: entry `i` has seq `i + 1`. */
export class Log {
  /** The prefix of its event ids; a Redis mirror learns it with its first read. */
  token: string;
  readonly entries: Entry[] = [];
  /** Bytes of every frame held. */
  bytes = 0;
  /** Whether the end marker is in `entries`. */
  ended = false;
  /** Whether the generation is gone (expired, or the store closed): readers close. */
  gone = false;
  #waiters = new Set<() => void>();

  constructor(token: string) {
    this.token = token;
  }

  /** Appends one stored body as event `entries.length + 1`. */
  push(body: string, end = false): void {
    const frame = encodeText(withId(body, eventId(this.token, this.entries.length + 1)));
    this.entries.push({ frame, end });
    this.bytes += frame.byteLength;
    if (end) this.ended = true;
    this.#wake();
  }

  /** The generation is gone: every reader wakes, sees it and closes. */
  drop(): void {
    this.gone = true;
    this.entries.length = 0;
    this.bytes = 0;
    this.#wake();
  }

  /** Calls `waiter` once, on the next push or drop; returns the function that unregisters it. */
  wait(waiter: () => void): () => void {
    this.#waiters.add(waiter);
    return () => this.#waiters.delete(waiter);
  }

  #wake(): void {
    if (this.#waiters.size === 0) return;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const waiter of waiters) waiter();
  }
}
