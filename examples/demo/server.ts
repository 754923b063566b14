/**
 * The live demo: one page with a notification feed per user, a ticker broadcast to everyone, a
 * progress bar driven by a server task, and the connection state, all over one `EventSource`.
 *
 * ```sh
 * npm start                                  # fresh clone, Node and npm only
 * npx deno run -A examples/demo/server.ts    # or: npx bun examples/demo/server.ts
 * ```
 *
 * The broker keeps its history in memory. A dropped connection ("Drop connection" in the page)
 * comes back with `Last-Event-ID` and gets exactly what it missed; a restarted server has lost
 * that history, so a page that comes back to it gets the gap signal (`stream-reset`) and
 * refetches its state instead.
 *
 * @module
 */

import process from "node:process";
import { Broker, type EventStream, formatMetrics } from "../../mod.ts";

/** The users the page can pick; a fixed list keeps the number of channels bounded. */
export const USERS: readonly string[] = ["alice", "bob", "carol"];

/** Event names and their data: `n` numbers every event of this process, in publish order. */
export type DemoEvents = {
  notification: Notification;
  tick: Tick;
  progress: Progress;
};

/** A message for one user. */
export interface Notification {
  n: number;
  at: number;
  user: string;
  from: string;
  text: string;
}

/** A price change of the ticker, sent to everyone. */
export interface Tick {
  n: number;
  at: number;
  symbol: string;
  price: number;
  change: number;
}

/** How far a user's server task is. */
export interface Progress {
  n: number;
  at: number;
  user: string;
  task: number;
  percent: number;
}

/** Options of {@linkcode createDemo}. */
export interface DemoOptions {
  /**
   * Milliseconds between ticker updates.
   * @default {1_000}
   */
  tickInterval?: number;
  /**
   * Milliseconds between the 10 % steps of a task.
   * @default {400}
   */
  taskStep?: number;
  /**
   * The reconnection delay every page is given, in ms.
   * @default {1_500}
   */
  retry?: number;
  /**
   * Events kept per channel for replay.
   * @default {500}
   */
  history?: number;
}

/** A running demo application (no server of its own: see {@linkcode startDemo}). */
export interface Demo {
  /** Answers one request. */
  fetch(request: Request): Promise<Response>;
  /** Tells every page the server is going away, ends every stream and stops the timers. */
  close(): Promise<void>;
}

const STATIC: Record<string, [file: string, type: string]> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
};
const MAX_TEXT = 200;
const MAX_NOTIFICATIONS = 20;

/**
 * Creates the demo application: its broker, ticker and tasks, and a `fetch` handler.
 * @param options Timings and history size.
 * @returns The application.
 */
export function createDemo(options: DemoOptions = {}): Demo {
  const retry = options.retry ?? 1_500;
  const taskStep = options.taskStep ?? 400;
  const broker = new Broker<DemoEvents>({
    events: ["notification", "tick", "progress"],
    history: options.history ?? 500,
  });
  let n = 0;
  let closed = false;
  /** The state a page refetches after a gap: what it would otherwise have to replay. */
  const notifications = new Map<string, Notification[]>(USERS.map((user) => [user, []]));
  const tasks = new Map<string, Progress>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  /** Each page's stream, by the client id in its URL, for "Drop connection". */
  const streams = new Map<string, EventStream>();
  const files = new Map<string, string>();

  let price = 100;
  let lastTick: Tick | undefined;
  const ticker = setInterval(() => {
    const change = Math.round((Math.random() - 0.5) * 200) / 100;
    price = Math.max(1, Math.round((price + change) * 100) / 100);
    lastTick = { n: ++n, at: Date.now(), symbol: "ACME", price, change };
    broker.broadcast(lastTick, { event: "tick" }).catch(() => {});
  }, options.tickInterval ?? 1_000);

  function notify(user: string, from: string, text: string): Promise<void> {
    const notification: Notification = { n: ++n, at: Date.now(), user, from, text };
    const list = notifications.get(user)!;
    list.push(notification);
    if (list.length > MAX_NOTIFICATIONS) list.shift();
    return broker.publish(`user:${user}`, notification, { event: "notification" });
  }

  function runTask(user: string): number {
    const running = tasks.get(user);
    if (running && running.percent < 100) return running.task;
    const task = (running?.task ?? 0) + 1;
    const step = (percent: number): void => {
      if (closed) return;
      const progress: Progress = { n: ++n, at: Date.now(), user, task, percent };
      tasks.set(user, progress);
      broker.publish(`user:${user}`, progress, { event: "progress" }).catch(() => {});
      if (percent < 100) {
        const timer = setTimeout(() => {
          timers.delete(timer);
          step(percent + 10);
        }, taskStep);
        timers.add(timer);
      }
    };
    step(0);
    return task;
  }

  function events(url: URL, request: Request): Response {
    const user = userOf(url.searchParams.get("user"));
    if (!user) return json({ error: "Unknown user" }, 400);
    const client = url.searchParams.get("client") ?? "";
    // EventSource sends the header itself; a page that had to make a new EventSource (after a
    // fatal error) can only pass its position in the URL.
    const lastEventId = request.headers.get("last-event-id") ??
      url.searchParams.get("lastEventId") ?? undefined;
    const stream = broker.subscribe(`user:${user}`, lastEventId ? { lastEventId } : {});
    // Sent before the replay, which the broker queues a moment later: every event after this one
    // whose `n` is at most `hello.n` was published before this connection, so it is a replay.
    stream.send({
      event: "hello",
      retry,
      data: { n, user, client, resumed: lastEventId !== undefined },
    }).catch(() => {});
    if (/^[\w-]{1,40}$/.test(client)) {
      streams.get(client)?.close();
      streams.set(client, stream);
      stream.signal.addEventListener("abort", () => {
        if (streams.get(client) === stream) streams.delete(client);
      }, { once: true });
    }
    return stream.response();
  }

  async function fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname;
    if (request.method === "GET") {
      const entry = STATIC[path];
      if (entry) return page(entry[0], entry[1]);
      if (path === "/events") return events(url, request);
      if (path === "/api/state") {
        const user = userOf(url.searchParams.get("user"));
        if (!user) return json({ error: "Unknown user" }, 400);
        return json({
          n,
          notifications: notifications.get(user),
          task: tasks.get(user) ?? null,
          tick: lastTick ?? null,
        });
      }
      if (path === "/metrics") {
        return new Response(formatMetrics(broker.metrics()), {
          headers: { "content-type": "text/plain; version=0.0.4" },
        });
      }
      return json({ error: "Not found" }, 404);
    }
    if (request.method !== "POST") return json({ error: "Method not allowed" }, 405);
    if (closed) return json({ error: "The demo is stopping" }, 503);
    const body = await request.json().catch(() => null) as Record<string, unknown> | null;
    if (path === "/api/notify") {
      const user = userOf(body?.user);
      const text = typeof body?.text === "string" ? body.text.trim().slice(0, MAX_TEXT) : "";
      if (!user || !text) return json({ error: "Expected `user` and `text`" }, 400);
      await notify(user, userOf(body?.from) ?? "someone", text);
      return json({ ok: true }, 202);
    }
    if (path === "/api/task") {
      const user = userOf(body?.user);
      if (!user) return json({ error: "Expected `user`" }, 400);
      return json({ task: runTask(user) }, 202);
    }
    if (path === "/api/drop") {
      const stream = streams.get(String(body?.client));
      // Ends the stream as a network blip would: the page reconnects with Last-Event-ID.
      stream?.close();
      return json({ dropped: stream !== undefined }, stream ? 200 : 404);
    }
    return json({ error: "Not found" }, 404);
  }

  async function page(file: string, type: string): Promise<Response> {
    let text = files.get(file);
    if (text === undefined) {
      // fetch() reads file: URLs on Deno and Bun alike.
      text = await (await globalThis.fetch(new URL(`./${file}`, import.meta.url))).text();
      files.set(file, text);
    }
    return new Response(text, { headers: { "content-type": type, "cache-control": "no-cache" } });
  }

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    clearInterval(ticker);
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
    // A short, spread-out delay: the pages come back soon after a restart, not all at once.
    await broker.close({ event: { event: "bye", data: "server stopping" }, retry: [500, 1_500] });
  }

  return { fetch, close };
}

