/**
 * Scale the `Broker` of `@flume/sse` out over Redis: with {@linkcode redisBridge}, the broker on
 * every worker process (and every host) that shares one Redis delivers every event published on
 * any of them, exactly once, in one order, with shared history, so that a client's
 * `Last-Event-ID` resumes on whichever worker its reconnect lands.
 *
 * Zero dependencies: bring your own client, npm `redis`, `ioredis` or Bun's built-in
 * `RedisClient` (or any other, through a {@linkcode RedisBridgeAdapter}), with two connected
 * connections: one for commands and one for the subscription. How a publish travels: one Lua
 * script gives it the next position (`seq`) and an id `<epoch>-<seq>`, appends it to its
 * channel's stream (the history, capped to `history` entries) and publishes it on one Redis
 * channel; every worker, the publisher included, delivers it when it comes back on its
 * subscription, and the publisher's `publish()` resolves then.
 *
 * While Redis is unreachable, `publish()` rejects with a {@linkcode RedisBridgeError} whose
 * `reason` is `"unavailable"`, and no worker delivers the event; streams stay open. A worker that
 * finds it missed events (its subscription dropped) fetches them from a log in Redis and
 * delivers them in order; when they are gone for good (Redis lost its data, or they fell out of
 * the log), its clients get the gap signal on their open streams and go on: no stream ends.
 *
 * @example Workers that share a broker (needs a Redis server; shown, not run)
 * ```ts ignore
 * import { Broker } from "@flume/sse";
 * import { redisBridge } from "@flume/sse/redis";
 * import { createClient } from "redis";
 *
 * const client = createClient({ url: "redis://127.0.0.1:6379" });
 * const subscriber = client.duplicate();
 * await Promise.all([client.connect(), subscriber.connect()]);
 *
 * const broker = new Broker({
 *   history: 100,
 *   bridge: redisBridge({ client, subscriber, prefix: "myapp:" }),
 * });
 *
 * async function handler(request: Request): Promise<Response> {
 *   const room = new URL(request.url).searchParams.get("room") ?? "lobby";
 *   if (request.method === "POST") {
 *     await broker.publish(`room:${room}`, await request.text()); // reaches every worker
 *     return new Response(null, { status: 204 });
 *   }
 *   return broker.response(`room:${room}`, request);
 * }
 * // Deno.serve(handler) or Bun.serve({ fetch: handler })
 * ```
 *
 * @example A publish while Redis is unreachable is refused, not half-delivered
 * ```ts
 * import assert from "node:assert/strict";
 * import { Broker } from "@flume/sse";
 * import { redisBridge, RedisBridgeError } from "@flume/sse/redis";
 *
 * // An adapter over a Redis that is down: every command fails, no connection is ready.
 * const bridge = redisBridge({
 *   adapter: {
 *     command: () => Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:6379")),
 *     ready: () => false,
 *     listen: () => Promise.resolve(() => Promise.resolve()),
 *   },
 *   onError: () => {},
 * });
 * const broker = new Broker({ history: 100, bridge, onError: () => {} });
 * const stream = broker.subscribe("news");
 *
 * await assert.rejects(
 *   broker.publish("news", "hello"),
 *   (error) => error instanceof RedisBridgeError && error.reason === "unavailable",
 * );
 * assert.equal(broker.clientCount("news"), 1); // the stream stays open
 * await broker.close();
 * assert.ok(stream.closed);
 * ```
 *
 * @module
 */

export { redisBridge, type RedisBridgeOptions } from "./redis_bridge.ts";
export type {
  RedisBridgeAdapter,
  RedisBridgeChannelListener,
  RedisBridgeListener,
  RedisBridgeSubscription,
} from "./redis_bridge_adapter.ts";
export {
  RedisBridgeError,
  type RedisBridgeErrorOptions,
  type RedisBridgeErrorReason,
} from "./redis_bridge_error.ts";
export type {
  Bridge,
  BridgeEvent,
  BridgeGap,
  BridgePartitions,
  BridgeReplay,
  HistoryLimits,
} from "../bridge.ts";
