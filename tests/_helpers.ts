/**
 * Test helpers shared by every suite: a real HTTP server on 127.0.0.1 under whichever runtime
 * runs the tests (Deno.serve or Bun.serve), and small stream utilities.
 * @module
 */

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

/** Polls `condition` every 10 ms until it holds, or rejects after `timeout` ms. */
export async function waitFor(
  condition: () => boolean,
  timeout = 2_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeout} ms waiting for ${what}`);
    await delay(10);
  }
}
