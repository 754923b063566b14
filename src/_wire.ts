/**
 * The one owner of the `text/event-stream` text this package writes: every frame, id line, retry
 * frame and comment on the wire is written here, and every check of "is this one frame?" asks
 * here. No other file spells the syntax.
 *
 * One field order for every path: comment lines, `event`, `id`, `retry`, `data`. A stored event
 * (the broker's) is kept as its body without the id, which is only known once the bridge has
 * ordered it; {@linkcode withId} puts the id line in its place.
 *
 * Every splitter here is linear in the size of the data whatever its line endings: a short text is
 * split as a string, a long one as bytes in two passes over one buffer (see {@linkcode eachLine}),
 * so a megabyte of line breaks never becomes a million strings. A frame is at most
 * {@linkcode MAX_FRAME_LENGTH} characters: anything larger is refused before it is built.
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

/**
 * The longest frame, in UTF-16 code units, that encoding builds: 128 Mi (134,217,728). Above it
 * encoding throws a `RangeError` before any large allocation. A frame is a string and then its
 * UTF-8 bytes (up to three times as long), and V8 cannot make a string longer than 2^29 - 24 at
 * all (Deno used to die "out of memory" on 100 MB of line breaks, which makes a 700 MB frame);
 * 10 MB of data with any line endings (at most 70 Mi characters once every line has its `data: `)
 * stays well inside, and anything larger belongs behind a URL, not in an event.
 */
export const MAX_FRAME_LENGTH = 134_217_728;

/** The keepalive comment: an empty comment line and the blank line that ends the frame. */
export const HEARTBEAT_FRAME = ":\n\n";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encodeUtf8 = new TextEncoder();
/** For bytes made from a well-formed string: no validation to fail, and faster than `fatal`. */
const looseUtf8 = new TextDecoder("utf-8", { ignoreBOM: true });

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
  return checkFrameLength(frame.length + 1, frame + "\n");
}

/**
 * The body of a stored event: its `event` line (when named) and its data, without an id.
 * @throws {TypeError} The name or data cannot be carried.
 */
export function encodeBody(type: string | undefined, data: unknown): string {
  const body = (type === undefined ? "" : eventLine(type)) + dataLines(data);
  return checkFrameLength(body.length + 1, body + "\n");
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
  if (!hasLineBreak(text)) {
    return text === "" ? ":\n" : `: ${checkFrameLength(text.length + 3, text)}\n`;
  }
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
    return `data: ${checkFrameLength(json.length + 7, json)}\n`;
  }
  if (!hasLineBreak(text)) return `data: ${checkFrameLength(text.length + 7, text)}\n`;
  return eachLine(text, "data: ", "data: \n");
}

/** Texts up to this length are split as strings; longer ones as bytes (see `eachLongLine`). */
const SHORT_TEXT = 4_096;
const LF = 10;
const CR = 13;

/**
 * `prefix + line + "\n"` for every line of `text` (`empty` for an empty line), split on CRLF, CR
 * and LF only (never on U+2028 or U+0085, which the format treats as text).
 *
 * A short text is split as a string: one pass, the parts joined once. Not a long one: a string
 * per line is what made a megabyte of line breaks cost 40-60 ms (a million strings to make and
 * join) and ten megabytes cost seconds and gigabytes.
 */
function eachLine(text: string, prefix: string, empty: string): string {
  if (text.length > SHORT_TEXT) return eachLongLine(text, prefix, empty);
  const parts: string[] = [];
  const length = text.length;
  let start = 0;
  while (true) {
    let end = start;
    while (end < length) {
      const code = text.charCodeAt(end);
      if (code === LF || code === CR) break;
      end++;
    }
    parts.push(end === start ? empty : prefix + text.slice(start, end) + "\n");
    if (end === length) break;
    start = text.charCodeAt(end) === CR && text.charCodeAt(end + 1) === LF ? end + 2 : end + 1;
  }
  return parts.join("");
}

/**
 * {@linkcode eachLine} for a long text, as bytes: its UTF-8 form is scanned once to size the
 * result exactly (and refuse a frame over {@linkcode MAX_FRAME_LENGTH} before allocating it),
 * copied once into one buffer with the prefixes put in, and decoded once. No string per line:
 * linear in the size of the text whatever its line endings (about 10 ms per MiB of line breaks).
 * CR and LF bytes never occur inside a multi-byte UTF-8 sequence, so copying the other bytes as
 * they are keeps every character whole. `prefix` and `empty` are ASCII.
 */
function eachLongLine(text: string, prefix: string, empty: string): string {
  const input = encodeUtf8.encode(text);
  const length = input.length;
  // Line breaks (a CRLF pair counts once), the bytes they take, and the lines that are empty.
  let breaks = 0;
  let breakBytes = 0;
  let empties = 0;
  let atStart = true;
  for (let i = 0; i < length; i++) {
    const c = input[i]!;
    if (c !== LF && c !== CR) {
      atStart = false;
      continue;
    }
    if (atStart) empties++;
    atStart = true;
    breaks++;
    breakBytes++;
    if (c === CR && i + 1 < length && input[i + 1] === LF) {
      i++;
      breakBytes++;
    }
  }
  if (atStart) empties++;
  const full = breaks + 1 - empties;
  const around = full * (prefix.length + 1) + empties * empty.length;
  // Added characters are ASCII: the result's length in code units follows from the text's.
  checkFrameLength(text.length - breakBytes + around, text);
  const out = new Uint8Array(length - breakBytes + around);
  const head = encodeUtf8.encode(prefix);
  const blank = encodeUtf8.encode(empty);
  let o = 0;
  atStart = true;
  for (let i = 0; i < length; i++) {
    const c = input[i]!;
    if (c === LF || c === CR) {
      if (c === CR && i + 1 < length && input[i + 1] === LF) i++;
      // Byte loops, not `set`: a builtin call per line costs more than the copy of a few bytes.
      if (atStart) { for (let k = 0; k < blank.length; k++) out[o++] = blank[k]!; }
      else out[o++] = LF;
      atStart = true;
      continue;
    }
    if (atStart) {
      for (let k = 0; k < head.length; k++) out[o++] = head[k]!;
      atStart = false;
    }
    out[o++] = c;
  }
  if (atStart) out.set(blank, o);
  else out[o] = LF;
  return looseUtf8.decode(out);
}

/**
 * Returns `value` when a frame of `length` code units is within {@linkcode MAX_FRAME_LENGTH}.
 * @throws {RangeError} It is not.
 */
function checkFrameLength<T>(length: number, value: T): T {
  if (length > MAX_FRAME_LENGTH) {
    throw new RangeError(
      `Cannot encode event: the frame would exceed ${MAX_FRAME_LENGTH} characters, got \`${length}\``,
    );
  }
  return value;
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
