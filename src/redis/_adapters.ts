/**
 * The three Redis clients the bridge knows, each behind the same small adapter. The bridge
 * imports none of them: it recognises the objects the user hands it by their shape.
 * @module
 */

import type { RedisBridgeAdapter, RedisBridgeListener } from "./redis_bridge_adapter.ts";

// deno-lint-ignore no-explicit-any
type Loose = any;
type Kind = "node-redis" | "ioredis" | "bun";

function kindOf(client: Loose): Kind | undefined {
  if (client === null || typeof client !== "object") return undefined;
  if (typeof client.sendCommand === "function" && "isReady" in client) return "node-redis";
  if (typeof client.call === "function" && typeof client.status === "string") return "ioredis";
  if (typeof client.send === "function" && "connected" in client) return "bun";
  return undefined;
}

/**
 * Builds the adapter for a pair of clients of one kind.
 * @throws {TypeError} They are not clients of one known kind.
 */
export function adapterFor(client: object, subscriber: object): RedisBridgeAdapter {
  const kind = kindOf(client);
  if (kind === undefined || kindOf(subscriber) !== kind) {
    throw new TypeError(
      "Cannot create Redis bridge: `client` and `subscriber` must be two clients of npm `redis`, `ioredis` or Bun's `RedisClient`, or pass an `adapter`",
    );
  }
  if (client === subscriber) {
    throw new TypeError(
      "Cannot create Redis bridge: `subscriber` must be its own connection (a subscribed connection cannot run commands), e.g. `client.duplicate()`",
    );
  }
  if (kind === "node-redis") return nodeRedis(client, subscriber);
  if (kind === "ioredis") return ioredis(client, subscriber);
  return bun(client, subscriber);
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
