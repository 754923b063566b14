import { type ParsedEvent, Parser } from "./_parser.ts";

export type { ParsedEvent } from "./_parser.ts";
export { EventTooLargeError } from "./_parser.ts";

/** Options of {@linkcode EventParserStream}. */
export interface EventParserStreamOptions {
  /**
   * The last event id carried over from a previous connection: events without an `id` field
   * report it until the stream sets another.
   * @default {""}
   */
  lastEventId?: string | undefined;
  /** Called with the new reconnection time whenever a valid `retry` field arrives. */
  onRetry?(ms: number): void;
  /** Called with the text of every comment line (after the colon and one optional space). */
  onComment?(text: string): void;
  /**
   * The most UTF-16 code units one event may hold (its data plus a line still being read). A
   * server that sends more makes the stream error with an `EventTooLargeError` (a `RangeError`)
   * instead of buffering without bound.
   * @default {16_777_216}
   */
  maxEventSize?: number | undefined;
}

/**
 * Parses a `text/event-stream` body into the events an `EventSource` would dispatch, following
 * the WHATWG "event stream interpretation" algorithm to the letter: UTF-8 with replacement
 * characters, one leading BOM dropped, CR, LF and CRLF line ends (also a CRLF split across
 * chunks), one optional space after the colon, unknown fields ignored, an `id` with NUL ignored,
 * `retry` only when all ASCII digits, and no dispatch of an event whose blank line never came.
 *
 * @see {@link https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation}
 *
 * @example Parse a response body
 * ```ts
 * import { EventParserStream } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const body = new Response("event: greet\ndata: hello\n\ndata: a\ndata: b\n\n").body!;
 * const events = [];
 * for await (const event of body.pipeThrough(new EventParserStream())) events.push(event);
 * assert.deepEqual(events, [
 *   { type: "greet", data: "hello", lastEventId: "" },
 *   { type: "message", data: "a\nb", lastEventId: "" },
 * ]);
 * ```
 */
export class EventParserStream extends TransformStream<Uint8Array | string, ParsedEvent> {
  #parser: Parser;

  /**
   * Creates a parser.
   * @param options Carried-over last event id, callbacks and limits.
   */
  constructor(options: EventParserStreamOptions = {}) {
    const maxEventSize = options.maxEventSize ?? 16_777_216;
    if (!(maxEventSize > 0)) {
      throw new RangeError(
        `Cannot create parser: \`maxEventSize\` must be positive, got \`${maxEventSize}\``,
      );
    }
    // The engine drops the one leading BOM itself, for text and byte input alike.
    const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
    let parser!: Parser;
    super({
      start(controller) {
        parser = new Parser({
          onEvent: (event) => controller.enqueue(event),
          onRetry: options.onRetry,
          onComment: options.onComment,
          maxEventSize,
        }, options.lastEventId ?? "");
      },
      transform(chunk) {
        parser.feed(typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true }));
      },
      flush() {
        parser.feed(decoder.decode());
        parser.end();
      },
    });
    this.#parser = parser;
  }

  /**
   * What the next `Last-Event-ID` header must carry: the last event id as of the last dispatch
   * point (set also by a block that has an `id` but no data, exactly as `EventSource` does).
   */
  get lastEventId(): string {
    return this.#parser.lastEventId;
  }
}
