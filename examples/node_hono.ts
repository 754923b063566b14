/**
 * Server-Sent Events on Node 20+ with Hono on `@hono/node-server`: the core returns a standard
 * `Response`, so any framework that speaks `Request`/`Response` (Hono, Next.js route handlers,
 * SvelteKit, Remix, Elysia…) serves it as is.
 *
 * ```sh
 * npm install                                  # hono and @hono/node-server are devDependencies
 * npx tsx examples/node_hono.ts                # Node 20+; Node 23.6+ also runs .ts itself
 * curl -N 127.0.0.1:3000/events/news &
 * curl -X POST 127.0.0.1:3000/publish/news -H 'content-type: application/json' -d '{"hi":1}'
 * ```
 *
 * It listens on 127.0.0.1 (`HOST` to change it) and port 3000 (`PORT`).
 *
 * @module
 */

import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Hono } from "hono";
import { serve } from "@hono/node-server";
import { Broker, sseResponse } from "../mod.ts";

/** One broker for the process; `history` lets a reconnecting client catch up. */
export const broker: Broker = new Broker({ history: 100 });

/** The application: mount it anywhere Hono runs. */
export const app: Hono = new Hono();

// A channel's events. Broker.response reads Last-Event-ID and watches the client go away.
app.get("/events/:channel", (c) => broker.response(c.req.param("channel"), c.req.raw));

app.post("/publish/:channel", async (c) => {
  const data = await c.req.json().catch(() => null);
  if (data === null) return c.json({ error: "Expected a JSON body" }, 400);
  await broker.publish(c.req.param("channel"), data, { event: c.req.query("event") });
  return c.body(null, 204);
});

// One stream per request: the producer stops when the client disconnects.
app.get("/countdown/:from", (c) => {
  const from = Math.min(Number(c.req.param("from")) || 10, 1_000);
  return sseResponse(async (stream) => {
    for (let n = from; n >= 0 && !stream.signal.aborted; n--) {
      await stream.publish({ n }, { event: "count", id: n });
      // Wakes at once when the client leaves, so no timer outlives the stream.
      if (n > 0) await sleep(1_000, undefined, { signal: stream.signal }).catch(() => {});
    }
  });
});

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const hostname = process.env.HOST ?? "127.0.0.1";
  const port = Number(process.env.PORT ?? 3000);
  const server = serve({ fetch: app.fetch, port, hostname }, (info) => {
    console.log(`Hono + Flume on http://${hostname}:${info.port}/events/news`);
  });
  const stop = (): void => {
    // Ends every stream first: an open SSE response would keep server.close() waiting.
    void broker.close().then(() => server.close(() => process.exit(0)));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
