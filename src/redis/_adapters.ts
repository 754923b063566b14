/**
 * The Redis clients the bridge knows (npm `redis` and ioredis, single server or Cluster, and
 * Bun's), each behind the same small adapter. The bridge imports none of them: it recognises the
 * objects the user hands it by their shape.
 * @module
 */

import { clock, type TimerHandle } from "../_clock.ts";
import type {
  RedisBridgeAdapter,
  RedisBridgeChannelListener,
  RedisBridgeListener,
  RedisBridgeSubscription,
} from "./redis_bridge_adapter.ts";

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
   * for messages sent with `SPUBLISH`) rather than a classic one, in `listen` and `listenMany`
   * alike (moves are followed and reported for shard channels only). No effect on a single
   * server.
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
    // deno-lint-ignore require-await
    async listenMany(listener: RedisBridgeChannelListener): Promise<RedisBridgeSubscription> {
      const held: Held = new Map();
      const onMessage = (message: string, channel: string): void => {
        if (held.has(channel)) listener.message(channel, message);
      };
      const onReady = (): void => listener.connected();
      const onError = (error: unknown): void => listener.error(error);
      for (const emitter of [client, subscriber]) {
        emitter.on("ready", onReady);
        emitter.on("error", onError);
      }
      return subscription(held, {
        send: (channels) => subscriber.subscribe(channels, onMessage),
        drop: (channels) =>
          unsubscribing(subscriber.isReady, () => subscriber.unsubscribe(channels, onMessage)),
        off: () => {
          for (const emitter of [client, subscriber]) {
            emitter.off("ready", onReady);
            emitter.off("error", onError);
          }
        },
      });
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
    // deno-lint-ignore require-await
    async listenMany(listener: RedisBridgeChannelListener): Promise<RedisBridgeSubscription> {
      const held: Held = new Map();
      const onMessage = (channel: string, message: string): void => {
        if (held.has(channel)) listener.message(channel, message);
      };
      const onReady = (): void => listener.connected();
      const onError = (error: unknown): void => listener.error(error);
      // ioredis emits no `error` when the server closes the connection cleanly, only `close`.
      const onClose = (): void =>
        listener.error(new Error("Cannot receive Redis messages: a connection closed"));
      subscriber.on("message", onMessage);
      for (const emitter of [client, subscriber]) {
        emitter.on("ready", onReady);
        emitter.on("error", onError);
        emitter.on("close", onClose);
      }
      return subscription(held, {
        send: (channels) => subscriber.subscribe(...channels),
        drop: (channels) =>
          unsubscribing(subscriber.status === "ready", () => subscriber.unsubscribe(...channels)),
        off: () => {
          subscriber.off("message", onMessage);
          for (const emitter of [client, subscriber]) {
            emitter.off("ready", onReady);
            emitter.off("error", onError);
            emitter.off("close", onClose);
          }
        },
      });
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
    // deno-lint-ignore require-await
    async listenMany(listener: RedisBridgeChannelListener): Promise<RedisBridgeSubscription> {
      const held: Held = new Map();
      const onMessage = (message: string, channel: string): void => {
        if (held.has(channel)) listener.message(channel, message);
      };
      // A node connection's first `node-ready` is a new connection (the cluster connects to a
      // node when it first needs it), not a reconnect: nothing was missed on it, and reporting
      // it would make the bridge audit for nothing. A node that left the topology is reported
      // through `moved` below.
      const readyBefore = new WeakSet<object>();
      const onReady = (node: unknown): void => {
        if (node !== null && typeof node === "object" && !readyBefore.has(node)) {
          readyBefore.add(node);
          return;
        }
        listener.connected();
      };
      const onError = (error: unknown): void => listener.error(error);
      const moved = movedBatcher(held, listener);
      // Moved channels the client has not put back on a master's connection yet.
      const away = new Set<string>();
      let poll: TimerHandle | undefined;
      let pause = 0;
      const isBack = (channel: string): boolean =>
        (subscriber.masters ?? []).some((master: Loose) => {
          const node = master.pubSub?.client;
          return node?.isReady === true &&
            node.getPubSubListeners("SHARDED").get(channel)?.strings.has(onMessage) === true;
        });
      const look = (): void => {
        poll = undefined;
        for (const channel of away) if (!held.has(channel) || isBack(channel)) away.delete(channel);
        if (away.size > 0) {
          pause = Math.min(pause * 2, MOVE_POLL_MAX_MS);
          poll = clock.setTimeout(look, pause, undefined);
          return;
        }
        hook();
        listener.connected();
      };
      const leave = (channels: Iterable<string>): void => {
        const fresh: string[] = [];
        for (const channel of channels) {
          if (!held.has(channel)) continue;
          away.add(channel);
          fresh.push(channel);
        }
        if (fresh.length === 0) return;
        moved(fresh);
        if (poll !== undefined) return;
        pause = 10;
        poll = clock.setTimeout(look, pause, undefined);
      };
      // The server's `sunsubscribe` push reaches only the node's own pub/sub client (its
      // `sharded-channel-moved`); the cluster moves the listeners by itself and says nothing.
      const onChannelMoved = (channel: string): void => leave([channel]);
      const hooked = new Set<Loose>();
      const hook = (): void => {
        const current = new Set<Loose>();
        for (const master of subscriber.masters ?? []) {
          const node = master.pubSub?.client;
          if (node === undefined) continue;
          current.add(node);
          if (hooked.has(node)) continue;
          hooked.add(node);
          node.on("sharded-channel-moved", onChannelMoved);
        }
        // Let go of the connections the cluster dropped (a node gone, a master left unused).
        for (const node of hooked) {
          if (current.has(node)) continue;
          node.off("sharded-channel-moved", onChannelMoved);
          hooked.delete(node);
        }
      };
      // A node that left the topology (failover): the cluster takes its listeners off and
      // subscribes them again on the new owners, with this internal event.
      const onResubscribe = (listeners: Loose): void => leave(listeners?.SHARDED?.keys() ?? []);
      // The cluster gave up moving a channel (the listeners are off): subscribe it again.
      const onMovedError = (error: unknown, channel: string): void => {
        if (!held.has(channel)) return;
        listener.error(error);
        leave([channel]);
        subscriber.sSubscribe(channel, onMessage).catch((e: unknown) => listener.error(e));
      };
      subscriber.on(RESUBSCRIBE_LISTENERS, onResubscribe);
      subscriber.on("sharded-channel-moved-error", onMovedError);
      for (const emitter of [client, subscriber]) {
        emitter.on("node-ready", onReady);
        emitter.on("error", onError);
        emitter.on("node-error", onError);
      }
      return subscription(held, {
        send: async (channels) => {
          if (!sharded) return await subscriber.subscribe(channels, onMessage);
          await subscriber.sSubscribe(channels, onMessage);
          hook();
        },
        drop: (channels) =>
          unsubscribing(
            subscriber.isReady,
            () =>
              sharded
                ? subscriber.sUnsubscribe(channels, onMessage)
                : subscriber.unsubscribe(channels, onMessage),
          ),
        off: () => {
          clock.clearTimeout(poll);
          away.clear();
          for (const node of hooked) node.off("sharded-channel-moved", onChannelMoved);
          hooked.clear();
          subscriber.off(RESUBSCRIBE_LISTENERS, onResubscribe);
          subscriber.off("sharded-channel-moved-error", onMovedError);
          for (const emitter of [client, subscriber]) {
            emitter.off("node-ready", onReady);
            emitter.off("error", onError);
            emitter.off("node-error", onError);
          }
        },
      });
    },
  };
}

