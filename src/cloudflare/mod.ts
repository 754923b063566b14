/**
 * The `Broker` of `@flume/sse` in a Cloudflare Durable Object: on an edge runtime each request
 * may run in another isolate, so an in-memory broker fans out to almost nobody; a Durable Object
 * is one address that every worker reaches, and the same `Broker` lives inside it.
 *
 * - {@linkcode BrokerObject}: the Durable Object class. Export it from your worker (or a
 *   subclass that sets the broker's options) and bind it as a namespace.
 * - {@linkcode routeToBroker}: in the worker, sends `GET` (subscribe, with `Last-Event-ID`) and
 *   `POST` (publish, JSON `{ data, event?, id? }`) to the object named after the channel, or to
 *   the shards of a hot channel; {@linkcode countClients} asks how many listen.
 * - {@linkcode StorageBridge}: the history kept in the object's storage, so that a client
 *   resumes after the object was evicted or restarted; usable in a Durable Object of your own.
 *
 * Zero dependencies: the Durable Object types are written here, structurally, and the real ones
 * fit them. Costs and sharding: see docs/cloudflare.md.
 *
 * @example A worker with one broker object per channel (shown, not run: it needs workerd)
 * ```ts ignore
 * // wrangler.jsonc:
 * //   "durable_objects": { "bindings": [{ "name": "BROKER", "class_name": "BrokerObject" }] },
 * //   "migrations": [{ "tag": "v1", "new_sqlite_classes": ["BrokerObject"] }]
 * import { BrokerObject, type DurableObjectNamespaceLike, routeToBroker } from "@flume/sse/cloudflare";
 *
 * export { BrokerObject };
 * export default {
 *   fetch(request: Request, env: { BROKER: DurableObjectNamespaceLike }): Promise<Response> {
 *     // Authenticate here: the object serves whatever it is sent.
 *     const channel = new URL(request.url).searchParams.get("channel") ?? "news";
 *     return routeToBroker(request, env.BROKER, { channel });
 *   },
 * };
 * ```
 *
 * @module
 */

export { BrokerObject, type BrokerObjectOptions } from "./broker_object.ts";
export { type BrokerRoute, countClients, routeToBroker } from "./route_to_broker.ts";
export { StorageBridge } from "./storage_bridge.ts";
export type {
  DurableObjectNamespaceLike,
  DurableObjectStateLike,
  DurableObjectStorageLike,
  DurableObjectStubLike,
} from "./durable_object_types.ts";
