/**
 * Resumable streams for `@flume/sse`: a generation (a model's answer, an agent's steps, a long
 * job's progress) runs under an id to completion whether or not anyone is connected, its events
 * are kept with ids until it ends plus a retention time, and any number of readers attach, come
 * back with `Last-Event-ID` after a reload or a network switch, and get everything they missed,
 * the live tail, then an `end` event and the end of the body: "finished", told apart from "cut
 * off". In memory for one process, or in Redis so that any worker serves any reader, a second
 * start of a running id starts nothing on any worker, and "stop" on any worker stops the
 * producer wherever it runs.
 *
 * @example A chat route and its resume route
 * ```ts
 * import assert from "node:assert/strict";
 * import { EventParserStream } from "@flume/sse";
 * import { ResumableStreams } from "@flume/sse/resumable";
 *
 * const resumable = new ResumableStreams({ retention: 10 * 60_000, heartbeat: null });
 *
 * async function handler(request: Request): Promise<Response> {
 *   const id = new URL(request.url).searchParams.get("chat") ?? "";
 *   if (request.method === "POST") {
 *     await resumable.start(id, async (stream) => {
 *       for (const token of ["The", " answer", " is", " 42"]) {
 *         if (stream.signal.aborted) return; // "stop generating"
 *         await stream.publish({ token });
 *       }
 *     });
 *   }
 *   // POST and GET alike: from Last-Event-ID (or the start), the live tail, then `end`.
 *   return resumable.response(id, request);
 * }
 *
 * const response = await handler(new Request("http://localhost/?chat=c1", { method: "POST" }));
 * const events = [];
 * for await (const event of response.body!.pipeThrough(new EventParserStream())) {
 *   events.push(event);
 * }
 * assert.equal(events.length, 5);
 * assert.equal(events.at(-1)!.type, "end");
 * assert.equal((await handler(new Request("http://localhost/?chat=none"))).status, 404);
 * await resumable.close();
 * ```
 *
 * @module
 */

export {
  END_EVENT,
  MAX_STREAM_ID_LENGTH,
  type ResumableEndReason,
  type ResumableEvent,
  type ResumableMetrics,
  type ResumableReadOptions,
  type ResumableRedisOptions,
  type ResumableStartResult,
  type ResumableStatus,
  type ResumableStoredEvent,
  ResumableStreams,
  type ResumableStreamsOptions,
  type ResumableWriter,
} from "./resumable_streams.ts";
export {
  type McpEventId,
  McpEventStore,
  type McpEventStoreOptions,
  type McpMessage,
  type McpStreamId,
} from "./mcp_event_store.ts";
export type { RedisBridgeAdapter, RedisBridgeListener } from "../redis/redis_bridge_adapter.ts";
