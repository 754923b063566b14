// Starts a server on 127.0.0.1 with the runtime's own API: Deno.serve or Bun.serve.

/** A running test server. */
export interface TestServer {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /** Stops the server and waits until it has. */
  close(): Promise<void>;
}

type Handler = (request: Request) => Response | Promise<Response>;

interface BunServer {
  port: number;
  stop(closeActiveConnections?: boolean): Promise<void>;
}
interface BunGlobal {
  serve(options: { port: number; hostname: string; fetch: Handler }): BunServer;
}

export function serve(handler: Handler): TestServer {
  const bun = (globalThis as { Bun?: BunGlobal }).Bun;
  if (bun !== undefined) {
    const server = bun.serve({ port: 0, hostname: "127.0.0.1", fetch: handler });
    return {
      origin: `http://127.0.0.1:${server.port}`,
      close: async () => await server.stop(true),
    };
  }
  if (typeof Deno !== "undefined") {
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, handler);
    return {
      origin: `http://127.0.0.1:${server.addr.port}`,
      close: () => server.shutdown(),
    };
  }
  throw new Error("Cannot start test server: neither Deno nor Bun");
}
