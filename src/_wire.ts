/**
 * The one owner of the `text/event-stream` text this package writes: every frame, id line, retry
 * frame and comment on the wire is written here, and every check of "is this one frame?" asks
 * here. No other file spells the syntax.
 *
 * One field order for every path: comment lines, `event`, `id`, `retry`, `data`. A stored event
 * (the broker's) is kept as its body without the id, which is only known once the bridge has
 * ordered it; {@linkcode withId} puts the id line in its place.
 *
 * Every splitter here scans the text once (`indexOf` per line break), so encoding is linear in
 * the size of the data whatever its line endings: a regular-expression `split` on a megabyte of
 * line breaks makes a million strings first.
 *
 * @see {@link https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream}
 * @module
 */

import type { ServerSentEvent } from "./server_sent_event.ts";

/**
 * The longest id that a broker accepts from a publisher and looks up from a `Last-Event-ID`
 * header: a client controls the header, so no lookup may cost more than this.
 */
export const MAX_ID_LENGTH = 256;

/** The keepalive comment: an empty comment line and the blank line that ends the frame. */
export const HEARTBEAT_FRAME = ":\n\n";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Encodes one event as a whole frame, refusing what the wire cannot carry faithfully.
 * @throws {TypeError} A field cannot be carried (see `formatEvent`).
 * @throws {RangeError} `retry` is out of range, or a numeric `id` is not finite.
 */
export function encodeEvent(event: ServerSentEvent): string {
  if (event === null || typeof event !== "object") {
    throw new TypeError(`Cannot encode event: expected an object, got \`${typeOf(event)}\``);
  }
  const { data, event: type, id, retry, comment } = event;
  let frame = "";
  if (comment !== undefined) frame += commentLines(comment);
  if (type !== undefined) frame += eventLine(type);
  if (id !== undefined) frame += idLine(id);
  if (retry !== undefined) frame += `retry: ${checkRetry(retry)}\n`;
  if (data !== undefined) frame += dataLines(data);
  return frame + "\n";
}

/**
 * The body of a stored event: its `event` line (when named) and its data, without an id.
 * @throws {TypeError} The name or data cannot be carried.
 */
export function encodeBody(type: string | undefined, data: unknown): string {
  return (type === undefined ? "" : eventLine(type)) + dataLines(data) + "\n";
}

/**
 * A stored body with its id line put in its place (after the `event` line), or the body as it
 * is without an id. The id was checked when it was made.
 */
export function withId(body: string, id: string | undefined): string {
  if (id === undefined) return body;
  if (!body.startsWith("event: ")) return `id: ${id}\n${body}`;
  const end = body.indexOf("\n") + 1;
  return `${body.slice(0, end)}id: ${id}\n${body.slice(end)}`;
}

/**
 * A frame that only sets the reconnection delay.
 * @throws {RangeError} `ms` is not a non-negative integer.
 */
export function retryFrame(ms: number): string {
  return `retry: ${checkRetry(ms)}\n\n`;
}

/**
 * A frame that only holds a comment, which clients ignore.
 * @throws {TypeError} `text` is not a string or holds a lone surrogate.
 */
export function commentFrame(text: string): string {
  return commentLines(text) + "\n";
}

/**
 * Checks an id to be written on the wire and returns its text.
 * @throws {TypeError} It is not a string or number, or contains CR, LF or NUL.
 * @throws {RangeError} A number that is not finite.
 */
export function checkId(id: string | number): string {
  if (typeof id === "number") {
    if (!Number.isFinite(id)) {
      throw new RangeError(`Cannot encode event: \`id\` must be a finite number, got \`${id}\``);
    }
    return String(id);
  }
  checkText("id", id);
  if (hasLineBreak(id)) throw new TypeError("Cannot encode event: `id` contains a line break");
  // [spec] A browser ignores an id field that contains NUL, so it would silently be lost.
  if (id.includes("\0")) throw new TypeError("Cannot encode event: `id` contains NUL");
  return id;
}

/**
 * Whether `body` is one stored body as {@linkcode encodeBody} writes it: `event`, `data`,
 * `retry` or comment lines, LF only, ending with the one blank line. Anything else would split
 * into several events, carry a second id, or merge with the next frame at every client.
 * @returns Why it is not, or undefined when it is.
 */
export function bodyProblem(body: string): string | undefined {
  if (!body.endsWith("\n")) return "its body does not end with a line break";
  if (body.includes("\r")) return "its body contains a carriage return";
  const last = body.length - 1;
  let start = 0;
  while (start < last) {
    const end = body.indexOf("\n", start);
    if (end === start) return "its body holds more than one event";
    if (!isBodyField(body, start)) {
      return "its body holds a line that is not an event, data, retry or comment field";
    }
    start = end + 1;
  }
  return start === last ? undefined : "its body does not end with a blank line";
}

function isBodyField(body: string, at: number): boolean {
  return body.startsWith("data:", at) || body.startsWith("event:", at) ||
    body.startsWith("retry:", at) || body.startsWith(":", at);
}

function eventLine(type: string): string {
  checkText("event", type);
  if (hasLineBreak(type)) throw new TypeError("Cannot encode event: `event` contains a line break");
  return `event: ${type}\n`;
}

function idLine(id: string | number): string {
  return `id: ${checkId(id)}\n`;
}

function checkRetry(retry: number): number {
  if (typeof retry !== "number" || !Number.isSafeInteger(retry) || retry < 0) {
    throw new RangeError(
      `Cannot encode event: \`retry\` must be a non-negative integer, got \`${String(retry)}\``,
    );
  }
  return retry;
}

function commentLines(text: string): string {
  checkText("comment", text);
  // A one-line comment is by far the most common (heartbeats): no split.
  if (!hasLineBreak(text)) return text === "" ? ":\n" : `: ${text}\n`;
  return eachLine(text, ": ", ":\n");
}

function dataLines(data: unknown): string {
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
      throw new TypeError("Cannot encode event: `data` cannot be encoded as JSON", { cause });
    }
    if (json === undefined) {
      throw new TypeError(
        `Cannot encode event: \`data\` of type \`${typeOf(data)}\` has no JSON form`,
      );
    }
    // JSON.stringify escapes every line break and lone surrogate: one line, nothing to check.
    return `data: ${json}\n`;
  }
  if (!hasLineBreak(text)) return `data: ${text}\n`;
  return eachLine(text, "data: ", "data: \n");
}

/**
 * `prefix + line + "\n"` for every line of `text`, split on CRLF, CR and LF only (never on
 * U+2028 or U+0085, which the format treats as text). One pass; the parts are joined once, so
 * a megabyte of line breaks costs what a megabyte of text does.
 */
function eachLine(text: string, prefix: string, empty: string): string {
  const parts: string[] = [];
  const length = text.length;
  let start = 0;
  while (true) {
    let end = start;
    while (end < length) {
      const code = text.charCodeAt(end);
      if (code === 10 || code === 13) break;
      end++;
    }
    parts.push(end === start ? empty : prefix + text.slice(start, end) + "\n");
    if (end === length) break;
    start = text.charCodeAt(end) === 13 && text.charCodeAt(end + 1) === 10 ? end + 2 : end + 1;
  }
  return parts.join("");
}

function hasLineBreak(text: string): boolean {
  return text.includes("\n") || text.includes("\r");
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
