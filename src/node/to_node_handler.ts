/**
 * A `fetch`-style handler (`(request: Request) => Response`) as a `node:http` request listener,
 * and the `Request` it sees.
 * @module
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { writeResponse, type WriteResponseOptions } from "./write_response.ts";

/** Options of {@linkcode toNodeHandler}. */
export interface NodeHandlerOptions extends WriteResponseOptions {
  /**
   * Called with what the handler threw; the client gets a bare 500. Also receives the body
   * errors of {@linkcode WriteResponseOptions.onError}.
   * @default {console.error}
   */
  onError?: ((error: unknown) => void) | undefined;
}

/**
 * Builds the web `Request` of a Node request: method, URL (from the `Host` header), headers,
 * the body as a stream for methods that have one, and a `signal` that aborts when the client
 * leaves before the response ends — so `broker.response(channel, request)` and producers that
 * watch `request.signal` see the disconnect.
 *
 * Read the body through the `Request` only if nothing else has (a framework that parsed it,
 * such as Fastify or Express's `express.json()`, has already consumed it).
 *
 * @param req Node's incoming request.
 * @param res Its response: its `'close'` before the end aborts `request.signal`.
 * @returns The `Request`.
 *
 * @example The Request of a Node request
 * ```ts ignore
 * // Needs a listening server, so it is not run here; tests/node/adapter_test.ts runs it.
 * import { createServer } from "node:http";
 * import { Broker } from "@flume/sse";
 * import { toRequest, writeResponse } from "@flume/sse/node";
 *
 * const broker = new Broker({ history: 100 });
 * createServer((req, res) => {
 *   void writeResponse(broker.response("news", toRequest(req, res)), res);
 * }).listen(8000, "127.0.0.1");
 * ```
 */
export function toRequest(req: IncomingMessage, res: ServerResponse): Request {
  const controller = new AbortController();
  const onClose = (): void => {
    if (!res.writableFinished) {
      controller.abort(new Error("Cannot write response: the client closed the connection"));
    }
  };
  res.once("close", onClose);
  const headers = new Headers();
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    // HTTP/2 pseudo-headers (":path") are not headers of a Request.
    if (name.startsWith(":") || values === undefined) continue;
    for (const value of values) headers.append(name, value);
  }
  const secure = (req.socket as { encrypted?: boolean }).encrypted === true;
  // Express rewrites `req.url` under a mounted router and keeps the original here.
  const path = (req as { originalUrl?: string }).originalUrl ?? req.url ?? "/";
  const url = new URL(path, `${secure ? "https" : "http"}://${req.headers.host ?? "localhost"}`);
  const method = req.method ?? "GET";
  const init: RequestInit & { duplex?: "half" } = { method, headers, signal: controller.signal };
  if (method !== "GET" && method !== "HEAD") {
    init.body = Readable.toWeb(req) as ReadableStream<Uint8Array>;
    init.duplex = "half";
  }
  return new Request(url, init);
}

/**
 * Turns a `fetch`-style handler into a `node:http` request listener: each request becomes a web
 * `Request` ({@linkcode toRequest}), the handler's `Response` is written with
 * {@linkcode writeResponse} (disconnects cancel the body, backpressure respected).
 *
 * Works with `http.createServer()`, as Express middleware (`app.get("/events", listener)`) and
 * anywhere else that hands out `(req, res)`.
 *
 * @param handler Returns (or resolves to) the response of a request.
 * @param options Passed on to {@linkcode writeResponse}, plus `onError` for a handler that throws.
 * @returns A `(req, res) => Promise<void>` listener; its promise settles when the response has
 *   ended and never rejects.
 *
 * @example A broker behind `node:http`
 * ```ts ignore
 * // Needs a listening server, so it is not run here; tests/node/adapter_test.ts runs it.
 * import { createServer } from "node:http";
 * import { Broker } from "@flume/sse";
 * import { toNodeHandler } from "@flume/sse/node";
 *
 * const broker = new Broker({ history: 100 });
 * const server = createServer(toNodeHandler(async (request) => {
 *   if (request.method === "POST") {
 *     await broker.publish("news", await request.text());
 *     return new Response(null, { status: 204 });
 *   }
 *   return broker.response("news", request);
 * }));
 * server.listen(8000, process.env.HOST ?? "127.0.0.1");
 * ```
 */
export function toNodeHandler(
  handler: (request: Request) => Response | Promise<Response>,
  options: NodeHandlerOptions = {},
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  // deno-lint-ignore no-console
  const onError = options.onError ?? ((error: unknown) => console.error(error));
  const writeOptions: WriteResponseOptions = { ...options, onError };
  return async (req, res) => {
    let response: Response;
    try {
      response = await handler(toRequest(req, res));
    } catch (error) {
      onError(error);
      if (!res.headersSent) res.statusCode = 500;
      res.end();
      return;
    }
    await writeResponse(response, res, writeOptions);
  };
}
