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
  /**
   * Optional, needed by the partitioned mode only: one listener for channels that are
   * subscribed and unsubscribed over time, on the subscriber connection (or, on a Redis
   * Cluster, the client's connections to the masters of the channels' slots, with
   * `SSUBSCRIBE`). It subscribes nothing by itself. The single-order bridge uses
   * {@linkcode RedisBridgeAdapter.listen} only, so an adapter without it keeps working there.
   * @param listener Where messages, moves, reconnects and connection errors go.
   * @returns The handle that subscribes and unsubscribes channels, and closes it all.
   */
  listenMany?(listener: RedisBridgeChannelListener): Promise<RedisBridgeSubscription>;
}

/**
 * The handle of {@linkcode RedisBridgeAdapter.listenMany}: channels in, channels out.
 *
 * Messages of a channel reach the listener from Redis's confirmation of its subscription until
 * `unsubscribe` is called for it (none after that call, even if Redis sends some). They can
 * reach it before the promise of the `subscribe` that asked for them settles: Redis confirmed
 * first, and the client read on before the promise's reaction ran. Every message comes once,
 * in the order of the connection it came on (one connection per Redis node).
 *
 * @example A handle that only records what it was asked, as a test double
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RedisBridgeSubscription } from "@flume/sse/redis";
 *
 * const subscribed = new Set<string>();
 * const handle: RedisBridgeSubscription = {
 *   subscribe: async (channels) => void channels.forEach((c) => subscribed.add(c)),
 *   unsubscribe: async (channels) => void channels.forEach((c) => subscribed.delete(c)),
 *   close: async () => subscribed.clear(),
 * };
 * await handle.subscribe(["{app:p1}e:a", "{app:p1}e:b"]);
 * await handle.unsubscribe(["{app:p1}e:a"]);
 * assert.deepEqual([...subscribed], ["{app:p1}e:b"]);
 * ```
 */
export interface RedisBridgeSubscription {
  /**
   * Subscribes channels, kept subscribed across reconnects, failovers and slot moves (as far
   * as the client library follows them: see {@linkcode RedisBridgeChannelListener.moved}).
   * On a Redis Cluster all of one call's channels must hash to one slot (one `SSUBSCRIBE`);
   * on a single server any channels (one `SUBSCRIBE`). Channels already subscribed are left
   * as they are.
   * @param channels The Redis channels, of one hash slot on a Cluster.
   * @returns A promise that resolves when Redis confirmed the subscription, and rejects when
   * it failed (the channels are then not subscribed).
   */
  subscribe(channels: readonly string[]): Promise<void>;
  /**
   * Unsubscribes channels; their messages stop reaching the listener at once. Channels not
   * subscribed are ignored. On a Redis Cluster, of one slot per call, as `subscribe`.
   * @param channels The Redis channels.
   * @returns A promise that resolves when Redis confirmed it (at once when the connection is
   * down: it holds no subscription then).
   */
  unsubscribe(channels: readonly string[]): Promise<void>;
  /**
   * Unsubscribes every channel and removes every listener the adapter put on the clients.
   * @returns A promise that resolves when done; the listener hears nothing more.
   */
  close(): Promise<void>;
}

/**
 * What {@linkcode RedisBridgeAdapter.listenMany} tells the bridge.
 *
 * @example A listener that logs, as a test double for an adapter
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RedisBridgeChannelListener } from "@flume/sse/redis";
 *
 * const seen: string[] = [];
 * const listener: RedisBridgeChannelListener = {
 *   message: (channel, text) => seen.push(`${channel} ${text}`),
 *   connected: () => seen.push("connected"),
 *   error: (error) => seen.push(String(error)),
 *   moved: (channels) => seen.push(`moved ${channels.join(",")}`),
 * };
 * listener.message("{app:p1}e:a", "f2 1 k9x2ab 7 5 body");
 * listener.moved(["{app:p1}e:a"]);
 * listener.connected();
 * assert.deepEqual(seen, ["{app:p1}e:a f2 1 k9x2ab 7 5 body", "moved {app:p1}e:a", "connected"]);
 * ```
 */
export interface RedisBridgeChannelListener {
  /**
   * A message arrived on a subscribed channel.
   * @param channel The channel, as it was subscribed.
   * @param text The message as Redis delivered it.
   */
  message(channel: string, text: string): void;
  /**
   * A connection (any one, a Cluster node's included) is up again after a reconnect, or the
   * client re-subscribed after a move: the subscriptions are back. Messages published while
   * it was down may have been missed.
   */
  connected(): void;
  /**
   * A connection failed; the client is expected to reconnect by itself. Messages may be
   * missed from now until `connected()`.
   * @param error What the client reported.
   */
  error(error: unknown): void;
  /**
   * Redis took these channels' subscriptions away (the server's `sunsubscribe` after a slot
   * moved to another master, or a failover the client followed), and the client subscribes
   * them again on the new owner by itself. Called before any message of the new subscription;
   * messages published in between may have been missed. `connected()` follows once the
   * subscriptions are back, as far as the client tells:
   *
   * - npm `redis` `createCluster()`: `moved` at the push (the node client's
   *   `sharded-channel-moved`) or when a failover took a node out of the topology, with the
   *   channels concerned; `connected()` once every one of them is on a ready master's
   *   connection again. The client sends the `SSUBSCRIBE` then but does not say when Redis
   *   confirmed it: that is one round trip later.
   * - ioredis `Cluster`: `moved` with every subscribed channel (ioredis does not say which), at
   *   the push or when a shard connection ended; `connected()` 200 ms after its last
   *   `subscribersReady` (it has sent the `SSUBSCRIBE`s then, without awaiting them).
   * - A single server (npm `redis`, ioredis, Bun): never; a dropped connection is `error()`,
   *   then `connected()` once the client is back and subscribed again. Bun's client (1.4)
   *   tells nothing of the drop (no `onclose` while it reconnects), and does not subscribe
   *   again by itself: the adapter does, then calls `connected()`.
   * @param channels The subscribed channels concerned (all of them when the client does not
   * say which).
   */
  moved(channels: readonly string[]): void;
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
