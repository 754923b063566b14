/**
 * A reconnecting Server-Sent Events client built on `fetch`, for Deno, Bun, Node 20+, workers and
 * browsers: {@linkcode connect} yields events exactly as `EventSource` would dispatch them (it
 * shares the core's parser), and adds what `EventSource` lacks: custom headers refreshed on every
 * reconnect, any method and body, a `fetch` of your choice, backoff with jitter, an inactivity
 * timeout, a bound on event size, and hooks for the connection's state.
 *
 * It reconnects after a network error, a stream that ends, or an inactivity timeout, and sends
 * `Last-Event-ID` so the server can resume. A 204 ends the iteration normally; a status outside
 * 200–299 or a content type other than `text/event-stream` ends it with a
 * {@linkcode ConnectError}, with no reconnect. `close()`, the `signal`, or leaving the
 * `for await` loop ends it at once.
 *
 * This entry point is separate from `@flume/sse`, so a server never loads it.
 *
 * @example Resume with Last-Event-ID after the stream ends
 * ```ts
 * import assert from "node:assert/strict";
 * import { connect } from "@flume/sse/client";
 *
 * // A server that sends one event per connection and ends the stream; `fetch` calls it directly.
 * const resumedFrom: (string | null)[] = [];
 * let n = 0;
 * function server(request: Request): Response {
 *   resumedFrom.push(request.headers.get("last-event-id"));
 *   n++;
 *   return new Response(`id: ${n}\ndata: event ${n}\n\n`, {
 *     headers: { "Content-Type": "text/event-stream" },
 *   });
 * }
 *
 * const events = connect("https://example.com/events", {
 *   fetch: (request) => Promise.resolve(server(request)),
 *   backoff: { initial: 10 }, // ms before a reconnect, until the server sends `retry:`
 * });
 * const seen = [];
 * for await (const event of events) {
 *   seen.push(event.data);
 *   if (seen.length === 2) break; // closes the connection
 * }
 * assert.deepEqual(seen, ["event 1", "event 2"]);
 * assert.deepEqual(resumedFrom, [null, "1"]);
 * ```
 *
 * @example Follow an authenticated stream (needs a server; shown, not run)
 * ```ts ignore
 * import { connect, ConnectError } from "@flume/sse/client";
 *
 * const events = connect("https://example.com/events", {
 *   headers: async () => ({ Authorization: `Bearer ${await getToken()}` }),
 *   inactivityTimeout: 45_000,
 *   onRetry: ({ attempt, delay }) => console.log(`reconnecting (#${attempt}) in ${delay} ms`),
 * });
 * try {
 *   for await (const { type, data } of events) console.log(type, data);
 * } catch (error) {
 *   if (error instanceof ConnectError && error.status === 401) console.log("log in again");
 *   else throw error;
 * }
 * declare function getToken(): Promise<string>;
 * ```
 *
 * @module
 */

export {
  type BackoffOptions,
  connect,
  type Connection,
  type ConnectionState,
  type ConnectOptions,
  type RetryInfo,
} from "./connect.ts";
export { ConnectError, type ConnectErrorOptions } from "./connect_error.ts";
export { EventTooLargeError, type ParsedEvent } from "../event_parser_stream.ts";
