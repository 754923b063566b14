/**
 * Serving Flume on Node's own HTTP server (`node:http`, Express, Fastify, Koa…): any web
 * `Response` — `sseResponse()`, `broker.response()` or anything else — written to a
 * `ServerResponse` so that the client's disconnect cancels the body (a producer's
 * `stream.signal` aborts within a tick) and the body is read only as fast as the socket drains.
 *
 * The obvious bridge, `Readable.fromWeb(response.body).pipe(res)`, does neither: `pipe()` does
 * not destroy its source when the destination closes, so a producer keeps publishing into a
 * buffer nobody reads. Node 20+.
 *
 * @example A producer and a broker on `node:http`
 * ```ts ignore
 * // Needs a listening server, so it is not run here; tests/node/adapter_test.ts runs it.
 * import { createServer } from "node:http";
 * import { Broker, sseResponse } from "@flume/sse";
 * import { toNodeHandler } from "@flume/sse/node";
 *
 * const broker = new Broker({ history: 100 });
 * createServer(toNodeHandler((request) => {
 *   const { pathname } = new URL(request.url);
 *   if (pathname === "/news") return broker.response("news", request);
 *   return sseResponse(async (stream) => {
 *     for (let n = 1; !stream.signal.aborted; n++) {
 *       await stream.publish({ n }, { event: "tick", id: n });
 *       await new Promise((resolve) => setTimeout(resolve, 1_000));
 *     }
 *   });
 * })).listen(8000, process.env.HOST ?? "127.0.0.1");
 * ```
 * @module
 */

export { writeResponse, type WriteResponseOptions } from "./write_response.ts";
export { type NodeHandlerOptions, toNodeHandler, toRequest } from "./to_node_handler.ts";
