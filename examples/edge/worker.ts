/**
 * An edge function in the shape edge platforms take, `export default { fetch }`, running
 * unchanged on Cloudflare Workers (`workerd`), Deno Deploy (`deno serve`), Bun and any runtime that
 * calls a `fetch(request)` handler:
 *
 * ```sh
 * npx deno serve -A --host 127.0.0.1 examples/edge/worker.ts   # Deno Deploy style, :8000
 * npx deno run -A examples/edge/serve_workerd.ts     # under Cloudflare's workerd, 127.0.0.1:8787
 * npx wrangler dev examples/edge/worker.ts           # if you use wrangler
 * ```
 *
 * - `GET /clock?interval=1000&count=5`: a producer that sends a `tick` every `interval` ms. With
 *   `count`, the stream ends after that many events and the client reconnects; `Last-Event-ID`
 *   makes the clock go on where it stopped.
 * - `GET /events?channel=news` and `POST /publish?channel=news` (the body is the data): a broker.
 * - `GET /stats`: producers live, started and ended, and broker clients. A producer ends when its
 *   client goes away; nothing here needs `request.signal`, which workerd only fires under the
 *   `enable_request_signal` compatibility flag: the body's cancellation is enough. workerd
 *   cancels the body at the first write after the client left: the next event or heartbeat.
 *
 * A broker lives in one isolate: clients connected to other isolates of a real deployment do not
 * see its events. Across isolates, publish through a shared bridge (`@flume/sse/redis`) or keep
 * the broker in one Durable Object.
 *
 * @module
 */

import { Broker, sseResponse } from "../../mod.ts";

// workerd notices a client that left only when it next writes to it (with or without
// `request.signal`), so the heartbeat also bounds how long a gone client holds its place.
const broker = new Broker({ history: 100, heartbeat: 2_000 });
const producers = { live: 0, started: 0, ended: 0 };

/** Resolves after `ms`, or at once when `signal` aborts; leaves no timer or listener behind. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

function integer(value: string | null, fallback: number, min: number, max: number): number {
  const n = Number(value ?? fallback);
  return Number.isSafeInteger(n) ? Math.min(max, Math.max(min, n)) : fallback;
}

function clock(request: Request, url: URL): Response {
  const interval = integer(url.searchParams.get("interval"), 1_000, 10, 60_000);
  const count = integer(url.searchParams.get("count"), Infinity, 1, 1_000_000);
  const last = integer(request.headers.get("last-event-id"), 0, 0, Number.MAX_SAFE_INTEGER);
  return sseResponse(async (stream) => {
    producers.live++;
    producers.started++;
    try {
      await stream.send({ retry: Math.min(interval, 1_000) });
      for (let n = last + 1; n <= last + count && !stream.signal.aborted; n++) {
        await stream.publish({ n, time: new Date().toISOString() }, { event: "tick", id: n });
        if (n < last + count) await sleep(interval, stream.signal);
      }
    } finally {
      producers.live--;
      producers.ended++;
    }
  }, { headers: { "access-control-allow-origin": "*" } });
}

async function handle(request: Request): Promise<Response> {
  const url = new URL(request.url);
  const channel = url.searchParams.get("channel") || "news";
  switch (`${request.method} ${url.pathname}`) {
    case "GET /clock":
      return clock(request, url);
    case "GET /events":
      return broker.response(channel, request);
    case "POST /publish": {
      const data = await request.text();
      await broker.publish(channel, data, { event: url.searchParams.get("event") || undefined });
      return new Response(null, { status: 204 });
    }
    case "GET /stats":
      return Response.json({ ...producers, clients: broker.clientCount() });
    case "GET /":
      return new Response(
        "GET /clock?interval=1000&count=5 · GET /events?channel=news · " +
          "POST /publish?channel=news · GET /stats\n",
      );
    default:
      return new Response("Not found\n", { status: 404 });
  }
}

export default {
  /**
   * Answers one request.
   * @param request The request.
   * @returns The response.
   */
  fetch(request: Request): Promise<Response> {
    return handle(request).catch((error) =>
      new Response(`${error instanceof Error ? error.message : String(error)}\n`, { status: 400 })
    );
  },
};
