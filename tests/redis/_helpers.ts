/**
 * Helpers of the Redis suites: a pair of connections for each client kind the running runtime
 * supports, and a reader that collects what a broker stream sends.
 * @module
 */
import { createClient, createCluster } from "redis";
import { Cluster, Redis } from "ioredis";
import { EventParserStream, type ParsedEvent } from "../../mod.ts";
import type { EventStream } from "../../mod.ts";
import { runtime } from "../_helpers.ts";

/** The Redis clients the bridge supports. */
export type ClientKind = "node-redis" | "ioredis" | "bun";

/** The kinds to test under this runtime: Bun's built-in client only exists under Bun. */
export const clientKinds: ClientKind[] = runtime === "bun"
  ? ["node-redis", "ioredis", "bun"]
  : ["node-redis", "ioredis"];

/** Two connections of one kind, connected. */
export interface Connections {
  client: object;
  subscriber: object;
  /** A command on the command connection, for the tests' own use. */
  command(args: string[]): Promise<unknown>;
  close(): Promise<void>;
}

/**
 * Connects a command connection and a subscriber connection of `kind` to `url`
 * (`redis://127.0.0.1:PORT` or `redis://127.0.0.1:PORT/DB`).
 */
export async function connect(kind: ClientKind, url: string): Promise<Connections> {
  if (kind === "node-redis") {
    const options = {
      url,
      // Retry fast: the fault tests restart Redis and wait for the bridge to come back.
      socket: { reconnectStrategy: (retries: number) => Math.min(50 + retries * 50, 300) },
    };
    const client = createClient(options);
    const subscriber = createClient(options);
    for (const c of [client, subscriber]) c.on("error", () => {});
    await Promise.all([client.connect(), subscriber.connect()]);
    return {
      client,
      subscriber,
      command: (args) => client.sendCommand(args),
      close: () => {
        client.destroy();
        subscriber.destroy();
        return Promise.resolve();
      },
    };
  }
  if (kind === "ioredis") {
    const { port, pathname } = new URL(url);
    const options = {
      db: Number(pathname.slice(1) || 0),
      retryStrategy: (times: number) => Math.min(50 + times * 50, 300),
    };
    const client = new Redis(Number(port), "127.0.0.1", options);
    const subscriber = new Redis(Number(port), "127.0.0.1", options);
    for (const c of [client, subscriber]) c.on("error", () => {});
    await Promise.all([client.ping(), subscriber.ping()]);
    return {
      client,
      subscriber,
      command: ([name, ...args]) => client.call(name!, ...args),
      close: () => {
        client.disconnect();
        subscriber.disconnect();
        return Promise.resolve();
      },
    };
  }
  // deno-lint-ignore no-explicit-any
  const { RedisClient } = await import("bun" as any);
  const client = new RedisClient(url);
  const subscriber = new RedisClient(url);
  await Promise.all([client.connect(), subscriber.connect()]);
  return {
    client,
    subscriber,
    command: ([name, ...args]) => client.send(name, args),
    close: () => {
      client.close();
      subscriber.close();
      return Promise.resolve();
    },
  };
}

/** A command and a subscriber client of a Redis Cluster (the clients' own types, loosely). */
export interface ClusterConnections {
  // deno-lint-ignore no-explicit-any
  client: any;
  // deno-lint-ignore no-explicit-any
  subscriber: any;
  close(): Promise<void>;
}

/**
 * Connects a command client and a subscriber client of `kind` to the Redis Cluster whose nodes
 * listen on `ports`, tuned for the failover tests: a promoted replica is found 0.5 s after a node
 * stops answering (5 s by default), and reconnects are retried within 300 ms.
 */
export async function connectCluster(
  kind: "node-redis" | "ioredis",
  ports: readonly number[],
): Promise<ClusterConnections> {
  if (kind === "node-redis") {
    const client = createCluster({
      rootNodes: ports.map((port) => ({ url: `redis://127.0.0.1:${port}` })),
      topologyRefreshOnReconnectionAttemptStrategy: 500,
      defaults: {
        socket: { reconnectStrategy: (retries: number) => Math.min(50 + retries * 50, 300) },
      },
    });
    const subscriber = client.duplicate();
    for (const c of [client, subscriber]) c.on("error", () => {});
    await Promise.all([client.connect(), subscriber.connect()]);
    return {
      client,
      subscriber,
      close: () => {
        client.destroy();
        subscriber.destroy();
        return Promise.resolve();
      },
    };
  }
  const options = {
    shardedSubscribers: true,
    clusterRetryStrategy: (times: number) => Math.min(50 + times * 50, 300),
  };
  const nodes = ports.map((port) => ({ host: "127.0.0.1", port }));
  const client = new Cluster(nodes, options);
  const subscriber = new Cluster(nodes, options);
  for (const c of [client, subscriber]) c.on("error", () => {});
  await Promise.all(
    [client, subscriber].map((c) => new Promise((resolve) => c.once("ready", resolve))),
  );
  return {
    client,
    subscriber,
    close: () => {
      client.disconnect();
      subscriber.disconnect();
      return Promise.resolve();
    },
  };
}

/** What a broker stream sent, parsed, collected as it arrives. */
export interface Collected {
  events: ParsedEvent[];
  /** Resolves when the stream ends. */
  ended: Promise<void>;
  /** Whether it ended. */
  readonly done: boolean;
  /** Stops reading (and so ends the stream). */
  cancel(): Promise<void>;
}

/** Reads a broker stream in the background. */
export function collectEvents(stream: EventStream): Collected {
  const events: ParsedEvent[] = [];
  const reader = stream.readable.pipeThrough(new EventParserStream()).getReader();
  let done = false;
  const ended = (async () => {
    try {
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) break;
        events.push(value);
      }
    } catch {
      // cancelled
    } finally {
      done = true;
    }
  })();
  return {
    events,
    ended,
    get done() {
      return done;
    },
    cancel: async () => {
      await reader.cancel().catch(() => {});
      await ended;
    },
  };
}

/** The data of the events other than the gap signal. */
export function dataOf(events: readonly ParsedEvent[]): string[] {
  return events.filter((e) => e.type !== "stream-reset").map((e) => e.data);
}
