/**
 * Wire-format fixtures for the browser conformance suite, from the parsing rules of the WHATWG
 * "event stream interpretation" section and the web-platform-tests `eventsource/format-*` tests.
 *
 * No case states its expected events: headless Chromium's `EventSource` is the oracle, and the
 * suite asserts that `EventParserStream` and `connect()` agree with it.
 *
 * @see {@link https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation}
 * @see {@link https://github.com/web-platform-tests/wpt/tree/master/eventsource}
 * @module
 */

/** A chunk: text is sent as UTF-8, an array of numbers as raw bytes. */
export type Chunk = string | number[];

/** One fixture. */
export interface ConformanceCase {
  /** What the case is about, used in the test name. */
  name: string;
  /** The response body. */
  chunks: Chunk[];
  /**
   * Ms the server waits before each chunk after the first, so that each reaches the client in its
   * own read; without it the chunks go out as one body.
   */
  pause?: number;
  /** Event types other than `message` that the case dispatches (listened to in the browser). */
  types?: string[];
}

const encoder = new TextEncoder();

/** The chunks of a case as bytes. */
export function chunkBytes(chunks: readonly Chunk[]): Uint8Array<ArrayBuffer>[] {
  return chunks.map((chunk) =>
    typeof chunk === "string" ? encoder.encode(chunk) : Uint8Array.from(chunk)
  );
}

/** Every character of `text` as its own chunk. */
function perChar(text: string): string[] {
  return Array.from(text);
}

const LONG = "x".repeat(300_000);

