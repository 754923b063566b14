/**
 * A live clock over Server-Sent Events with `Deno.serve`: open the printed URL and watch the
 * ticks arrive. Reload or restart the server: the browser reconnects by itself and, thanks to the
 * event ids, the count goes on where it stopped.
 *
 * Run: `deno run -A examples/deno_serve.ts` (set `PORT` to change the port, 8000 by default, and `HOST` to listen elsewhere than
 * 127.0.0.1).
 *
 * @module
 */
import { sseResponse } from "../mod.ts";

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Flume on Deno</title>
<h1>Flume on Deno</h1>
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

/** Resolves after `ms`, or at once when `signal` aborts; leaves no timer or listener behind. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

function handler(request: Request): Response {
  const { pathname } = new URL(request.url);
  if (pathname === "/events") {
    // A reconnecting EventSource sends the last id it saw: carry on counting from there.
    const last = Number(request.headers.get("last-event-id"));
    return sseResponse(async (stream) => {
      for (let n = Number.isSafeInteger(last) ? last + 1 : 1; !stream.signal.aborted; n++) {
        await stream.publish({ n, time: new Date().toISOString() }, { event: "tick", id: n });
        await sleep(1000, stream.signal);
      }
    });
  }
  if (pathname === "/") {
    return new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } });
  }
  return new Response("Not found", { status: 404 });
}

Deno.serve({
  hostname: Deno.env.get("HOST") ?? "127.0.0.1",
  port: Number(Deno.env.get("PORT") ?? 8000),
  onListen: ({ hostname, port }) => console.log(`Listening on http://${hostname}:${port}/`),
}, handler);
