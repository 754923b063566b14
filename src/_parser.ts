/**
 * The parse engine behind `EventParserStream` (and the client): text in, callbacks out.
 *
 * It implements the WHATWG "event stream interpretation" steps on already-decoded text; the
 * callers decode UTF-8 (with replacement characters) in front of it and keep the BOM, which the
 * engine drops itself so that text and byte input behave alike.
 *
 * Why the hot path looks as it does:
 * - Lines are never cut out of a chunk: a line is a `[start, end)` range of the chunk, the field
 *   name is matched there by char codes, and only the value is sliced. Most lines are `data`
 *   lines, so that name is tested first.
 * - One `indexOf("\r")` per chunk picks the loop. Streams are nearly always LF-only, and then
 *   each line costs one `indexOf("\n")`; only chunks that hold a CR pay for a second cursor.
 * - No loop reads the result of a search made before it. The old engine searched for the first CR
 *   before its line loop and kept the result as a cursor; V8's optimizing compiler (TurboFan)
 *   treats an inlined `indexOf` as a pure value and re-ran that search inside the loop, over the
 *   whole chunk, for every line. A chunk without CR then cost time quadratic in its length: 1 MiB
 *   chunks parsed about 100 times slower per byte than 1 KiB ones. Here every search sits in the
 *   loop that reads it, and runs only once its previous result has been passed.
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
  onRetry?: ((ms: number) => void) | undefined;
  onComment?: ((text: string) => void) | undefined;
  /** Most UTF-16 code units one event (its pending line and data) may take. */
  maxEventSize: number;
}

const LF = 10;
const SPACE = 32;
const COLON = 58;
const BOM = 0xfeff;

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
    const length = chunk.length;
    if (length === 0) return;
    let i = 0;
    if (this.#start) {
      this.#start = false;
      // [spec] One leading BOM is dropped.
      if (chunk.charCodeAt(0) === BOM) i = 1;
    }
    if (this.#skipLF) {
      this.#skipLF = false;
      if (chunk.charCodeAt(i) === LF) i++;
    }
    if (i === length) return;
    // The result only picks a loop; neither loop reads it (see the module doc).
    if (chunk.indexOf("\r", i) === -1) this.#feedLF(chunk, i);
    else this.#feedCR(chunk, i);
  }

  /** Ends the stream: [spec] an event whose blank line never came is discarded. */
  end(): void {
    this.#pending = "";
    this.#data = "";
    this.#hasData = false;
    this.#type = "";
    this.#skipLF = false;
  }

  /** Parses a chunk, from `i` on, that holds no CR: every line ends with LF. */
  #feedLF(chunk: string, i: number): void {
    let end = chunk.indexOf("\n", i);
    if (end !== -1 && this.#pending !== "") {
      this.#joinPending(chunk, i, end);
      i = end + 1;
      end = chunk.indexOf("\n", i);
    }
    while (end !== -1) {
      this.#line(chunk, i, end);
      i = end + 1;
      // A blank line right after (one line in four in a typical stream) needs no search.
      if (chunk.charCodeAt(i) === LF) {
        this.#dispatch();
        i++;
      }
      end = chunk.indexOf("\n", i);
    }
    if (i < chunk.length) this.#keep(chunk, i);
  }

  /** Parses a chunk, from `i` on, that holds a CR: lines end with CR, LF or CRLF. */
  #feedCR(chunk: string, i: number): void {
    const length = chunk.length;
    // The next CR and LF at or after `i`, or `length` when there is none: each is searched for
    // again only once the line it ended has been consumed, so each stretch is scanned once.
    let cr = -1;
    let lf = -1;
    while (i < length) {
      if (cr < i) {
        cr = chunk.indexOf("\r", i);
        if (cr === -1) cr = length;
      }
      if (lf < i) {
        lf = chunk.indexOf("\n", i);
        if (lf === -1) lf = length;
      }
      let end = cr < lf ? cr : lf;
      if (end === length) break;
      if (this.#pending === "") this.#line(chunk, i, end);
      else this.#joinPending(chunk, i, end);
      if (end === cr) {
        // [spec] CRLF is one line end, also when a chunk boundary falls between the two.
        // (The end of the chunk is tested first: `lf` is `length` there too when no LF is left.)
        if (end + 1 === length) this.#skipLF = true;
        else if (lf === end + 1) end = lf;
      }
      i = end + 1;
    }
    if (i < length) this.#keep(chunk, i);
  }

  /** Ends the pending line with `chunk[start, end)` and parses it. */
  #joinPending(chunk: string, start: number, end: number): void {
    const line = this.#pending + chunk.slice(start, end);
    this.#pending = "";
    this.#line(line, 0, line.length);
  }

  /** Keeps the unterminated end of a chunk for the next one. */
  #keep(chunk: string, start: number): void {
    this.#pending += chunk.slice(start);
    this.#checkSize();
  }

  /** Parses the line `text[start, end)`; `end` is its line end or the end of `text`. */
  #line(text: string, start: number, end: number): void {
    if (start === end) return this.#dispatch();
    // Field names are matched where they stand, so only a value is ever sliced. No test here needs
    // a bound: `text[end]` is CR, LF or past the end of `text`, which matches no name, colon or
    // space, so nothing can match across the line end. Most lines are `data` lines: they are
    // handled here, small enough for the optimizer to inline into the loops; the rest is apart.
    if (!isData(text, start)) return this.#otherLine(text, start, end);
    const from = valueStart(text, start + 4, end);
    if (from === -1) return;
    const value = text.slice(from, end);
    // [spec] Append the value and an LF; the last LF is removed at dispatch.
    if (this.#hasData) this.#data += "\n" + value;
    else {
      this.#data = value;
      this.#hasData = true;
    }
    if (this.#data.length > this.#callbacks.maxEventSize) this.#tooLarge();
  }

  /** Parses a line that is not a blank line and not a `data` line. */
  #otherLine(text: string, start: number, end: number): void {
    let from: number;
    // [spec] Any other field is ignored.
    switch (text.charCodeAt(start)) {
      case COLON: {
        const callbacks = this.#callbacks;
        // Without a listener the text is not even sliced.
        if (callbacks.onComment === undefined) return;
        from = text.charCodeAt(start + 1) === SPACE ? start + 2 : start + 1;
        return callbacks.onComment(text.slice(from, end));
      }
      case 101: // e
        if (!isEvent(text, start)) return;
        from = valueStart(text, start + 5, end);
        if (from !== -1) this.#type = text.slice(from, end);
        return;
      case 105: // i
        if (text.charCodeAt(start + 1) !== 100) return;
        from = valueStart(text, start + 2, end);
        // [spec] An id with NUL is ignored entirely.
        if (from !== -1 && !hasNul(text, from, end)) this.#idBuffer = text.slice(from, end);
        return;
      case 114: // r
        if (!isRetry(text, start)) return;
        from = valueStart(text, start + 5, end);
        // [spec] Only ASCII digits; anything else ignores the field.
        if (from !== -1 && isDigits(text, from, end)) {
          this.#callbacks.onRetry?.(Number(text.slice(from, end)));
        }
        return;
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
    if (this.#pending.length + this.#data.length > this.#callbacks.maxEventSize) this.#tooLarge();
  }

  #tooLarge(): never {
    const limit = this.#callbacks.maxEventSize;
    this.end();
    throw new EventTooLargeError(limit);
  }
}

