/**
 * The replay seam: what a client that comes back with a `Last-Event-ID` gets, and in what order.
 *
 * While the bridge fetches what the client missed, the live events for it are held back; then
 * the replay is queued whole (pinned: it counts against no bound and is never discarded), and
 * after it the held events that the replay did not already carry, under the client's usual
 * bounds. So a replay of any length arrives whole and in order, whatever the overflow policy.
 * @module
 */

import type { BridgeEvent, BridgeReplay } from "./bridge.ts";
import { encodeText } from "./_bytes.ts";
import { encodeEvent, MAX_ID_LENGTH, withId } from "./_wire.ts";

/**
 * The event a client gets when it resumes with a `Last-Event-ID` whose missed events are no
 * longer all in history (or that the broker does not know, e.g. after a restart): the app should
 * refetch its state. Its data is JSON: `{ "channels": [...], "lastEventId": "..." }`, the
 * channels whose events were lost and the id the client came back with. Its `id` is the newest
 * position, so the client resumes from there next time. The name is reserved: publishing it
 * throws.
 *
 * @example Refetch state in the browser on a gap
 * ```ts ignore
 * // In the browser (EventSource is not a server API):
 * const source = new EventSource("/events");
 * source.addEventListener("stream-reset", () => refetchEverything());
 * ```
 */
export const STREAM_RESET_EVENT = "stream-reset";

/** A live event held back while a replay is fetched. */
export interface HeldEvent {
  seq: number;
  frame: Uint8Array;
}

/** A replay, ready to queue. */
export interface ReplayFrame {
  /** Every missed event and, on a gap, the gap signal, as one frame; undefined when empty. */
  bytes: Uint8Array | undefined;
  /** How many stored events it carries. */
  events: number;
  /** Whether it ends with the gap signal. */
  gap: boolean;
  /** The position it brings the client to: held events at or before it are in it already. */
  upTo: number;
}

/** The bytes of a stored event: its frame with its id line in place. */
export function encodeStored(event: BridgeEvent): Uint8Array {
  return encodeText(withId(event.body, event.id));
}

/**
 * Composes the replay of what a bridge returned.
 * @param replay The missed events, the channels with a gap, and the head (undefined when the
 * bridge failed: then every channel has a gap).
 * @param lastEventId The id the client came back with (echoed, cut to the id length limit).
 */
export function composeReplay(
  replay: Pick<BridgeReplay, "events" | "gaps"> & { head: BridgeReplay["head"] | undefined },
  lastEventId: string,
): ReplayFrame {
  const { events, gaps, head } = replay;
  let upTo = head?.seq ?? -Infinity;
  const parts: string[] = [];
  for (const event of events) {
    parts.push(withId(event.body, event.id));
    if (event.seq > upTo) upTo = event.seq;
  }
  const gap = gaps.length > 0;
  if (gap) {
    parts.push(encodeEvent({
      event: STREAM_RESET_EVENT,
      ...(head ? { id: head.id } : {}),
      data: { channels: gaps, lastEventId: lastEventId.slice(0, MAX_ID_LENGTH) },
    }));
  }
  return {
    bytes: parts.length === 0 ? undefined : encodeText(parts.join("")),
    events: events.length,
    gap,
    upTo,
  };
}

/** The held events that come after the replay, in order. */
export function heldAfter(held: readonly HeldEvent[], upTo: number): HeldEvent[] {
  return held.filter((event) => event.seq > upTo);
}
