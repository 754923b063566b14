/**
 * Server-Sent Events for Deno, Bun, edge functions and any framework that returns a `Response`:
 * the wire format (encoder and a parser that reads exactly as `EventSource` does), one
 * connection's bounded {@linkcode EventStream}, {@linkcode sseResponse}, and a
 * {@linkcode Broker} that fans events out to channels with history and `Last-Event-ID` replay.
 *
 * Zero dependencies, web standards only. The reconnecting client, the Redis bridge and Web Push
 * live in their own entry points (`@flume/sse/client`, `@flume/sse/redis`,
 * `@flume/sse/webpush`), so importing this module loads none of them.
 *
 * @example Stream a tick every second; the producer stops when the client goes away
 * ```ts
 * import { sseResponse } from "@flume/sse";
 *
 * function handler(_request: Request): Response {
 *   return sseResponse(async (stream) => {
 *     for (let n = 1; !stream.signal.aborted; n++) {
 *       await stream.publish({ n }, { event: "tick", id: String(n) });
 *       await new Promise((resolve) => setTimeout(resolve, 1000));
 *     }
 *   });
 * }
 * // Deno.serve(handler) or Bun.serve({ fetch: handler })
 * ```
 *
 * @module
 */

export { formatEvent, type ServerSentEvent } from "./src/format_event.ts";
export { EventEncoderStream } from "./src/event_encoder_stream.ts";
export {
  EventParserStream,
  type EventParserStreamOptions,
  EventTooLargeError,
  type ParsedEvent,
} from "./src/event_parser_stream.ts";
export {
  EventStream,
  type EventStreamOptions,
  type OverflowPolicy,
  type PublishOptions,
} from "./src/event_stream.ts";
export { sseResponse, type SseResponseInit, type SseSource } from "./src/sse_response.ts";
export { StreamClosedError, type StreamCloseReason, StreamOverflowError } from "./src/errors.ts";
export {
  Broker,
  BrokerClosedError,
  type BrokerCloseOptions,
  BrokerLimitError,
  type BrokerMetrics,
  type BrokerOptions,
  type BrokerPublishOptions,
  formatMetrics,
  type PublishRest,
  STREAM_RESET_EVENT,
  type SubscribeOptions,
} from "./src/broker.ts";
export type { Bridge, BridgeEvent, BridgeReplay } from "./src/bridge.ts";
