/**
 * The Redis clients the bridge knows (npm `redis` and ioredis, single server or Cluster, and
 * Bun's), each behind the same small adapter. The bridge imports none of them: it recognises the
 * objects the user hands it by their shape.
 * @module
 */

import { clock, type TimerHandle } from "../_clock.ts";
import type { RedisBridgeAdapter, RedisBridgeListener } from "./redis_bridge_adapter.ts";

// deno-lint-ignore no-explicit-any
type Loose = any;
type Kind = "node-redis" | "node-redis-cluster" | "ioredis" | "ioredis-cluster" | "bun";

function kindOf(client: Loose): Kind | undefined {
  if (client === null || typeof client !== "object") return undefined;
  if (typeof client.sendCommand === "function" && "isReady" in client) {
    // `createCluster()`: its sendCommand takes the key to route by first.
    return typeof client.nodeClient === "function" && "masters" in client
      ? "node-redis-cluster"
      : "node-redis";
  }
  if (typeof client.call === "function" && typeof client.status === "string") {
    return client.isCluster === true ? "ioredis-cluster" : "ioredis";
  }
  if (typeof client.send === "function" && "connected" in client) return "bun";
  return undefined;
}

/**
 * Whether a client is a Redis Cluster client (npm `redis` `createCluster()`, ioredis
 * `Cluster`): every key a script touches must then be on one slot (one hash tag).
 */
export function isClusterClient(client: object): boolean {
  const kind = kindOf(client);
  return kind === "node-redis-cluster" || kind === "ioredis-cluster";
}

/** Options of {@linkcode adapterFor}. */
export interface AdapterForOptions {
  /**
   * On a Redis Cluster, listen on a shard channel (`SSUBSCRIBE`, on the master of its slot,
   * for messages sent with `SPUBLISH`) rather than a classic one. No effect on a single server.
   * @default {false}
   */
  sharded?: boolean;
}

/**
 * Builds the adapter for a pair of clients of one kind.
 * @throws {TypeError} They are not clients of one known kind.
 */
export function adapterFor(
  client: object,
  subscriber: object,
  options: AdapterForOptions = {},
): RedisBridgeAdapter {
  const kind = kindOf(client);
  if (kind === undefined || kindOf(subscriber) !== kind) {
    throw new TypeError(
      "Cannot create Redis bridge: `client` and `subscriber` must be two clients of npm `redis` (`createClient()` or `createCluster()`), `ioredis` (`Redis` or `Cluster`) or Bun's `RedisClient`, of one kind, or pass an `adapter`",
    );
  }
  if (client === subscriber) {
    throw new TypeError(
      "Cannot create Redis bridge: `subscriber` must be its own connection (a subscribed connection cannot run commands), e.g. `client.duplicate()`",
    );
  }
  switch (kind) {
    case "node-redis":
      return nodeRedis(client, subscriber);
    case "node-redis-cluster":
      return nodeRedisCluster(client, subscriber, options.sharded === true);
    case "ioredis":
      return ioredis(client, subscriber);
    case "ioredis-cluster":
      // Commands are routed by their keys, and a classic subscription works on any node.
      if (options.sharded !== true) return ioredis(client, subscriber);
      // Without it, ioredis sends SSUBSCRIBE on its one classic subscriber connection, and no
      // message reaches the `smessage` listeners (ioredis 6).
      if ((subscriber as Loose).options?.shardedSubscribers !== true) {
        throw new TypeError(
          "Cannot create Redis bridge: an ioredis `Cluster` subscriber needs the option `shardedSubscribers: true` (the bridge listens with SSUBSCRIBE)",
        );
      }
      return ioredisCluster(client, subscriber);
    default:
      return bun(client, subscriber);
  }
}

/**
 * The key a cluster client routes a command by: the first key of a script (all of the bridge's
 * keys share one hash tag, so one slot), none for the rest (`CLIENT INFO`: any node answers).
 */
function routingKey(args: readonly string[]): string | undefined {
  const [command, , keys] = args;
  const name = command?.toUpperCase();
  if ((name === "EVALSHA" || name === "EVAL") && Number(keys) > 0) return args[3];
  return undefined;
}