/** node-redis's cluster event that re-subscribes the listeners of a node gone from the topology. */
const RESUBSCRIBE_LISTENERS = "__resubscribeListeners";

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
    // deno-lint-ignore require-await
    async listenMany(listener: RedisBridgeChannelListener): Promise<RedisBridgeSubscription> {
      const held: Held = new Map();
      const onMessage = (channel: string, message: string): void => {
        if (held.has(channel)) listener.message(channel, message);
      };
      const onReady = (): void => listener.connected();
      const onError = (error: unknown): void => listener.error(error);
      let settling: TimerHandle | undefined;
      const onSubscribersReady = (): void => {
        clock.clearTimeout(settling);
        settling = clock.setTimeout(onReady, SETTLE_MS, undefined);
      };
      const moved = movedBatcher(held, listener);
      // The push does not say which channels: ioredis reports it with no argument, on the
      // subscriber group's internal emitter only (ioredis 6). A shard connection that ended
      // (`-node`: a failover) drops its channels too.
      const onMoved = (): void => moved(held.keys());
      const group = subscriber.subscriberGroupEmitter;
      group?.on?.("moved", onMoved);
      subscriber.on("smessage", onMessage);
      subscriber.on("subscribersReady", onSubscribersReady);
      subscriber.on("-node", onMoved);
      subscriber.on("nodeError", onError);
      for (const emitter of [client, subscriber]) {
        emitter.on("ready", onReady);
        emitter.on("error", onError);
      }
      return subscription(held, {
        send: (channels) => subscriber.ssubscribe(...channels),
        drop: (channels) =>
          unsubscribing(subscriber.status === "ready", () => subscriber.sunsubscribe(...channels)),
        off: () => {
          clock.clearTimeout(settling);
          group?.off?.("moved", onMoved);
          subscriber.off("smessage", onMessage);
          subscriber.off("subscribersReady", onSubscribersReady);
          subscriber.off("-node", onMoved);
          subscriber.off("nodeError", onError);
          for (const emitter of [client, subscriber]) {
            emitter.off("ready", onReady);
            emitter.off("error", onError);
          }
        },
      });
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
    // deno-lint-ignore require-await
    async listenMany(listener: RedisBridgeChannelListener): Promise<RedisBridgeSubscription> {
      const held: Held = new Map();
      const onMessage = (message: string, channel: string): void => {
        if (held.has(channel)) listener.message(channel, message);
      };
      // One channel at a time, with the listener: Bun 1.4's `unsubscribe(channels)` (an array,
      // no listener) leaves a client that takes the next SUBSCRIBE but delivers nothing.
      // Bun's `unsubscribe` may resolve before Redis replied: a PING after it (on the same
      // connection) answers once Redis has run it.
      const unsubscribeEach = async (channels: string[]): Promise<void> => {
        await Promise.all(channels.map((channel) => subscriber.unsubscribe(channel, onMessage)));
        await subscriber.ping();
      };
      const saved = {
        client: [client.onconnect, client.onclose],
        subscriber: [subscriber.onconnect, subscriber.onclose],
      };
      let closed = false;
      client.onconnect = function (this: unknown, ...args: unknown[]): void {
        saved.client[0]?.apply(this, args);
        if (!closed) listener.connected();
      };
      subscriber.onconnect = function (this: unknown, ...args: unknown[]): void {
        saved.subscriber[0]?.apply(this, args);
        if (closed) return;
        const channels = [...held.keys()];
        if (channels.length === 0) return listener.connected();
        // Bun keeps the listeners but not the subscriptions: take them off so that subscribing
        // again does not register them twice.
        resubscribing = true;
        (async () => {
          await unsubscribeEach(channels);
          if (!closed) await subscriber.subscribe(channels, onMessage);
        })().then(
          () => {
            resubscribing = false;
            if (!closed) listener.connected();
          },
          (error: unknown) => {
            resubscribing = false;
            if (!closed) listener.error(error);
          },
        );
      };
      const onClose = (saved: unknown) =>
        function (this: unknown, ...args: unknown[]): void {
          (saved as ((...args: unknown[]) => void) | undefined)?.apply(this, args);
          if (!closed) listener.error(args[0]);
        };
      client.onclose = onClose(saved.client[1]);
      subscriber.onclose = onClose(saved.subscriber[1]);
      return subscription(held, {
        send: (channels) => subscriber.subscribe(channels, onMessage),
        drop: (channels) =>
          unsubscribing(subscriber.connected === true, () => unsubscribeEach(channels)),
        off: () => {
          closed = true;
          [client.onconnect, client.onclose] = saved.client;
          [subscriber.onconnect, subscriber.onclose] = saved.subscriber;
        },
      });
    },
  };
}

