/**
 * The live demo: one page with a notification feed per user, a ticker broadcast to everyone, a
 * progress bar driven by a server task, and the connection state, all over one `EventSource`;
 * and a generated answer from a fake model that outlives the page (`@flume/sse/resumable`):
 * reload mid-answer and it continues where it was, or stop it.
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
 * The answer panel streams {@linkcode fakeAnswer} (no network, no model: the same words every
 * time) through `ResumableStreams` in memory. `ANSWER_WORDS` and `ANSWER_STEP` (ms between
 * chunks) make it shorter or faster.
 *
 * @module
 */

import process from "node:process";
import { Broker, type EventStream, formatMetrics } from "../../mod.ts";
import { ResumableStreams } from "../../src/resumable/mod.ts";

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
  /**
   * Words of the fake model's answer.
   * @default {400}
   */
  answerWords?: number;
  /**
   * Milliseconds between the answer's chunks (of one to three words).
   * @default {100}
   */
  answerStep?: number;
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
  "/answer.js": ["answer.js", "text/javascript; charset=utf-8"],
};
const MAX_TEXT = 200;
const MAX_NOTIFICATIONS = 20;
/** Answers the demo keeps at once (running or retained); a new one past it gets 503. */
const MAX_ANSWERS = 100;

/** The fake model's vocabulary: its answers are this text, word after word, over and over. */
const MODEL_TEXT = `A resumable stream keeps a generation alive beyond its connection. The producer
runs under an id until it ends, whether or not anyone is reading, and every event it sends is
stored with an id. A reader that reloads the page comes back with the id of the last event it
saw and gets exactly what it missed, then the live tail, then an end marker that tells a
finished answer from one that was cut off. Nothing is generated twice and nothing is paid for
twice: the model ran once, and every reader shares what it wrote.`.split(/\s+/);

/**
 * The fake model's whole answer of `words` words: deterministic, so a test compares what a page
 * shows with it exactly.
 * @param words How many words.
 * @returns The answer's chunks, in order: one to three words each, every chunk after the first
 * starting with a space; joined, they are the answer.
 */
export function fakeAnswer(words: number): string[] {
  const chunks: string[] = [];
  for (let word = 0; word < words;) {
    const size = Math.min(1 + (chunks.length % 3), words - word);
    const text = Array.from({ length: size }, (_, i) => MODEL_TEXT[(word + i) % MODEL_TEXT.length])
      .join(" ");
    chunks.push(word === 0 ? text : " " + text);
    word += size;
  }
  return chunks;
}

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
  const answerWords = options.answerWords ?? 400;
  const answerStep = options.answerStep ?? 100;
  if (!Number.isInteger(answerWords) || answerWords < 1 || !(answerStep >= 0)) {
    throw new RangeError(
      `Cannot create the demo: \`answerWords\` must be a positive integer and \`answerStep\` at least 0, got \`${answerWords}\` and \`${answerStep}\``,
    );
  }
  const answerChunks = fakeAnswer(answerWords);
  const answers = new ResumableStreams({ maxStreams: MAX_ANSWERS });
  /** Ids of the answers whose producer has not returned yet: what the status route reports. */
  const producing = new Set<string>();

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
      if (path === "/api/answer/stream") return answerStream(url, request);
      if (path === "/api/answer/status") return answerStatus(url);
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
    if (path === "/api/answer") return startAnswer();
    if (path === "/api/answer/stop") {
      const id = answerIdOf(body?.id);
      if (!id) return json({ error: "Expected `id`" }, 400);
      return json({ stopped: await answers.cancel(id) });
    }
    if (path === "/api/drop") {
      const stream = streams.get(String(body?.client));
      // Ends the stream as a network blip would: the page reconnects with Last-Event-ID.
      stream?.close();
      return json({ dropped: stream !== undefined }, stream ? 200 : 404);
    }
    return json({ error: "Not found" }, 404);
  }

  /** Starts the fake model under a new id: it writes to the generation, not to a connection. */
  async function startAnswer(): Promise<Response> {
    const id = `answer-${crypto.randomUUID()}`;
    const started = await answers.start(id, async (stream) => {
      producing.add(id);
      try {
        for (const text of answerChunks) {
          await sleep(answerStep, stream.signal);
          if (stream.signal.aborted) return; // "Stop", or the demo is closing
          await stream.publish({ text }, { event: "chunk" });
        }
      } finally {
        producing.delete(id);
      }
    });
    if (started !== "started") return json({ error: "Too many answers; try again later" }, 503);
    return json({ id, chunks: answerChunks.length }, 201);
  }

  /**
   * A page's stream of an answer. EventSource sends `Last-Event-ID` itself when it reconnects;
   * a reloaded page has a new EventSource, which cannot, so it passes its position in the URL.
   */
  async function answerStream(url: URL, request: Request): Promise<Response> {
    if (closed) return json({ error: "The demo is stopping" }, 503);
    const id = url.searchParams.get("id") ?? "";
    const lastEventId = url.searchParams.get("lastEventId");
    if (request.headers.has("last-event-id") || !lastEventId) {
      return await answers.response(id, request);
    }
    return await answers.response(
      id,
      new Request(request.url, {
        headers: { "last-event-id": lastEventId },
        signal: request.signal,
      }),
    );
  }

  async function answerStatus(url: URL): Promise<Response> {
    if (closed) return json({ error: "The demo is stopping" }, 503);
    const id = answerIdOf(url.searchParams.get("id"));
    if (!id) return json({ error: "Expected `id`" }, 400);
    const status = await answers.status(id);
    if (!status) return json({ error: "No such answer (never started, or expired)" }, 404);
    const { running, ended } = answers.metrics();
    return json({ ...status, producing: producing.has(id), running, ended });
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
    // Ends every answer as "cancelled" and every answer's reader; the producers stop at once.
    await answers.close();
    // A short, spread-out delay: the pages come back soon after a restart, not all at once.
    await broker.close({ event: { event: "bye", data: "server stopping" }, retry: [500, 1_500] });
  }

  return { fetch, close };
}

function answerIdOf(value: unknown): string | undefined {
  return typeof value === "string" && /^answer-[\w-]{1,60}$/.test(value) ? value : undefined;
}

/** Resolves after `ms`, or at once when `signal` aborts; its timer never outlives it. */
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
  const answer = {
    ...(process.env.ANSWER_WORDS ? { answerWords: Number(process.env.ANSWER_WORDS) } : {}),
    ...(process.env.ANSWER_STEP ? { answerStep: Number(process.env.ANSWER_STEP) } : {}),
  };
  // Local only by default; HOST=0.0.0.0 to listen on every interface.
  const hostname = process.env.HOST ?? "127.0.0.1";
  let running: RunningDemo;
  try {
    running = await startDemo({ port, hostname, ...answer });
  } catch (error) {
    if (!(error instanceof Error && /in use/i.test(error.message)) || port === 0) throw error;
    console.log(`Port ${port} is busy; using a free one (set PORT to choose).`);
    running = await startDemo({ port: 0, hostname, ...answer });
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
