/**
 * One Server-Sent Event, as a producer describes it.
 *
 * Every field is optional; a frame carries only the fields that are set.
 *
 * @example Describe a named event with an id
 * ```ts
 * import type { ServerSentEvent } from "@flume/sse";
 *
 * const event: ServerSentEvent = { event: "price", id: 42, data: { symbol: "ACME", price: 12.5 } };
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
  event?: string;
  /**
   * The event id, which the browser sends back as `Last-Event-ID` when it reconnects. Must not
   * contain CR, LF or NUL. An empty string resets the browser's last event id.
   */
  id?: string | number;
  /** The reconnection delay the browser should use from now on, in ms: a non-negative integer. */
  retry?: number;
  /** A comment; each of its lines becomes one `: line` line. The browser ignores comments. */
  comment?: string;
}

const LINE_BREAK = /\r\n|\r|\n/;
const HAS_LINE_BREAK = /[\r\n]/;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

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
 * @throws {RangeError} `retry` is not a non-negative integer, or a numeric `id` is not finite.
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
  if (event === null || typeof event !== "object") {
    throw new TypeError(`Cannot encode event: expected an object, got \`${typeOf(event)}\``);
  }
  const { data, event: type, id, retry, comment } = event;
  let frame = "";
  if (comment !== undefined) {
    checkText("comment", comment);
    frame += formatComment(comment);
  }
  if (type !== undefined) {
    checkText("event", type);
    if (HAS_LINE_BREAK.test(type)) {
      throw new TypeError("Cannot encode event: `event` contains a line break");
    }
    frame += `event: ${type}\n`;
  }
  if (id !== undefined) frame += `id: ${formatId(id)}\n`;
  if (retry !== undefined) frame += `retry: ${formatRetry(retry)}\n`;
  if (data !== undefined) frame += formatData(data);
  return frame + "\n";
}

/** The lines of a comment, each `: text` (or a bare `:` for an empty line). */
function formatComment(text: string): string {
  // A one-line comment is by far the most common (heartbeats): skip the split.
  if (!HAS_LINE_BREAK.test(text)) return text === "" ? ":\n" : `: ${text}\n`;
  let out = "";
  for (const line of text.split(LINE_BREAK)) out += line === "" ? ":\n" : `: ${line}\n`;
  return out;
}

function formatId(id: string | number): string {
  if (typeof id === "number") {
    if (!Number.isFinite(id)) {
      throw new RangeError(`Cannot encode event: \`id\` must be a finite number, got \`${id}\``);
    }
    return String(id);
  }
  checkText("id", id);
  if (HAS_LINE_BREAK.test(id)) {
    throw new TypeError("Cannot encode event: `id` contains a line break");
  }
  // [spec] A browser ignores an id field that contains NUL, so it would silently be lost.
  if (id.includes("\0")) throw new TypeError("Cannot encode event: `id` contains NUL");
  return id;
}

function formatRetry(retry: number): number {
  if (typeof retry !== "number" || !Number.isSafeInteger(retry) || retry < 0) {
    throw new RangeError(
      `Cannot encode event: \`retry\` must be a non-negative integer, got \`${String(retry)}\``,
    );
  }
  return retry;
}

function formatData(data: unknown): string {
  let text: string;
  if (typeof data === "string") {
    checkText("data", data);
    text = data;
  } else if (data instanceof Uint8Array) {
    try {
      text = strictUtf8.decode(data);
    } catch (cause) {
      throw new TypeError("Cannot encode event: `data` bytes are not valid UTF-8", { cause });
    }
  } else {
    let json: string | undefined;
    try {
      json = JSON.stringify(data);
    } catch (cause) {
      throw new TypeError(`Cannot encode event: \`data\` cannot be encoded as JSON`, { cause });
    }
    if (json === undefined) {
      throw new TypeError(
        `Cannot encode event: \`data\` of type \`${typeOf(data)}\` has no JSON form`,
      );
    }
    // JSON.stringify escapes every line break and lone surrogate: one line, nothing to check.
    return `data: ${json}\n`;
  }
  if (!HAS_LINE_BREAK.test(text)) return `data: ${text}\n`;
  let out = "";
  for (const line of text.split(LINE_BREAK)) out += `data: ${line}\n`;
  return out;
}

function checkText(field: string, value: unknown): asserts value is string {
  if (typeof value !== "string") {
    throw new TypeError(
      `Cannot encode event: \`${field}\` must be a string, got \`${typeOf(value)}\``,
    );
  }
  // A lone surrogate has no UTF-8 form: TextEncoder would send U+FFFD, a silent corruption.
  if (!value.isWellFormed()) {
    throw new TypeError(`Cannot encode event: \`${field}\` contains a lone surrogate`);
  }
}

function typeOf(value: unknown): string {
  return value === null ? "null" : typeof value;
}
