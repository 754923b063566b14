/**
 * The seam between the Redis bridge and a Redis client it does not know. Its own file, so that
 * the built-in adapters (`_adapters.ts`) and the bridge both depend on it and not on each other.
 * @module
 */

/**
 * What the bridge needs from a Redis client it does not know: two connections, one for
 * commands and one subscribed. Pass it as `adapter` to use any client.
 *
 * @example An adapter over node-redis, as the bridge builds it itself
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RedisBridgeAdapter } from "@flume/sse/redis";
 * import type { createClient } from "redis";
 *
 * type Client = ReturnType<typeof createClient>;
 * function adapter(client: Client, subscriber: Client): RedisBridgeAdapter {
 *   return {
 *     command: (args) => client.sendCommand(args),
 *     ready: () => client.isReady && subscriber.isReady,
 *     async listen(channel, listener) {
 *       const onMessage = (message: string) => listener.message(message);
 *       const onReady = () => listener.connected();
 *       const onError = (error: unknown) => listener.error(error);
 *       client.on("ready", onReady).on("error", onError);
 *       subscriber.on("ready", onReady).on("error", onError);
 *       await subscriber.subscribe(channel, onMessage);
 *       return async () => {
 *         client.off("ready", onReady).off("error", onError);
 *         subscriber.off("ready", onReady).off("error", onError);
 *         await subscriber.unsubscribe(channel, onMessage);
 *       };
 *     },
 *   };
 * }
 * // Connecting needs a running Redis: here only the shape is checked.
 * assert.equal(typeof adapter, "function");
 * ```
 */
export interface RedisBridgeAdapter {
  /**
   * Sends one command on the command connection, e.g. `["EVALSHA", sha, "2", ...]`.
   * @param args The command and its arguments.
   * @returns The reply: arrays as arrays, integers as numbers or strings, nil as `null`.
   */
  command(args: string[]): Promise<unknown>;
  /**
   * Whether both connections are up: when not, the bridge refuses a publish at once rather
   * than let the client queue it for a reconnect that may never come.
   * @returns Whether both connections are up.
   */
  ready(): boolean;
  /**
   * Subscribes the subscriber connection to `channel`, and keeps it subscribed across
   * reconnects.
   * @param channel The Redis channel.
   * @param listener Where messages, reconnects and connection errors go.
   * @returns A function that undoes all of it: unsubscribes and removes every listener.
   */
  listen(channel: string, listener: RedisBridgeListener): Promise<() => Promise<void>>;
}

/**
 * What a {@linkcode RedisBridgeAdapter} tells the bridge.
 *
 * @example A listener that logs, as a test double for an adapter
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RedisBridgeListener } from "@flume/sse/redis";
 *
 * const seen: string[] = [];
 * const listener: RedisBridgeListener = {
 *   message: (text) => seen.push(text),
 *   connected: () => seen.push("connected"),
 *   error: (error) => seen.push(String(error)),
 * };
 * listener.connected();
 * listener.message("f1 abc 1 head");
 * assert.deepEqual(seen, ["connected", "f1 abc 1 head"]);
 * ```
 */
export interface RedisBridgeListener {
  /**
   * A message arrived on the channel.
   * @param text The message as Redis delivered it.
   */
  message(text: string): void;
  /** A connection (either one) is up again after a reconnect, subscription included. */
  connected(): void;
  /**
   * A connection failed; the client is expected to reconnect by itself.
   * @param error What the client reported.
   */
  error(error: unknown): void;
}
