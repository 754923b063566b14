/**
 * A live clock over Server-Sent Events with `Bun.serve`: open the printed URL and watch the
 * ticks arrive. The default heartbeat keeps the quiet stream alive past Bun's 10 s idle timeout,
 * and the response starts at once, so `onopen` fires before the first tick.
 *
 * Run: `bun examples/bun_serve.ts` (set `PORT` to change the port, 3000 by default, and `HOST` to listen elsewhere than
 * 127.0.0.1).
 *
 * @module
 */
import { EventStream } from "../mod.ts";

/** The part of Bun's API this example uses (Deno type-checks this file too). */
declare const Bun: {
  serve(options: {
    hostname: string;
    port: number;
    fetch(request: Request): Response;
  }): { url: URL };
  env: Record<string, string | undefined>;
};

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Flume on Bun</title>
<h1>Flume on Bun</h1>
<p>Status: <b id="status">connecting</b></p>
<ol id="log" reversed></ol>
<script>
  const status = document.getElementById("status");
  const log = document.getElementById("log");
  const source = new EventSource("/events");
  source.onopen = () => status.textContent = "open";
  source.onerror = () => status.textContent = "reconnecting";
  source.addEventListener("tick", (event) => {
    const { n, time } = JSON.parse(event.data);
    const item = document.createElement("li");
    item.textContent = "tick " + n + " at " + time + " (id " + event.lastEventId + ")";
    log.prepend(item);
  });
</script>`;

/** One stream per client, fed by a timer that the stream's signal clears. */
function events(request: Request): Response {
  const last = Number(request.headers.get("last-event-id"));
  let n = Number.isSafeInteger(last) ? last : 0;
  const stream = new EventStream();
  const timer = setInterval(() => {
    n++;
    // A publish fails once the client is gone (the signal then clears this timer), or when a
    // client too slow to keep up has a full buffer and as many waiting sends: a tick is dropped.
    stream.publish({ n, time: new Date().toISOString() }, { event: "tick", id: n }).catch(() => {});
  }, 1000);
  stream.signal.addEventListener("abort", () => clearInterval(timer), { once: true });
  return stream.response();
}

const server = Bun.serve({
  hostname: Bun.env.HOST ?? "127.0.0.1",
  port: Number(Bun.env.PORT ?? 3000),
  fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname === "/events") return events(request);
    if (pathname === "/") {
      return new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } });
    }
    return new Response("Not found", { status: 404 });
  },
});
console.log(`Listening on ${server.url}`);
