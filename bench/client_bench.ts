/**
 * Client-side throughput: how fast `connect()` and the npm `eventsource` client parse and
 * dispatch a stream of pre-encoded events from a local server that sends them as fast as it can.
 *
 *     deno run -A bench/client_bench.ts
 *     bun bench/client_bench.ts
 *
 * Prints a table, then the results as one JSON line. `EVENTS` (default 200000) sets the count.
 * @module
 */
import process from "node:process";
import { EventSource } from "eventsource";
import { connect } from "../src/client/mod.ts";
import { report } from "./_report.ts";

const EVENTS = Number(process.env.EVENTS ?? 200_000);
const ROUNDS = 5;
const CHUNK = 64 * 1024;

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const runtime = "Bun" in g ? `bun ${g.Bun.version}` : `deno ${g.Deno.version.deno}`;

/** The whole stream, encoded once: every request gets the same bytes. */
const payload = (() => {
  let text = "retry: 60000\n\n";
  for (let n = 1; n <= EVENTS; n++) {
    text += `id: ${n}\nevent: ${n % 4 === 0 ? "tick" : "message"}\ndata: {"n":${n},"price":${
      (n * 1.25).toFixed(2)
    },"symbol":"ACME","note":"a typical small JSON payload"}\n\n`;
  }
  return new TextEncoder().encode(text);
})();

function handler(): Response {
  let offset = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= payload.length) return controller.close();
      controller.enqueue(payload.subarray(offset, offset + CHUNK));
      offset += CHUNK;
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream" } });
}

async function startServer(): Promise<{ url: string; close(): Promise<void> }> {
  if ("Bun" in g) {
    const server = g.Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: handler });
    return { url: `http://127.0.0.1:${server.port}/`, close: () => server.stop(true) };
  }
  const controller = new AbortController();
  return await new Promise((resolve) => {
    const server = g.Deno.serve({
      port: 0,
      hostname: "127.0.0.1",
      signal: controller.signal,
      onListen({ port }: { port: number }) {
        resolve({
          url: `http://127.0.0.1:${port}/`,
          close: async () => {
            controller.abort();
            await server.finished;
          },
        });
      },
    }, handler);
  });
}

async function runConnect(url: string): Promise<number> {
  let count = 0;
  let checksum = 0;
  for await (const event of connect(url)) {
    checksum += event.data.length;
    if (++count === EVENTS) break;
  }
  return checksum;
}

function runEventSource(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const source = new EventSource(url);
    let count = 0;
    let checksum = 0;
    const onEvent = (event: MessageEvent): void => {
      checksum += event.data.length;
      if (++count === EVENTS) {
        source.close();
        resolve(checksum);
      }
    };
    source.addEventListener("message", onEvent);
    source.addEventListener("tick", onEvent);
    source.onerror = (error) => {
      if (count < EVENTS) {
        source.close();
        reject(new Error(`eventsource failed: ${String(error.message ?? error.type)}`));
      }
    };
  });
}

interface Result {
  client: string;
  eventsPerSecond: number;
  megabytesPerSecond: number;
  bestMs: number;
}

const server = await startServer();
const clients: [string, (url: string) => Promise<number>][] = [
  ["connect()", runConnect],
  ["eventsource (npm)", runEventSource],
];
const best = new Map<string, number>();
const checksums = new Map<string, number>();
try {
  for (let round = 0; round <= ROUNDS; round++) {
    for (const [name, run] of clients) {
      const started = performance.now();
      const checksum = await run(server.url);
      const elapsed = performance.now() - started;
      checksums.set(name, checksum);
      // Round 0 warms up the JIT and the connection pool.
      if (round > 0) best.set(name, Math.min(best.get(name) ?? Infinity, elapsed));
    }
  }
} finally {
  await server.close();
}
if (new Set(checksums.values()).size !== 1) throw new Error("The clients saw different data");

const results: Result[] = clients.map(([name]) => {
  const ms = best.get(name)!;
  return {
    client: name,
    eventsPerSecond: Math.round(EVENTS / (ms / 1000)),
    megabytesPerSecond: Number((payload.length / 1e6 / (ms / 1000)).toFixed(1)),
    bestMs: Number(ms.toFixed(1)),
  };
});
const ratio = results[0].eventsPerSecond / results[1].eventsPerSecond;
console.log(
  `${runtime}: ${EVENTS} events, ${(payload.length / 1e6).toFixed(1)} MB, best of ${ROUNDS}`,
);
console.log("| client | events/s | MB/s | best ms |");
console.log("| --- | ---: | ---: | ---: |");
for (const result of results) {
  console.log(
    `| ${result.client} | ${
      result.eventsPerSecond.toLocaleString("en-US")
    } | ${result.megabytesPerSecond} | ${result.bestMs} |`,
  );
}
console.log(`connect() / eventsource: ${ratio.toFixed(2)}x`);
console.log(JSON.stringify({
  bench: "client",
  runtime,
  events: EVENTS,
  bytes: payload.length,
  results,
  ratio: Number(ratio.toFixed(2)),
}));
report({
  bench: "client",
  case: "parse and dispatch over loopback HTTP",
  unit: "events/s",
  ours: results[0].eventsPerSecond,
  peer: results[1].eventsPerSecond,
  note: `peer: npm eventsource; ${EVENTS} events, ${
    (payload.length / 1e6).toFixed(1)
  } MB, best of ${ROUNDS}`,
});
