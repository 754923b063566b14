/**
 * The parts of Cloudflare's Durable Object API that `@flume/sse/cloudflare` uses, written as
 * minimal structural types so that the package needs no dependency: the real objects
 * (`DurableObjectState`, `DurableObjectStorage`, `DurableObjectNamespace` from
 * `@cloudflare/workers-types` or `wrangler types`) fit them as they are.
 * @module
 */

/**
 * The transactional storage of one Durable Object (`ctx.storage`), as far as the broker's
 * history uses it: values are stored by structured clone, keys are listed in UTF-8 order.
 *
 * @example A storage kept in a Map, enough for a unit test of code that takes one
 * ```ts
 * import type { DurableObjectStorageLike } from "@flume/sse/cloudflare";
 * import assert from "node:assert/strict";
 *
 * const data = new Map<string, unknown>();
 * const storage: DurableObjectStorageLike = {
 *   get: (key) => Promise.resolve(data.get(key)),
 *   put: (entries) => Promise.resolve(void Object.entries(entries).forEach(([k, v]) => data.set(k, v))),
 *   delete: (keys) => Promise.resolve(keys.filter((key) => data.delete(key)).length),
 *   list: ({ prefix }) =>
 *     Promise.resolve(new Map([...data].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => a < b ? -1 : 1))),
 * };
 * await storage.put({ a: 1 });
 * assert.equal(await storage.get("a"), 1);
 * ```
 */
export interface DurableObjectStorageLike {
  /** The value stored under `key`, or undefined. */
  get(key: string): Promise<unknown>;
  /** Stores every entry, atomically (at most 128 keys). */
  put(entries: Record<string, unknown>): Promise<void>;
  /** Deletes the keys (at most 128); resolves with how many existed. */
  delete(keys: string[]): Promise<number>;
  /** Every entry whose key starts with `prefix`, in key order. */
  list(options: { prefix: string }): Promise<Map<string, unknown>>;
}

/**
 * What the runtime passes a Durable Object's constructor first (`ctx`, formerly `state`), as
 * far as {@linkcode BrokerObject} uses it.
 *
 * @example The state of an object, as workerd passes it (shown, not run: it needs workerd)
 * ```ts ignore
 * import type { DurableObjectStateLike } from "@flume/sse/cloudflare";
 *
 * export class Counter {
 *   constructor(readonly state: DurableObjectStateLike) {}
 * }
 * ```
 */
export interface DurableObjectStateLike {
  /** The object's own storage. */
  readonly storage: DurableObjectStorageLike;
  /** Runs `callback` while no event (request, alarm) is delivered to the object. */
  blockConcurrencyWhile<T>(callback: () => Promise<T>): Promise<T>;
}

/**
 * A stub: the address of one Durable Object, through which a worker sends it requests.
 *
 * @example Any object with a `fetch` fits
 * ```ts
 * import type { DurableObjectStubLike } from "@flume/sse/cloudflare";
 * import assert from "node:assert/strict";
 *
 * const stub: DurableObjectStubLike = { fetch: () => Promise.resolve(new Response("hi")) };
 * assert.equal(await (await stub.fetch(new Request("http://do/"))).text(), "hi");
 * ```
 */
export interface DurableObjectStubLike {
  /** Sends the object a request. */
  fetch(request: Request): Promise<Response>;
}

/**
 * A Durable Object namespace binding (`env.BROKER`): one object per name.
 *
 * @example A namespace that hands out stubs by name
 * ```ts
 * import type { DurableObjectNamespaceLike } from "@flume/sse/cloudflare";
 * import assert from "node:assert/strict";
 *
 * const namespace: DurableObjectNamespaceLike = {
 *   idFromName: (name) => name,
 *   get: (id) => ({ fetch: () => Promise.resolve(new Response(String(id))) }),
 * };
 * const stub = namespace.get(namespace.idFromName("news"));
 * assert.equal(await (await stub.fetch(new Request("http://do/"))).text(), "news");
 * ```
 */
export interface DurableObjectNamespaceLike {
  /** The id of the object named `name`: the same name, the same object, worldwide. */
  idFromName(name: string): unknown;
  /**
   * The stub of the object with that id (declared as a method, so that the real binding, whose
   * parameter is a `DurableObjectId`, fits).
   */
  get(id: unknown): DurableObjectStubLike;
}
