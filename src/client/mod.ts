/**
 * A reconnecting Server-Sent Events client built on `fetch`, for Deno, Bun, Node 20+, workers and
 * browsers: {@linkcode connect} yields events exactly as `EventSource` would dispatch them (it
 * shares the core's parser), and adds what `EventSource` lacks: custom headers refreshed on every
 * reconnect, any method and body, backoff with jitter, an inactivity timeout, a bound on event
 * size, and hooks for connection state.
 *
 * This entry point is separate from `@flume/sse`, so a server never loads it.
 *
 * @example Follow a stream with a bearer token, and stop after ten events
 * ```ts ignore
 * import { connect, ConnectError } from "@flume/sse/client";
 *
 * const events = connect("https://example.com/events", {
 *   headers: () => ({ Authorization: `Bearer ${sessionStorage.getItem("token")}` }),
 *   inactivityTimeout: 45_000,
 *   onOpen: () => console.log("connected"),
 *   onRetry: ({ attempt, delay }) => console.log(`reconnecting (#${attempt}) in ${delay} ms`),
 * });
 * let count = 0;
 * try {
 *   for await (const { type, data, lastEventId } of events) {
 *     console.log(type, data, lastEventId);
 *     if (++count === 10) break; // closes the connection
 *   }
 * } catch (error) {
 *   if (error instanceof ConnectError) console.error(`refused with status ${error.status}`);
 *   else throw error;
 * }
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
export { ConnectError } from "./connect_error.ts";
export { EventTooLargeError, type ParsedEvent } from "../event_parser_stream.ts";