/** npm `redis` (node-redis 4 and later): it resubscribes by itself after a reconnect. */
function nodeRedis(client: Loose, subscriber: Loose): RedisBridgeAdapter {
  return {
    command: (args) => client.sendCommand(args),
    ready: () => client.isReady === true && subscriber.isReady === true,
    async listen(channel: string, listener: RedisBridgeListener): Promise<() => Promise<void>> {
      const onMessage = (message: string): void => listener.message(message);
      const onReady = (): void => listener.connected();
      const onError = (error: unknown): void => listener.error(error);
      // Without an `error` listener node-redis throws every socket error at the process.
      for (const emitter of [client, subscriber]) {
        emitter.on("ready", onReady);
        emitter.on("error", onError);
      }
      const off = (): void => {
        for (const emitter of [client, subscriber]) {
          emitter.off("ready", onReady);
          emitter.off("error", onError);
        }
      };
      try {
        await subscriber.subscribe(channel, onMessage);
      } catch (error) {
        off();
        throw error;
      }
      return async () => {
        off();
        if (subscriber.isReady) await subscriber.unsubscribe(channel, onMessage);
      };
    },
  };
}

/** ioredis: resubscribes by itself (`autoResubscribe`), messages arrive as `message` events. */
function ioredis(client: Loose, subscriber: Loose): RedisBridgeAdapter {
  return {
    command: ([command, ...args]) => client.call(command, ...args),
    ready: () => client.status === "ready" && subscriber.status === "ready",
    async listen(channel: string, listener: RedisBridgeListener): Promise<() => Promise<void>> {
      const onMessage = (from: string, message: string): void => {
        if (from === channel) listener.message(message);
      };
      const onReady = (): void => listener.connected();
      const onError = (error: unknown): void => listener.error(error);
      subscriber.on("message", onMessage);
      for (const emitter of [client, subscriber]) {
        emitter.on("ready", onReady);
        emitter.on("error", onError);
      }
      const off = (): void => {
        subscriber.off("message", onMessage);
        for (const emitter of [client, subscriber]) {
          emitter.off("ready", onReady);
          emitter.off("error", onError);
        }
      };
      try {
        await subscriber.subscribe(channel);
      } catch (error) {
        off();
        throw error;
      }
      return async () => {
        off();
        if (subscriber.status === "ready") await subscriber.unsubscribe(channel);
      };
    },
  };
}

/**
 * npm `redis` `createCluster()`: commands go to the master of their key's slot (the client
 * follows `MOVED` and `ASK`); a shard channel's subscription is on the master of its slot, which
 * the client moves by itself after a failover or a slot migration (a classic one is on any node).
 * It has no `ready` event of its own: a node's (`node-ready`) means a connection came back.
 */
function nodeRedisCluster(client: Loose, subscriber: Loose, sharded: boolean): RedisBridgeAdapter {
  return {
    command: (args) => client.sendCommand(routingKey(args), false, args),
    ready: () => client.isReady === true && subscriber.isReady === true,
    async listen(channel: string, listener: RedisBridgeListener): Promise<() => Promise<void>> {
      const onMessage = (message: string): void => listener.message(message);
      const onReady = (): void => listener.connected();
      const onError = (error: unknown): void => listener.error(error);
      for (const emitter of [client, subscriber]) {
        emitter.on("node-ready", onReady);
        emitter.on("error", onError);
        emitter.on("node-error", onError);
      }
      const off = (): void => {
        for (const emitter of [client, subscriber]) {
          emitter.off("node-ready", onReady);
          emitter.off("error", onError);
          emitter.off("node-error", onError);
        }
      };
      try {
        if (sharded) await subscriber.sSubscribe(channel, onMessage);
        else await subscriber.subscribe(channel, onMessage);
      } catch (error) {
        off();
        throw error;
      }
      return async () => {
        off();
        if (!subscriber.isReady) return;
        if (sharded) await subscriber.sUnsubscribe(channel, onMessage);
        else await subscriber.unsubscribe(channel, onMessage);
      };
    },
  };
}

