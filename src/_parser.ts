/**
 * The parse engine behind `EventParserStream` (and the client): text in, callbacks out.
 *
 * It implements the WHATWG "event stream interpretation" steps on already-decoded text; the
 * stream adapter does the UTF-8 decoding (with replacement characters) in front of it.
 *
 * @see {@link https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation}
 * @module
 */

/** An event as `EventSource` dispatches it. */
export interface ParsedEvent {
  /** The event type: the last `event` field of the block, or `"message"`. */
  type: string;
  /** The data lines of the block joined with LF. */
  data: string;
  /** The last event id in force when the event was dispatched. */
  lastEventId: string;
}

/** Callbacks and limits of the parse engine. */
export interface ParserCallbacks {
  onEvent(event: ParsedEvent): void;
  onRetry?(ms: number): void;
  onComment?(text: string): void;
  /** Most UTF-16 code units one event (its pending line and data) may take. */
  maxEventSize: number;
}

const LF = 10;
const CR = 13;
const SPACE = 32;

/** Thrown when one event grows past `maxEventSize`. */
export class EventTooLargeError extends RangeError {
  /** The limit that was exceeded, in UTF-16 code units. */
  readonly limit: number;
  /** Creates the error for a given limit. */
  constructor(limit: number) {
    super(`Cannot parse event stream: an event exceeds \`maxEventSize\` of ${limit} characters`);
    this.name = "EventTooLargeError";
    this.limit = limit;
  }
}

export class Parser {
  #callbacks: ParserCallbacks;
  /** The start of a line whose end has not arrived yet. */
  #pending = "";
  #data = "";
  #hasData = false;
  #type = "";
  /** [spec] The "last event ID buffer": kept across events, not reset at dispatch. */
  #idBuffer: string;
  /** The id of the last dispatch point: what a reconnect must send as `Last-Event-ID`. */
  lastEventId: string;
  /** A chunk ended with CR: an LF at the start of the next one belongs to it. */
  #skipLF = false;
  #start = true;

  constructor(callbacks: ParserCallbacks, lastEventId = "") {
    this.#callbacks = callbacks;
    this.#idBuffer = lastEventId;
    this.lastEventId = lastEventId;
  }

  /** Feeds the next piece of decoded text. */
  feed(chunk: string): void {
    let i = 0;
    const length = chunk.length;
    if (length === 0) return;
    if (this.#start) {
      this.#start = false;
      // [spec] One leading BOM is dropped (the decoder already did so for byte input).
      if (chunk.charCodeAt(0) === 0xfeff) i = 1;
    }
    if (this.#skipLF) {
      this.#skipLF = false;
      if (chunk.charCodeAt(i) === LF) i++;
    }
    // Two cursors for the next CR and the next LF: each indexOf scans a stretch of text once,
    // where a per-character loop in JS would be several times slower on long data lines.
    let nextLF = chunk.indexOf("\n", i);
    let nextCR = chunk.indexOf("\r", i);
    while (i < length) {
      if (nextLF !== -1 && nextLF < i) nextLF = chunk.indexOf("\n", i);
      if (nextCR !== -1 && nextCR < i) nextCR = chunk.indexOf("\r", i);
      let end: number;
      if (nextCR === -1) end = nextLF;
      else if (nextLF === -1) end = nextCR;
      else end = nextCR < nextLF ? nextCR : nextLF;
      if (end === -1) {
        this.#pending += chunk.slice(i);
        this.#checkSize();
        return;
      }
      let line = chunk.slice(i, end);
      if (this.#pending !== "") {
        line = this.#pending + line;
        this.#pending = "";
      }
      if (chunk.charCodeAt(end) === CR) {
        if (end + 1 === length) this.#skipLF = true;
        else if (chunk.charCodeAt(end + 1) === LF) end++;
      }
      i = end + 1;
      this.#line(line);
    }
  }

  /** Ends the stream: [spec] an event whose blank line never came is discarded. */
  end(): void {
    this.#pending = "";
    this.#data = "";
    this.#hasData = false;
    this.#type = "";
    this.#skipLF = false;
  }

  #line(line: string): void {
    const length = line.length;
    if (length === 0) return this.#dispatch();
    const colon = line.indexOf(":");
    if (colon === 0) {
      this.#callbacks.onComment?.(line.charCodeAt(1) === SPACE ? line.slice(2) : line.slice(1));
      return;
    }
    let field: string;
    let value: string;
    if (colon === -1) {
      // [spec] A line without a colon is a field name with an empty value.
      field = line;
      value = "";
    } else {
      field = line.slice(0, colon);
      // [spec] One space after the colon is dropped; any more belong to the value.
      value = line.slice(line.charCodeAt(colon + 1) === SPACE ? colon + 2 : colon + 1);
    }
    switch (field) {
      case "data":
        // [spec] Append the value and an LF; the last LF is removed at dispatch.
        if (this.#hasData) this.#data += "\n" + value;
        else {
          this.#data = value;
          this.#hasData = true;
        }
        this.#checkSize();
        break;
      case "event":
        this.#type = value;
        break;
      case "id":
        // [spec] An id with NUL is ignored entirely.
        if (!value.includes("\0")) this.#idBuffer = value;
        break;
      case "retry":
        // [spec] Only ASCII digits; anything else ignores the field.
        if (isDigits(value)) this.#callbacks.onRetry?.(Number(value));
        break;
        // [spec] Any other field is ignored.
    }
  }

  #dispatch(): void {
    // [spec] The last event id is set at every dispatch point, even when nothing is dispatched.
    this.lastEventId = this.#idBuffer;
    if (!this.#hasData) {
      this.#type = "";
      return;
    }
    const event: ParsedEvent = {
      type: this.#type === "" ? "message" : this.#type,
      data: this.#data,
      lastEventId: this.#idBuffer,
    };
    this.#data = "";
    this.#hasData = false;
    this.#type = "";
    this.#callbacks.onEvent(event);
  }

  #checkSize(): void {
    if (this.#pending.length + this.#data.length > this.#callbacks.maxEventSize) {
      const limit = this.#callbacks.maxEventSize;
      this.end();
      throw new EventTooLargeError(limit);
    }
  }
}

function isDigits(value: string): boolean {
  if (value.length === 0) return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}
