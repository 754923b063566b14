import type { DurableObjectNamespaceLike, DurableObjectStubLike } from "./durable_object_types.ts";
import { objectUrl } from "./_protocol.ts";

/** Which broker object a request goes to: options of {@linkcode routeToBroker}. */
export interface BrokerRoute {
  /**
   * The channel to subscribe to or publish to; several for a subscription, which then needs
   * `object` (all its channels live in that one object).
   */
  channel: string | readonly string[];
  /**
   * The name of the object that hosts the channel: pass the same for channels that should share
   * one object (a shard of quiet channels).
   * @default {the channel's name}
   */
  object?: string | undefined;
  /**
   * Copies of the object over which the clients of one hot channel are spread: a subscriber goes
   * to copy `hash(shardKey) % shards` (named `<object>#<k>`), a publish goes to every copy. Each
   * copy keeps its own history and ids, so a client must come back to the same copy: hence the
   * `shardKey`.
   * @default {1}
   */
  shards?: number | undefined;
  /**
   * What picks a subscriber's copy when `shards` is more than 1, stable for one client (a user or
   * session id): a client that resumes on another copy gets the gap signal.
   */
  shardKey?: string | undefined;
}

/**
 * Routes a worker's request to the {@linkcode BrokerObject} that hosts its channel: `GET`
 * subscribes (an SSE response, resuming from the request's `Last-Event-ID`), `POST` publishes
 * (the body is JSON `{ data, event?, id? }`; 204 once every copy has it queued). Other methods
 * get 405. The object is found by name (`namespace.idFromName()`), so every worker, anywhere,
 * reaches the same one.
 *
 * Authenticate and choose the channel before calling it: the object trusts what it is sent.
 *
 * @param request The client's request.
 * @param namespace The Durable Object namespace binding of a `BrokerObject` class.
 * @param route The channel, and the object (and shards) that host it.
 * @returns The object's response: a stream, 204, or an error status with a text body.
 * @throws {TypeError} The route names no channel, several channels without `object`, or
 * `shards` > 1 without a `shardKey` for a subscription.
 * @throws {RangeError} `shards` is not a positive integer.
 *
 * @example A worker that serves `/events?channel=…` (shown, not run: it needs workerd)
 * ```ts ignore
 * import { BrokerObject, type DurableObjectNamespaceLike, routeToBroker } from "@flume/sse/cloudflare";
 *
 * export { BrokerObject };
 * export default {
 *   fetch(request: Request, env: { BROKER: DurableObjectNamespaceLike }): Promise<Response> {
 *     const channel = new URL(request.url).searchParams.get("channel") ?? "news";
 *     return routeToBroker(request, env.BROKER, { channel });
 *   },
 * };
 * ```
 *
 * @example Routed to objects in this process (a Map stands for each object's storage)
 * ```ts
 * import {
 *   BrokerObject,
 *   type DurableObjectNamespaceLike,
 *   type DurableObjectStateLike,
 *   routeToBroker,
 * } from "@flume/sse/cloudflare";
 * import assert from "node:assert/strict";
 *
 * function state(): DurableObjectStateLike {
 *   const data = new Map<string, unknown>();
 *   return {
 *     storage: {
 *       get: (key) => Promise.resolve(data.get(key)),
 *       put: (entries) => Promise.resolve(void Object.entries(entries).forEach(([k, v]) => data.set(k, v))),
 *       delete: (keys) => Promise.resolve(keys.filter((key) => data.delete(key)).length),
 *       list: () => Promise.resolve(new Map()),
 *     },
 *     blockConcurrencyWhile: (callback) => callback(),
 *   };
 * }
 * const objects = new Map<string, BrokerObject>();
 * const namespace: DurableObjectNamespaceLike = {
 *   idFromName: (name) => name,
 *   get: (id) => {
 *     const name = id as string;
 *     if (!objects.has(name)) objects.set(name, new BrokerObject(state(), {}));
 *     return { fetch: (request) => objects.get(name)!.fetch(request) };
 *   },
 * };
 *
 * const stream = await routeToBroker(new Request("https://example.com/events"), namespace, { channel: "news" });
 * const post = new Request("https://example.com/events", { method: "POST", body: '{"data":"hello"}' });
 * assert.equal((await routeToBroker(post, namespace, { channel: "news" })).status, 204);
 * const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
 * let text = "";
 * while (!text.includes("data:")) text += (await reader.read()).value;
 * assert.match(text, /id: .+\ndata: hello\n\n$/);
 * assert.deepEqual([...objects.keys()], ["news"]); // one object per channel
 * for (const object of objects.values()) await object.broker.close();
 * ```
 */
