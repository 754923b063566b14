import { encodeEvent } from "./_wire.ts";
import type { ServerSentEvent } from "./server_sent_event.ts";

export type { ServerSentEvent } from "./server_sent_event.ts";

/**
 * Encodes one event as a frame of the `text/event-stream` format, ending with the blank line that
 * makes the browser dispatch it.
 *
 * Every field is written `name: value`, with the space, so that a value's own leading space
 * survives the parser's removal of one. Multi-line data and comments become one line each, split
 * on CRLF, CR and LF only (never on U+2028 or U+0085, which the format treats as text).
 *
 * Input that the format cannot carry faithfully is refused, never altered, so no corrupt or
 * injected field can reach the wire.
 *
 * @see {@link https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream}
 *
 * @param event The event to encode.
 * @returns The frame, as text.
 * @throws {TypeError} `event` or `id` contains CR or LF, `id` contains NUL, a string holds a lone
 * surrogate (UTF-8 cannot carry it), a `Uint8Array` is not valid UTF-8, or `data` cannot be
 * encoded as JSON (a circular object, a `BigInt`, a function).
 * @throws {RangeError} `retry` is not a non-negative integer, a numeric `id` is not finite, or the
 * frame would be longer than 134,217,728 characters (128 Mi: 10 MB of data with any line endings
 * stays far below; 20 MB of bare line breaks does not, each becoming a `data: ` line).
 *
 * @example Encode a JSON event with a name and an id
 * ```ts
 * import { formatEvent } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * assert.equal(
 *   formatEvent({ event: "tick", id: 1, data: { n: 1 } }),
 *   'event: tick\nid: 1\ndata: {"n":1}\n\n',
 * );
 * assert.equal(formatEvent({ data: "two\nlines" }), "data: two\ndata: lines\n\n");
 * ```
 */
export function formatEvent(event: ServerSentEvent): string {
  return encodeEvent(event);
}