function userOf(value: unknown): string | undefined {
  return typeof value === "string" && USERS.includes(value) ? value : undefined;
}

function json(value: unknown, status = 200): Response {
  return Response.json(value, { status });
}

/** A demo listening on a port. */
export interface RunningDemo {
  /** `http://HOST:PORT` without a trailing slash. */
  origin: string;
  port: number;
  /** Closes the demo, then the server. */
  close(): Promise<void>;
}

/** Options of {@linkcode startDemo}. */
export interface StartDemoOptions extends DemoOptions {
  /**
   * The port; 0 for a free one.
   * @default {8000}
   */
  port?: number;
  /**
   * The address to listen on.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
}

/**
 * Serves the demo with the runtime's own server (`Deno.serve` or `Bun.serve`).
 * @param options Port, address and the demo's options.
 * @returns The running demo.
 */
export function startDemo(options: StartDemoOptions = {}): Promise<RunningDemo> {
  const { port = 8000, hostname = "127.0.0.1", ...demoOptions } = options;
  const demo = createDemo(demoOptions);
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  if (g.Bun) {
    let server: { port: number; stop(force: boolean): Promise<void> };
    try {
      server = g.Bun.serve({ port, hostname, fetch: demo.fetch });
    } catch (error) {
      demo.close();
      return Promise.reject(error);
    }
    return Promise.resolve({
      origin: `http://${hostname}:${server.port}`,
      port: server.port,
      close: async () => {
        await demo.close();
        await server.stop(true);
      },
    });
  }
  if (!g.Deno) return Promise.reject(new Error("Cannot start the demo: run it with Deno or Bun"));
  return new Promise((resolve, reject) => {
    let server: { shutdown(): Promise<void> };
    try {
      server = g.Deno.serve({
        port,
        hostname,
        onListen({ port }: { port: number }) {
          resolve({
            origin: `http://${hostname}:${port}`,
            port,
            close: async () => {
              await demo.close();
              // Unlike aborting the server's signal, this lets each ended stream flush its
              // last frames (the goodbye and the retry).
              await server.shutdown();
            },
          });
        },
      }, demo.fetch);
    } catch (error) {
      demo.close();
      reject(error);
    }
  });
}

async function main(): Promise<void> {
  const port = Number(process.env.PORT ?? 8000);
  // Local only by default; HOST=0.0.0.0 to listen on every interface.
  const hostname = process.env.HOST ?? "127.0.0.1";
  let running: RunningDemo;
  try {
    running = await startDemo({ port, hostname });
  } catch (error) {
    if (!(error instanceof Error && /in use/i.test(error.message)) || port === 0) throw error;
    console.log(`Port ${port} is busy; using a free one (set PORT to choose).`);
    running = await startDemo({ port: 0, hostname });
  }
  const url = `http://localhost:${running.port}/`;
  console.log(`Flume demo running at ${url}  (Ctrl+C to stop)`);
  console.log(`Open ${url}?user=bob in a second tab to see per-user delivery.`);
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await running.close();
    console.log("Demo stopped. Start it again and watch the page reconnect.");
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

if (import.meta.main) await main();
