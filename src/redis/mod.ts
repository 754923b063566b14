/**
 * Scale the `Broker` of `@flume/sse` out over Redis: `redisBridge()` makes the broker on every worker
 * process (and every host) that shares one Redis deliver every event published on any of them,
 * exactly once, in one order, with shared history so that a client's `Last-Event-ID` resumes on
 * whichever worker its reconnect lands.
 *
 * Zero dependencies: bring your own client, npm `redis`, `ioredis` or Bun's built-in
 * `RedisClient` (or any other, through a {@linkcode RedisBridgeAdapter}), with two connections:
 * one for commands and one for the subscription. How a publish travels: one Lua script gives it
 * the next position (`seq`) and an id `<epoch>-<seq>`, appends it to its channel's stream (the
 * history, capped to `history` entries) and publishes it on one Redis channel; every worker,
 * the publisher included, delivers it when it comes back on its subscription.
 *
 * @example Workers that share a broker (npm `redis`)
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
 * Deno.serve(async (request) => {
 *   const room = new URL(request.url).searchParams.get("room") ?? "lobby";
 *   if (request.method === "POST") {
 *     await broker.publish(`room:${room}`, await request.text()); // reaches every worker
 *     return new Response(null, { status: 204 });
 *   }
 *   return broker.response(`room:${room}`, request);
 * });
 * ```
 *
 * @module
 */

export {
  redisBridge,
  type RedisBridgeAdapter,
  type RedisBridgeListener,
  type RedisBridgeOptions,
} from "./redis_bridge.ts";
export { RedisBridgeError, type RedisBridgeErrorReason } from "./redis_bridge_error.ts";
export type { Bridge, BridgeEvent, BridgeReplay } from "../bridge.ts";
