import { formatEvent, type ServerSentEvent } from "./format_event.ts";
import { encodeText } from "./_bytes.ts";

/**
 * Encodes a stream of events into the bytes of a `text/event-stream` body, one frame per event
 * (see {@linkcode formatEvent} for the rules). An event that cannot be encoded errors the stream
 * with that `TypeError`/`RangeError`; nothing partial is written.
 *
 * For a response with heartbeats, backpressure and disconnect detection, use `EventStream` or
 * `sseResponse` instead; this is the plain building block.
 *
 * @example Encode events from a ReadableStream
 * ```ts
 * import { EventEncoderStream } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const body = ReadableStream.from([{ data: "a" }, { event: "end", data: null }])
 *   .pipeThrough(new EventEncoderStream());
 * assert.equal(await new Response(body).text(), "data: a\n\nevent: end\ndata: null\n\n");
 * ```
 */
export class EventEncoderStream extends TransformStream<ServerSentEvent, Uint8Array> {
  /** Creates an encoder. */
  constructor() {
    super({
      transform(event, controller) {
        controller.enqueue(encodeText(formatEvent(event)));
      },
    });
  }
}