/** The fixtures (more than 40). */
export const CASES: readonly ConformanceCase[] = [
  // Dispatch and data.
  { name: "one event", chunks: ["data: hello\n\n"] },
  { name: "multi-line data joins with LF", chunks: ["data: a\ndata: b\ndata: c\n\n"] },
  { name: "two events in one chunk", chunks: ["data: 1\n\ndata: 2\n\n"] },
  { name: "a field without colon has an empty value", chunks: ["data\n\ndata\ndata\n\n"] },
  { name: "data with colon and nothing after", chunks: ["data:\n\n"] },
  { name: "no space after the colon", chunks: ["data:x\n\n"] },
  { name: "only one leading space is dropped", chunks: ["data:  two spaces\n\n"] },
  { name: "a leading tab is kept", chunks: ["data:\tx\n\n"] },
  { name: "a value with colons", chunks: ["data: a:b: c\n\n"] },
  { name: "a data line that is one space", chunks: ["data: \n\n"] },
  { name: "NUL in data is kept", chunks: ["data: a\0b\n\n"] },
  { name: "U+2028 and U+0085 are not line breaks", chunks: ["data: a\u2028b\u0085c\n\n"] },
  { name: "extra blank lines dispatch nothing", chunks: ["\n\n\ndata: x\n\n\n\n"] },
  { name: "an event without data is not dispatched", chunks: ["event: e\n\ndata: x\n\n"] },
  // Event types.
  { name: "a named event", chunks: ["event: foo\ndata: x\n\n"], types: ["foo"] },
  {
    name: "the type resets after dispatch",
    chunks: ["event: foo\ndata: 1\n\ndata: 2\n\n"],
    types: ["foo"],
  },
  { name: "an empty event name means message", chunks: ["event:\ndata: x\n\n"] },
  {
    name: "the last event field wins",
    chunks: ["event: foo\nevent: bar\ndata: x\n\n"],
    types: ["foo", "bar"],
  },
  { name: "an event name keeps a second space", chunks: ["event:  sp\ndata\n\n"], types: [" sp"] },
  { name: "an event named message", chunks: ["event: message\ndata: x\n\n"] },
  // Comments and unknown fields.
  { name: "comments are ignored", chunks: [": hi\n:\n:no space\ndata: x\n: between\n\n"] },
  { name: "a comment-only stream dispatches nothing", chunks: [": one\n\n: two\n\n"] },
  { name: "unknown fields are ignored", chunks: ["foo: bar\ndata: x\nbaz\n\n"] },
  { name: "field names are case-sensitive", chunks: ["DATA: no\nData: no\ndata: yes\n\n"] },
  { name: "a space before the colon makes another field", chunks: ["data : no\ndata: yes\n\n"] },
  // Line endings.
  { name: "CR line endings", chunks: ["data: a\rdata: b\r\r"] },
  { name: "CRLF line endings", chunks: ["data: a\r\ndata: b\r\n\r\n"] },
  { name: "mixed line endings", chunks: ["data: a\r\n\rdata: b\n\r\ndata: c\r\n\n"] },
  {
    name: "CRLF split across chunks",
    chunks: ["data: a\r", "\ndata: b\r", "\n\r", "\n"],
    pause: 15,
  },
  { name: "CR then CR across chunks", chunks: ["data: a\r", "\rdata: b\r", "\r"], pause: 15 },
  { name: "LF then CRLF", chunks: ["data: a\n\r\n"] },
  { name: "a field name split across chunks", chunks: ["da", "ta: x", "\n", "\n"], pause: 15 },
  {
    name: "every character in its own chunk",
    chunks: perChar("event: e\r\nid: 9\ndata: a\r\n\r\n"),
    pause: 2,
    types: ["e"],
  },
  // BOM.
  { name: "a leading BOM is dropped", chunks: ["\uFEFFdata: 1\n\n"] },
  {
    name: "a second BOM is part of the field name",
    chunks: ["\uFEFF\uFEFFdata: 1\n\ndata: 2\n\n"],
  },
  {
    name: "a BOM split across chunks",
    chunks: [[0xef, 0xbb], [0xbf], "data: 1\n\n"],
    pause: 15,
  },
  { name: "a BOM after the start is text", chunks: ["data: x\n\n\uFEFFdata: y\n\n"] },
  // Ids.
  { name: "an id", chunks: ["id: 1\ndata: x\n\n"] },
  { name: "an id persists across events", chunks: ["id: 1\ndata: a\n\ndata: b\n\n"] },
  { name: "an empty id resets it", chunks: ["id: 1\ndata: a\n\nid\ndata: b\n\n"] },
  { name: "an id with NUL is ignored", chunks: ["id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n"] },
  { name: "an id-only block sets the last event id", chunks: ["id: 5\n\ndata: x\n\n"] },
  { name: "an id after data in the same block", chunks: ["data: x\nid: 3\n\n"] },
  { name: "a non-ASCII id", chunks: ["id: é✓😀\ndata: x\n\n"] },
  { name: "an id keeps a second space", chunks: ["id:  a b\ndata: x\n\n"] },
  { name: "an id in an unterminated block is not used", chunks: ["id: 1\ndata: a\n\nid: 2\n"] },
  // Retry.
  { name: "a valid retry", chunks: ["retry: 10\ndata: x\n\n"] },
  {
    name: "bad retry values are ignored",
    chunks: ["retry: 1a\nretry: -1\nretry: 1.5\nretry:  10\nretry\ndata: x\n\n"],
  },
  // End of stream.
  { name: "an unterminated last event is dropped", chunks: ["data: a\n\ndata: b"] },
  { name: "a last event with one newline is dropped", chunks: ["data: a\n\ndata: b\n"] },
  { name: "a last event ending with CR is dropped", chunks: ["data: a\n\ndata: b\r"] },
  // Encoding.
  {
    name: "invalid UTF-8 becomes U+FFFD",
    chunks: [[...encoder.encode("data: "), 0xff, 0xfe, 10, 10]],
  },
  {
    name: "a UTF-8 sequence split across chunks",
    chunks: [[...encoder.encode("data: "), 0xe2, 0x82], [0xac, 10, 10]],
    pause: 15,
  },
  {
    name: "an invalid sequence in the middle",
    chunks: [[...encoder.encode("data: "), 0xe2, 0x28, 0xa1, 0x41, 10, 10]],
  },
  {
    name: "a truncated sequence at the end of a line",
    chunks: [[...encoder.encode("data: a"), 0xf0, 0x9f, 10, 10]],
  },
  { name: "astral characters", chunks: ["data: 😀𝄞\n\n"] },
  // Size.
  { name: "a very long line", chunks: [`data: ${LONG}\n\n`] },
  {
    name: "a very long line in many chunks",
    chunks: ["data: ", ...Array.from({ length: 10 }, () => LONG.slice(0, 30_000)), "\n\n"],
    pause: 3,
  },
  {
    name: "a thousand events in one chunk",
    chunks: [Array.from({ length: 1_000 }, (_, i) => `id: ${i}\ndata: ${i}\n\n`).join("")],
  },
];