/**
 * ioredis `Cluster` (with `shardedSubscribers: true`): commands are routed by their keys; the
 * shard channel's subscription follows its slot, and messages arrive as `smessage` events. The
 * subscriber's `subscribersReady` (its shard connections started again after a topology change,
 * e.g. a failover) counts as a reconnect: the cluster's own `ready` comes only once. ioredis
 * also emits it after every failed attempt while a failover is under way (tens per second), so
 * it counts once things are quiet: `SETTLE_MS` after the last one.
 */
function ioredisCluster(client: Loose, subscriber: Loose): RedisBridgeAdapter {
  return {
    command: ([command, ...args]) => client.call(command, ...args),
    ready: () => client.status === "ready" && subscriber.status === "ready",
    async listen(channel: string, listener: RedisBridgeListener): Promise<() => Promise<void>> {
      const onMessage = (from: string, message: string): void => {
        if (from === channel) listener.message(message);
      };
      const onReady = (): void => listener.connected();
      const onError = (error: unknown): void => listener.error(error);
      let settling: TimerHandle | undefined;
      const onSubscribersReady = (): void => {
        clock.clearTimeout(settling);
        settling = clock.setTimeout(onReady, SETTLE_MS, undefined);
      };
      subscriber.on("smessage", onMessage);
      subscriber.on("subscribersReady", onSubscribersReady);
      for (const emitter of [client, subscriber]) {
        emitter.on("ready", onReady);
        emitter.on("error", onError);
      }
      const off = (): void => {
        subscriber.off("smessage", onMessage);
        subscriber.off("subscribersReady", onSubscribersReady);
        clock.clearTimeout(settling);
        for (const emitter of [client, subscriber]) {
          emitter.off("ready", onReady);
          emitter.off("error", onError);
        }
      };
      try {
        await subscriber.ssubscribe(channel);
      } catch (error) {
        off();
        throw error;
      }
      return async () => {
        off();
        if (subscriber.status === "ready") await subscriber.sunsubscribe(channel);
      };
    },
  };
}

/** Quiet ms after ioredis's last `subscribersReady` before it counts as a reconnect. */
const SETTLE_MS = 200;

/**
 * Bun's built-in `RedisClient`: it reconnects but does not resubscribe (as of Bun 1.4), and it
 * has one `onconnect` handler per client rather than events, so the bridge chains to the
 * user's handler and puts it back on close.
 */
function bun(client: Loose, subscriber: Loose): RedisBridgeAdapter {
  let resubscribing = false;
  return {
    command: ([command, ...args]) => client.send(command, args),
    ready: () => client.connected === true && subscriber.connected === true && !resubscribing,
    async listen(channel: string, listener: RedisBridgeListener): Promise<() => Promise<void>> {
      const onMessage = (message: string): void => listener.message(message);
      const clientConnect = client.onconnect;
      const subscriberConnect = subscriber.onconnect;
      let subscribed = false;
      let closed = false;
      client.onconnect = function (this: unknown, ...args: unknown[]): void {
        clientConnect?.apply(this, args);
        if (subscribed) listener.connected();
      };
      subscriber.onconnect = function (this: unknown, ...args: unknown[]): void {
        subscriberConnect?.apply(this, args);
        if (!subscribed || closed) return;
        // Bun keeps the listener but not the subscription: take the listener off so that
        // subscribing again does not register it twice.
        resubscribing = true;
        (async () => {
          await subscriber.unsubscribe(channel, onMessage);
          if (!closed) await subscriber.subscribe(channel, onMessage);
        })().then(
          () => {
            resubscribing = false;
            if (!closed) listener.connected();
          },
          (error: unknown) => {
            resubscribing = false;
            listener.error(error);
          },
        );
      };
      const off = (): void => {
        closed = true;
        client.onconnect = clientConnect;
        subscriber.onconnect = subscriberConnect;
      };
      try {
        await subscriber.subscribe(channel, onMessage);
      } catch (error) {
        off();
        throw error;
      }
      subscribed = true;
      return async () => {
        off();
        if (subscriber.connected) await subscriber.unsubscribe(channel, onMessage);
      };
    },
  };
}

/** The SHA-1 of a script in hex, the name `EVALSHA` knows it by. */
export async function scriptSha(script: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(script));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