/**
 * Where the value of a field whose name ends at `nameEnd` starts, or -1 when the name goes on (the
 * line holds another field, such as `dataset`).
 */
function valueStart(text: string, nameEnd: number, end: number): number {
  // [spec] A line without a colon is a field name with an empty value.
  if (nameEnd === end) return end;
  if (text.charCodeAt(nameEnd) !== COLON) return -1;
  // [spec] One space after the colon is dropped; any more belong to the value.
  return text.charCodeAt(nameEnd + 1) === SPACE ? nameEnd + 2 : nameEnd + 1;
}

// Field names are compared by char code: `startsWith` is a builtin call in V8, slower than these
// comparisons, which the optimizer compiles to a few loads. The first letter of `event` and
// `retry` has been matched by the caller's `switch`.

function isData(text: string, i: number): boolean {
  return text.charCodeAt(i) === 100 && text.charCodeAt(i + 1) === 97 &&
    text.charCodeAt(i + 2) === 116 && text.charCodeAt(i + 3) === 97;
}

function isEvent(text: string, i: number): boolean {
  return text.charCodeAt(i + 1) === 118 && text.charCodeAt(i + 2) === 101 &&
    text.charCodeAt(i + 3) === 110 && text.charCodeAt(i + 4) === 116;
}

function isRetry(text: string, i: number): boolean {
  return text.charCodeAt(i + 1) === 101 && text.charCodeAt(i + 2) === 116 &&
    text.charCodeAt(i + 3) === 114 && text.charCodeAt(i + 4) === 121;
}

// The value checks read the line in place, not a slice of it: in JavaScriptCore the first read
// of a slice copies it out of its parent string.

function hasNul(text: string, from: number, end: number): boolean {
  for (let i = from; i < end; i++) if (text.charCodeAt(i) === 0) return true;
  return false;
}

function isDigits(text: string, from: number, end: number): boolean {
  if (from === end) return false;
  for (let i = from; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}