/**
 * The channels of one `listenMany` handle, each with the number of the `subscribe` call that
 * brought it: channels of one call share a slot, so `close()` unsubscribes them together (a
 * Cluster refuses one SUNSUBSCRIBE over several slots).
 */
type Held = Map<string, number>;

/** What a client kind does for {@linkcode subscription}. */
interface ChannelOps {
  /** SUBSCRIBE or SSUBSCRIBE of channels of one slot; resolves when Redis confirmed. */
  send(channels: string[]): Promise<unknown>;
  /** UNSUBSCRIBE or SUNSUBSCRIBE of channels of one slot. */
  drop(channels: string[]): Promise<unknown>;
  /** Removes every listener the adapter put on the clients. */
  off(): void;
}

/**
 * The handle of `listenMany`, the same for every client kind: it keeps `held` (what the
 * message filter lets through) and never asks Redis twice for one channel.
 */
function subscription(held: Held, ops: ChannelOps): RedisBridgeSubscription {
  const pending = new Map<string, Promise<void>>();
  let calls = 0;
  let closed = false;
  return {
    async subscribe(channels: readonly string[]): Promise<void> {
      if (closed) {
        throw new TypeError("Cannot subscribe to Redis channels: the listener is closed");
      }
      const call = ++calls;
      const fresh: string[] = [];
      const waits: Promise<void>[] = [];
      for (const channel of channels) {
        const earlier = pending.get(channel);
        if (earlier !== undefined) waits.push(earlier);
        else if (!held.has(channel)) {
          // In `held` at once: Redis may deliver a message before this promise's reaction runs.
          held.set(channel, call);
          fresh.push(channel);
        }
      }
      if (fresh.length > 0) {
        const sent: Promise<void> = ops.send(fresh).then(
          () => {
            for (const channel of fresh) if (pending.get(channel) === sent) pending.delete(channel);
          },
          (error: unknown) => {
            for (const channel of fresh) {
              if (pending.get(channel) !== sent) continue;
              pending.delete(channel);
              held.delete(channel);
            }
            throw error;
          },
        );
        for (const channel of fresh) pending.set(channel, sent);
        waits.push(sent);
      }
      await Promise.all(waits);
    },
    async unsubscribe(channels: readonly string[]): Promise<void> {
      const gone = channels.filter((channel) => held.delete(channel));
      for (const channel of gone) pending.delete(channel);
      if (gone.length > 0 && !closed) await ops.drop(gone);
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      const groups = new Map<number, string[]>();
      for (const [channel, call] of held) {
        const group = groups.get(call);
        if (group === undefined) groups.set(call, [channel]);
        else group.push(channel);
      }
      held.clear();
      pending.clear();
      ops.off();
      // The listener is gone already; a failure here only leaves a subscription on a connection
      // that is down (and dies with it).
      await Promise.allSettled([...groups.values()].map(async (group) => await ops.drop(group)));
    },
  };
}

