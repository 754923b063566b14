/**
 * A real Node HTTP server for a `fetch` handler, through `@hono/node-server`'s Request/Response
 * adapter, on 127.0.0.1 and a free port. (Deno and Bun run it too, through their `node:http`.)
 * @module
 */

import { serve } from "@hono/node-server";

/** A running server. */
export interface NodeTestServer {
  /** `http://127.0.0.1:PORT` without a trailing slash. */
  origin: string;
  /** Closes every connection, open streams included, and the server. */
  close(): Promise<void>;
}

/** Starts `handler` on a free port of 127.0.0.1. */
export function serveNode(
  handler: (request: Request) => Response | Promise<Response>,
): Promise<NodeTestServer> {
  return new Promise((resolve) => {
    const server = serve({ fetch: handler, port: 0, hostname: "127.0.0.1" }, (info) => {
      resolve({
        origin: `http://127.0.0.1:${info.port}`,
        close: () =>
          new Promise<void>((done) => {
            const http = server as { closeAllConnections?: () => void };
            server.close(() => done());
            http.closeAllConnections?.();
          }),
      });
    });
  });
}
