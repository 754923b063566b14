import { Broker, type BrokerOptions } from "../broker.ts";
import { BrokerClosedError } from "../errors.ts";
import type { DurableObjectStateLike } from "./durable_object_types.ts";
import { parseObjectUrl } from "./_protocol.ts";
import { StorageBridge } from "./storage_bridge.ts";

/**
 * Options of {@linkcode BrokerObject}: those of `Broker`, but for the bridge, which is the
 * object's storage.
 */
export type BrokerObjectOptions =
  & Omit<BrokerOptions<Record<string, unknown>>, "bridge" | "history">
  & {
    /**
     * Events kept per channel, in the object's storage, for `Last-Event-ID` replay.
     * @default {100}
     */
    history?: number | undefined;
  };

/** The history a broker object keeps per channel when not told otherwise. */
const DEFAULT_OBJECT_HISTORY = 100;

/**
 * A Cloudflare Durable Object that hosts a `Broker` for the channels routed to it (one channel,
 * or a shard of them: see {@linkcode routeToBroker}), its history in the object's storage so
 * that `Last-Event-ID` resumes after the object was evicted or restarted.
 *
 * Export it (or a subclass that passes options) from your worker and bind it as a Durable
 * Object namespace. It answers only the requests of {@linkcode routeToBroker} and
 * {@linkcode countClients}, which reach it through its stub: subscribe (an SSE response),
 * publish (a JSON body `{ data, event?, id? }`, 204) and count (JSON).
 *
 * While it has open streams the object stays in memory and is billed for that time: hibernation
 * does not apply to streaming responses (see docs/cloudflare.md).
 *
 * @example Bind it in the worker (shown, not run: it needs workerd or Cloudflare)
 * ```ts ignore
 * // worker.ts; wrangler.jsonc: "durable_objects": { "bindings": [{ "name": "EVENTS", "class_name": "Events" }] },
 * //   "migrations": [{ "tag": "v1", "new_sqlite_classes": ["Events"] }]
 * import { BrokerObject, type DurableObjectNamespaceLike, routeToBroker } from "@flume/sse/cloudflare";
 *
 * export class Events extends BrokerObject {
 *   constructor(ctx: DurableObjectState, env: Env) {
 *     super(ctx, env, { history: 500, heartbeat: 15_000 });
 *   }
 * }
 *
 * export default {
 *   fetch(request: Request, env: { EVENTS: DurableObjectNamespaceLike }): Promise<Response> {
 *     const channel = new URL(request.url).searchParams.get("channel") ?? "news";
 *     return routeToBroker(request, env.EVENTS, { channel });
 *   },
 * };
 * ```
 *
 * @example One object driven by hand, with a Map for its storage
 * ```ts
 * import { BrokerObject, type DurableObjectStateLike } from "@flume/sse/cloudflare";
 * import assert from "node:assert/strict";
 *
 * const data = new Map<string, unknown>();
 * const state: DurableObjectStateLike = {
 *   storage: {
 *     get: (key) => Promise.resolve(data.get(key)),
 *     put: (entries) => Promise.resolve(void Object.entries(entries).forEach(([k, v]) => data.set(k, v))),
 *     delete: (keys) => Promise.resolve(keys.filter((key) => data.delete(key)).length),
 *     list: () => Promise.resolve(new Map()),
 *   },
 *   blockConcurrencyWhile: (callback) => callback(),
 * };
 * const object = new BrokerObject(state, {});
 * const origin = "https://broker.flume.internal";
 * const stream = await object.fetch(new Request(`${origin}/subscribe?channel=news`));
 * const publish = await object.fetch(new Request(`${origin}/publish?channel=news`, {
 *   method: "POST",
 *   body: JSON.stringify({ data: { text: "hi" }, event: "note" }),
 * }));
 * assert.equal(publish.status, 204);
 * const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
 * let text = "";
 * while (!text.includes("data:")) text += (await reader.read()).value;
 * assert.match(text, /event: note\nid: .+\ndata: {"text":"hi"}\n\n$/);
 * await object.broker.close();
 * ```
 */
export class BrokerObject {
  /** The broker of this object: publish to it directly from code that runs in the object. */
  readonly broker: Broker;
  /** The state the runtime gave the object. */
  protected readonly state: DurableObjectStateLike;
  /** The worker's bindings, as the runtime gave them. */
  protected readonly env: unknown;

  /**
   * Creates the object's broker over its storage; called by the runtime (a subclass passes
   * options).
   * @param state The object's state (`ctx`).
   * @param env The worker's bindings.
   * @param options The broker's options, but for its bridge.
   */
  constructor(state: DurableObjectStateLike, env: unknown, options: BrokerObjectOptions = {}) {
    this.state = state;
    this.env = env;
    const bridge = new StorageBridge(state.storage);
    this.broker = new Broker({
      ...options,
      history: options.history ?? DEFAULT_OBJECT_HISTORY,
      bridge,
    });
    // Requests wait until the history is in memory, as the runtime recommends for such reads.
    void state.blockConcurrencyWhile(() => bridge.load());
  }

  /**
   * Answers a request that {@linkcode routeToBroker} or {@linkcode countClients} sent through the
   * object's stub.
   * @param request The request.
   * @returns An SSE response (subscribe), 204 (publish), JSON `{ clients }` (count), 400 for a
   * bad request, 404 for anything else, 503 while the broker is closed or full.
   */
  async fetch(request: Request): Promise<Response> {
    const route = parseObjectUrl(request.url);
    if (!route) return text(404, "Cannot route request: not a broker object action");
    const { action, channels } = route;
    try {
      if (action === "subscribe") return this.broker.response(channels, request);
      if (action === "count") {
        const clients = channels.length === 0
          ? this.broker.clientCount()
          : channels.reduce((sum, channel) => sum + this.broker.clientCount(channel), 0);
        return Response.json({ clients });
      }
      if (request.method !== "POST") return text(405, "Cannot publish event: use POST");
      const [channel] = channels;
      if (channel === undefined || channels.length !== 1) {
        return text(400, `Cannot publish event: name exactly one channel, got ${channels.length}`);
      }
      const { data, event, id } = await readPublishBody(request);
      await this.broker.publish(channel, data, { event, id });
      return new Response(null, { status: 204 });
    } catch (error) {
      if (error instanceof BrokerClosedError) return text(503, error.message);
      if (error instanceof TypeError || error instanceof RangeError) {
        return text(400, error.message);
      }
      throw error;
    }
  }
}

/** The body of a publish: a JSON object `{ data, event?, id? }`. */
async function readPublishBody(
  request: Request,
): Promise<{ data: unknown; event: string | undefined; id: string | number | undefined }> {
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    throw new TypeError("Cannot publish event: the body must be JSON");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new TypeError(
      'Cannot publish event: the body must be a JSON object like `{"data": …, "event": …}`',
    );
  }
  const { data, event, id } = body as Record<string, unknown>;
  if (event !== undefined && typeof event !== "string") {
    throw new TypeError(
      `Cannot publish event: \`event\` must be a string, got \`${String(event)}\``,
    );
  }
  if (id !== undefined && typeof id !== "string" && typeof id !== "number") {
    throw new TypeError(
      `Cannot publish event: \`id\` must be a string or a number, got \`${String(id)}\``,
    );
  }
  return { data, event, id };
}

function text(status: number, message: string): Response {
  return new Response(`${message}\n`, { status, headers: { "content-type": "text/plain" } });
}