/**
 * Runs an unsubscribe: awaited while the connection is up, else only started (the client
 * drops its listener at once, and would otherwise hold the promise until a reconnect).
 */
function unsubscribing(live: boolean, run: () => Promise<unknown>): Promise<unknown> {
  let done: Promise<unknown>;
  try {
    done = run();
  } catch (error) {
    if (live) throw error;
    return Promise.resolve();
  }
  if (live) return done;
  done.catch(() => {});
  return Promise.resolve();
}

/**
 * Reports moved channels once per turn: a client sees one `sunsubscribe` push per channel, and
 * a slot's channels come together. A turn is early enough: no message of a new subscription
 * can come before the client has asked the new owner for it, over the network.
 */
function movedBatcher(
  held: Held,
  listener: RedisBridgeChannelListener,
): (channels: Iterable<string>) => void {
  let batch: Set<string> | undefined;
  const flush = (): void => {
    const channels = [...batch!].filter((channel) => held.has(channel));
    batch = undefined;
    if (channels.length > 0) listener.moved(channels);
  };
  return (channels) => {
    if (batch === undefined) {
      batch = new Set();
      queueMicrotask(flush);
    }
    for (const channel of channels) if (held.has(channel)) batch.add(channel);
  };
}

/** Longest pause between two looks for moved channels that are not back yet (ms). */
const MOVE_POLL_MAX_MS = 500;

/** The SHA-1 of a script in hex, the name `EVALSHA` knows it by. */
export async function scriptSha(script: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(script));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
