/**
 * N worker processes, one broker shared over Redis: open two workers' pages side by side, post
 * on one, see it on both. Reload a page on another worker: it resumes with `Last-Event-ID`.
 *
 *   npm install                                   (once: the `redis` client is an npm package)
 *   npx deno run -A examples/redis_workers.ts     (or: npx bun examples/redis_workers.ts)
 *
 * Environment: `REDIS_URL` (default `redis://127.0.0.1:6379`), `WORKERS` (default 3), `PORT`
 * (the first worker's port, default 8000; the others follow), `HOST` (default 127.0.0.1).
 *
 * Ctrl-C or a plain `kill` of this process stops every worker; a worker that fails (its port is
 * taken, Redis is down) stops the others too, with a message saying which and why.
 * @module
 */
import { spawn } from "node:child_process";
import process from "node:process";
import { createClient } from "redis";
import { Broker } from "../mod.ts";
import { redisBridge } from "../src/redis/mod.ts";

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const firstPort = Number(process.env.PORT ?? 8000);
const workerIndex = process.argv.indexOf("--worker");

if (workerIndex < 0) {
  // The parent: start the workers as copies of this script, stop them on Ctrl-C.
  const count = Number(process.env.WORKERS ?? 3);
  const script = process.argv[1]!;
  const runtimeArgs = "Bun" in globalThis ? [] : ["run", "-A"];
  const children = Array.from(
    { length: count },
    (_, i) =>
      spawn(process.execPath, [...runtimeArgs, script, "--worker", String(firstPort + i)], {
        stdio: "inherit",
      }),
  );
  let stopping = false;
  let running = children.length;
  let exitCode = 0;
  const stopAll = (code: number): void => {
    exitCode ||= code;
    if (stopping) return;
    stopping = true;
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    }
  };
  children.forEach((child, i) => {
    child.on("exit", (code, signal) => {
      if (!stopping) {
        console.error(
          `worker on port ${firstPort + i} exited (${
            signal ?? `code ${code}`
          }); stopping the others`,
        );
        stopAll(1);
      }
      if (--running === 0) process.exit(exitCode);
    });
  });
  // Ctrl-C reaches the whole process group; a plain `kill` reaches only this process, which
  // passes it on: no worker outlives its parent.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => stopAll(0));
  }
} else {
  const port = Number(process.argv[workerIndex + 1]);
  const client = createClient({ url: redisUrl });
  const subscriber = client.duplicate();
  // The bridge reports connection errors through its own `onError`; this keeps the client
  // from throwing them at the process before the bridge is attached.
  for (const c of [client, subscriber]) c.on("error", () => {});
  await Promise.all([client.connect(), subscriber.connect()]);

  const broker = new Broker({
    history: 100,
    bridge: redisBridge({ client, subscriber, prefix: "example:" }),
  });

  const page = (worker: number) =>
    `<!doctype html><meta charset="utf-8"><title>worker ${worker}</title>
<h1>Worker on port ${worker}</h1>
<form><input name="text" autocomplete="off" autofocus><button>Post</button></form><ul></ul>
<script>
  const list = document.querySelector("ul");
  const source = new EventSource("/events");
  source.onmessage = (e) => list.insertAdjacentHTML("beforeend", "<li>" + e.data + " <small>" + e.lastEventId + "</small></li>");
  source.addEventListener("stream-reset", () => list.insertAdjacentHTML("beforeend", "<li><em>history lost: refetch</em></li>"));
  document.querySelector("form").onsubmit = async (e) => {
    e.preventDefault();
    await fetch("/publish", { method: "POST", body: e.target.text.value });
    e.target.reset();
  };
</script>`;

  const handler = async (request: Request): Promise<Response> => {
    const { pathname } = new URL(request.url);
    if (pathname === "/events") return broker.response("chat", request);
    if (pathname === "/publish" && request.method === "POST") {
      const text = (await request.text()).slice(0, 500);
      try {
        await broker.publish("chat", `${text} (via :${port})`);
        return new Response(null, { status: 204 });
      } catch (error) {
        // Redis is unreachable: nobody, this worker included, got the event.
        return new Response(String(error), { status: 503 });
      }
    }
    return new Response(page(port), { headers: { "content-type": "text/html; charset=utf-8" } });
  };

  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  const hostname = process.env.HOST ?? "127.0.0.1";
  try {
    if (g.Bun) g.Bun.serve({ port, hostname, fetch: handler });
    else g.Deno.serve({ port, hostname, onListen() {} }, handler);
  } catch (error) {
    const why = /in use/i.test(String(error)) ? "the port is in use (set PORT)" : String(error);
    console.error(`Cannot start worker on ${hostname}:${port}: ${why}`);
    process.exit(1);
  }
  console.log(`worker ${process.pid} on http://${hostname}:${port}`);

  process.on("SIGTERM", async () => {
    await broker.close({ retry: [500, 2_000] });
    client.destroy();
    subscriber.destroy();
    process.exit(0);
  });
}
