// The worker under test: one `BrokerObject` per channel, routed by `routeToBroker`, bundled by
// tests/cloudflare/_workerd.ts with esbuild and run by workerd.
import {
  BrokerObject,
  type BrokerObjectOptions,
  countClients,
  type DurableObjectNamespaceLike,
  type DurableObjectStateLike,
  routeToBroker,
} from "../../src/cloudflare/mod.ts";

interface Env {
  EVENTS: DurableObjectNamespaceLike;
}

/** The options under test: a short heartbeat, so that a client that left is noticed fast. */
const options: BrokerObjectOptions = { history: 20, heartbeat: 500 };

export class Events extends BrokerObject {
  constructor(state: DurableObjectStateLike, env: Env) {
    super(state, env, options);
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const channel = url.searchParams.get("channel") ?? "news";
    // `?shards=3&key=user-7`: a hot channel spread over copies of its object.
    const shards = Number(url.searchParams.get("shards") ?? 1);
    const shardKey = url.searchParams.get("key") ?? undefined;
    const object = url.searchParams.get("object") ?? undefined;
    const route = { channel, shards, shardKey, object };
    try {
      if (url.pathname === "/health") return new Response("ok");
      if (url.pathname === "/count") {
        return Response.json({ clients: await countClients(env.EVENTS, route) });
      }
      if (url.pathname === "/events") return await routeToBroker(request, env.EVENTS, route);
      return new Response("Not found\n", { status: 404 });
    } catch (error) {
      return new Response(`${error instanceof Error ? error.message : String(error)}\n`, {
        status: 500,
      });
    }
  },
};