export async function routeToBroker(
  request: Request,
  namespace: DurableObjectNamespaceLike,
  route: BrokerRoute,
): Promise<Response> {
  const channels = routeChannels(route);
  const shards = routeShards(route);
  if (request.method === "GET") {
    let shard = 0;
    if (shards > 1) {
      if (route.shardKey === undefined) {
        throw new TypeError(
          "Cannot route to broker: a subscription needs a `shardKey` when `shards` is more than 1",
        );
      }
      shard = hash(route.shardKey) % shards;
    }
    const headers = new Headers();
    const lastEventId = request.headers.get("last-event-id");
    if (lastEventId !== null) headers.set("last-event-id", lastEventId);
    return await stub(namespace, objectName(route, channels), shards, shard).fetch(
      new Request(objectUrl("subscribe", channels), { headers, signal: request.signal }),
    );
  }
  if (request.method === "POST") {
    if (channels.length !== 1) {
      throw new TypeError(
        `Cannot route to broker: a publish goes to one channel, got ${channels.length}`,
      );
    }
    const body = await request.text();
    const name = objectName(route, channels);
    const responses = await Promise.all(
      Array.from({ length: shards }, (_, k) =>
        stub(namespace, name, shards, k).fetch(
          new Request(objectUrl("publish", channels), {
            method: "POST",
            headers: { "content-type": "application/json" },
            body,
          }),
        )),
    );
    const failed = responses.find((response) => !response.ok);
    for (const response of responses) if (response !== failed) await response.body?.cancel();
    return failed ?? responses[0]!;
  }
  return new Response(`Cannot route request: method \`${request.method}\` is not allowed\n`, {
    status: 405,
    headers: { allow: "GET, POST", "content-type": "text/plain" },
  });
}

/**
 * Counts the clients of a channel (or of several) on the objects that host it, all shards
 * summed: for a presence indicator, or to check that clients that left are gone.
 * @param namespace The Durable Object namespace binding of a `BrokerObject` class.
 * @param route The channel, and the object (and shards) that host it; `shardKey` is unused.
 * @returns The number of clients; a client on two of the channels counts twice.
 * @throws {TypeError} The route names no channel, or several without `object`.
 * @throws {Error} An object answered with an error status.
 * @example How many are watching? (shown, not run: it needs workerd)
 * ```ts ignore
 * import { countClients, type DurableObjectNamespaceLike } from "@flume/sse/cloudflare";
 *
 * declare const env: { BROKER: DurableObjectNamespaceLike };
 * const watching = await countClients(env.BROKER, { channel: "match:42", shards: 4 });
 * ```
 */
export async function countClients(
  namespace: DurableObjectNamespaceLike,
  route: BrokerRoute,
): Promise<number> {
  const channels = routeChannels(route);
  const shards = routeShards(route);
  const name = objectName(route, channels);
  const counts = await Promise.all(
    Array.from({ length: shards }, async (_, k) => {
      const response = await stub(namespace, name, shards, k).fetch(
        new Request(objectUrl("count", channels)),
      );
      if (!response.ok) {
        throw new Error(
          `Cannot count clients: the broker object answered ${response.status}: ${await response
            .text()}`,
        );
      }
      const { clients } = await response.json() as { clients: number };
      return clients;
    }),
  );
  return counts.reduce((sum, n) => sum + n, 0);
}

function routeChannels(route: BrokerRoute): readonly string[] {
  const channels = typeof route.channel === "string" ? [route.channel] : route.channel;
  if (!Array.isArray(channels) || channels.length === 0) {
    throw new TypeError(
      "Cannot route to broker: `channel` must be a channel name or a non-empty array of them",
    );
  }
  return channels;
}

function routeShards(route: BrokerRoute): number {
  const shards = route.shards ?? 1;
  if (!Number.isSafeInteger(shards) || shards < 1) {
    throw new RangeError(
      `Cannot route to broker: \`shards\` must be a positive integer, got \`${String(shards)}\``,
    );
  }
  return shards;
}

function objectName(route: BrokerRoute, channels: readonly string[]): string {
  if (route.object !== undefined) return route.object;
  if (channels.length > 1) {
    throw new TypeError(
      "Cannot route to broker: several channels need an `object` that hosts them all",
    );
  }
  return channels[0]!;
}

function stub(
  namespace: DurableObjectNamespaceLike,
  name: string,
  shards: number,
  shard: number,
): DurableObjectStubLike {
  return namespace.get(namespace.idFromName(shards > 1 ? `${name}#${shard}` : name));
}

/** FNV-1a over UTF-16 code units: a stable, even spread of shard keys. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
