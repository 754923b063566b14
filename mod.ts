/**
 * Server-Sent Events for Deno, Bun, edge functions and any framework that returns a `Response`.
 * Zero dependencies, web standards only (`ReadableStream`, `TransformStream`, `Response`,
 * `AbortSignal`).
 *
 * - The wire format: {@linkcode formatEvent} and {@linkcode EventEncoderStream} write events
 *   exactly as the WHATWG spec says, refusing what the format cannot carry;
 *   {@linkcode EventParserStream} reads a stream exactly as `EventSource` does.
 * - One connection: {@linkcode EventStream} (a bounded queue, heartbeats while idle, one
 *   `AbortSignal` for every way a client can go away) and {@linkcode sseResponse}, which turns an
 *   `EventStream`, a stream or iterable of events, or a producer function into a `Response`.
 * - Many connections: a {@linkcode Broker} with channels, fan-out that encodes each event once,
 *   bounded per-client buffers with a slow-consumer policy, and `Last-Event-ID` replay from
 *   history, with the {@linkcode STREAM_RESET_EVENT} gap signal when what a client missed is no
 *   longer known.
 *
 * The reconnecting client, the Redis bridge and Web Push are separate entry points
 * (`@flume/sse/client`, `@flume/sse/redis`, `@flume/sse/webpush`): importing this module loads
 * none of them.
 *
 * @example Stream events from a producer; it stops when the client goes away
 * ```ts
 * import assert from "node:assert/strict";
 * import { sseResponse } from "@flume/sse";
 *
 * function handler(_request: Request): Response {
 *   return sseResponse(async (stream) => {
 *     for (let n = 1; n <= 2 && !stream.signal.aborted; n++) {
 *       await stream.publish({ n }, { event: "tick", id: n });
 *     }
 *   }, { heartbeat: null });
 * }
 * // Deno.serve(handler) or Bun.serve({ fetch: handler })
 *
 * const response = handler(new Request("http://127.0.0.1/"));
 * assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
 * assert.equal(
 *   await response.text(),
 *   ':\n\nevent: tick\nid: 1\ndata: {"n":1}\n\nevent: tick\nid: 2\ndata: {"n":2}\n\n',
 * );
 * ```
 *
 * @example Fan out to channels, and resume a client that reconnects
 * ```ts
 * import assert from "node:assert/strict";
 * import { Broker, EventParserStream } from "@flume/sse";
 *
 * const broker = new Broker({ history: 100, heartbeat: null });
 * // In a handler: return broker.response(`user:${user}`, request);
 * const tab = broker.subscribe("user:ana");
 * const events = tab.readable.pipeThrough(new EventParserStream()).getReader();
 *
 * await broker.publish("user:ana", { text: "hi" }, { event: "notification" });
 * const { value: first } = await events.read();
 * assert.equal(first?.data, '{"text":"hi"}');
 * tab.close(); // the connection drops
 *
 * await broker.publish("user:ana", { text: "missed" }, { event: "notification" });
 * const back = broker.subscribe("user:ana", { lastEventId: first?.lastEventId });
 * const resumed = back.readable.pipeThrough(new EventParserStream()).getReader();
 * assert.equal((await resumed.read()).value?.data, '{"text":"missed"}');
 * await broker.close();
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
export {
  BrokerClosedError,
  BrokerLimitError,
  type BrokerLimitErrorOptions,
  type BrokerLimitReason,
  StreamClosedError,
  type StreamClosedErrorOptions,
  type StreamCloseReason,
  StreamOverflowError,
  type StreamOverflowErrorOptions,
} from "./src/errors.ts";
export {
  Broker,
  type BrokerCloseOptions,
  type BrokerOptions,
  type BrokerPublishOptions,
  type EventVocabulary,
  type PublishRest,
  STREAM_RESET_EVENT,
  type SubscribeOptions,
} from "./src/broker.ts";
export { type BrokerMetrics, formatMetrics } from "./src/format_metrics.ts";
export type {
  Bridge,
  BridgeEvent,
  BridgeGap,
  BridgePartitions,
  BridgeReplay,
  HistoryLimits,
} from "./src/bridge.ts";
