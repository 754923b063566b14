/**
 * One Server-Sent Event, as a producer describes it.
 *
 * Every field is optional; a frame carries only the fields that are set.
 *
 * @example Describe a named event with an id
 * ```ts
 * import type { ServerSentEvent } from "@flume/sse";
 *
 * import { formatEvent } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const event: ServerSentEvent = { event: "price", id: 42, data: { symbol: "ACME", price: 12.5 } };
 * assert.equal(formatEvent(event), 'event: price\nid: 42\ndata: {"symbol":"ACME","price":12.5}\n\n');
 * ```
 */
export interface ServerSentEvent {
  /**
   * The payload. A string is sent as is, a `Uint8Array` as the UTF-8 text it holds, anything
   * else (`null` included) as `JSON.stringify` makes it. `undefined` sends no `data` line, so the
   * browser dispatches nothing (useful for an `id`-only or `retry`-only frame).
   */
  data?: unknown;
  /** The event type (`EventSource` dispatches it under this name). Must not contain CR or LF. */
  event?: string | undefined;
  /**
   * The event id, which the browser sends back as `Last-Event-ID` when it reconnects. Must not
   * contain CR, LF or NUL. An empty string resets the browser's last event id.
   */
  id?: string | number | undefined;
  /** The reconnection delay the browser should use from now on, in ms: a non-negative integer. */
  retry?: number | undefined;
  /** A comment; each of its lines becomes one `: line` line. The browser ignores comments. */
  comment?: string | undefined;
}
