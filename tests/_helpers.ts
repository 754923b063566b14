/**
 * Test helpers shared by every suite: a real HTTP server on 127.0.0.1 under whichever runtime
 * runs the tests (Deno.serve or Bun.serve), and small stream utilities. One version of each:
 * a suite that needs one of these imports it from here rather than writing its own.
 * @module
 */
import { createServer } from "node:net";
import {
  EventParserStream,
  type EventStream,
  type ParsedEvent,
  StreamClosedError,
} from "../mod.ts";

/** A running test server. */
export interface TestServer {
  /** `http://127.0.0.1:PORT` (no trailing slash). */
  origin: string;
  port: number;
  /** Stops the server and closes its connections. */
  close(): Promise<void>;
}

/** The runtime running the tests. */
export const runtime: "deno" | "bun" | "node" = "Bun" in globalThis
  ? "bun"
  : "Deno" in globalThis
  ? "deno"
  : "node";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /** Bun's `idleTimeout` in seconds (Bun only); the runtime's default when absent. */
  idleTimeout?: number;
}

/** Starts `handler` on a free port of 127.0.0.1 with the runtime's own server. */
export function serve(
  handler: (request: Request) => Response | Promise<Response>,
  options: ServeOptions = {},
): Promise<TestServer> {
  if (runtime === "bun") {
    const server = g.Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: handler,
      ...(options.idleTimeout === undefined ? {} : { idleTimeout: options.idleTimeout }),
    });
    return Promise.resolve({
      origin: `http://127.0.0.1:${server.port}`,
      port: server.port,
      close: async () => {
        await server.stop(true);
      },
    });
  }
  if (runtime === "deno") {
    return new Promise((resolve) => {
      const controller = new AbortController();
      const server = g.Deno.serve({
        port: 0,
        hostname: "127.0.0.1",
        signal: controller.signal,
        onListen({ port }: { port: number }) {
          resolve({
            origin: `http://127.0.0.1:${port}`,
            port,
            close: async () => {
              controller.abort();
              await server.finished;
            },
          });
        },
      }, handler);
    });
  }
  throw new Error("serve() needs Deno or Bun");
}

/** Reads a whole stream into an array. */
export async function collect<T>(stream: ReadableStream<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<T>) out.push(chunk);
  return out;
}

/** A stream of the given chunks. */
export function fromChunks<T>(chunks: readonly T[]): ReadableStream<T> {
  let i = 0;
  return new ReadableStream<T>({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]);
      else controller.close();
    },
  });
}

/** Every way to cut `text` in two, as [head, tail] pairs (the whole text included once). */
export function everySplit(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i <= text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  return out;
}

/** Resolves after `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `condition` every 10 ms until it holds, or rejects after `timeout` ms. The default is
 * generous so that a suite passes with every core busy; a test that must notice slowness asserts
 * on a virtual clock (tests/_clock.ts), not on this.
 */
export async function waitFor(
  condition: () => boolean,
  timeout = 5_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeout} ms waiting for ${what}`);
    await delay(10);
  }
}

/** A port of 127.0.0.1 that was free a moment ago (nothing listens on it once this resolves). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves when `signal` aborts (at once if it has already). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/** Why `stream` ended; fails the test unless it ended with a {@linkcode StreamClosedError}. */
export function reasonOf(stream: EventStream): StreamClosedError {
  const reason = stream.signal.reason;
  if (!(reason instanceof StreamClosedError)) {
    throw new Error(`Expected a StreamClosedError, got ${String(reason)}`);
  }
  return reason;
}

/** One entry of {@linkcode readEventLog}: an event, or a comment line as `{ comment }`. */
export type LogEntry = ParsedEvent | { comment: string };

/**
 * Reads the events of a response or a body, with its comments interleaved as `{ comment }`
 * entries, until the body ends or `count` events have arrived; then cancels the body (the
 * client goes away).
 */
export async function readEventLog(
  source: Response | ReadableStream<Uint8Array>,
  count: number = Infinity,
): Promise<LogEntry[]> {
  const body = source instanceof Response ? source.body : source;
  if (body === null) throw new TypeError("Cannot read events: the response has no body");
  const log: LogEntry[] = [];
  let events = 0;
  const parser = new EventParserStream({ onComment: (comment) => log.push({ comment }) });
  const reader = body.pipeThrough(parser).getReader();
  try {
    while (events < count) {
      const { done, value } = await reader.read();
      if (done) break;
      log.push(value);
      events++;
    }
  } finally {
    await reader.cancel();
  }
  return log;
}

/** The events of a response or a body, until it ends or `count` have arrived; then cancels it. */
export async function readEvents(
  source: Response | ReadableStream<Uint8Array>,
  count: number = Infinity,
): Promise<ParsedEvent[]> {
  const log = await readEventLog(source, count);
  return log.filter((entry): entry is ParsedEvent => !("comment" in entry));
}

/** The first `count` items of `iterable`; leaving the loop ends it (`return()` is called). */
export async function take<T>(iterable: AsyncIterable<T>, count: number): Promise<T[]> {
  const out: T[] = [];
  if (count === 0) return out;
  for await (const item of iterable) {
    out.push(item);
    if (out.length === count) break;
  }
  return out;
}
