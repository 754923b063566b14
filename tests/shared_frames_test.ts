/**
 * Big events are shared, not copied: a broker server in a subprocess (tests/fixtures/
 * big_event_fanout.ts) sends a small event and a 10 MB one to 200 HTTP clients, which read over
 * raw sockets from this process and discard the bytes. The server's RSS may grow by less than
 * 400 MB: one copy per client would be 2 GB.
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { connect } from "node:net";
import process from "node:process";
import { runtime, waitFor } from "./_helpers.ts";

const CLIENTS = 200;
const BYTES = 10_000_000;
const LIMIT = 400 * 2 ** 20;

interface Stats {
  clients: number;
  baseline: number;
  peak: number;
  after: number;
}

/** Starts the fixture server; resolves with its port and a way to stop it (by its pid). */
function startServer(args: string[]): Promise<{ port: number; stop(): void }> {
  const script = new URL("./fixtures/big_event_fanout.ts", import.meta.url).pathname;
  const argv = runtime === "deno"
    ? ["run", "-A", "--v8-flags=--expose-gc", script, ...args]
    : [script, ...args];
  const child = spawn(process.execPath, argv, { env: { ...process.env, NO_COLOR: "1" } });
  let stderr = "";
  child.stderr.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
  return new Promise((resolve, reject) => {
    let stdout = "";
    child.stdout.on("data", (chunk: Uint8Array) => {
      stdout += new TextDecoder().decode(chunk);
      const line = stdout.split("\n")[0]!;
      if (stdout.includes("\n")) resolve({ port: JSON.parse(line).port, stop: () => child.kill() });
    });
    child.on("close", (code) => reject(new Error(`The server exited with ${code}: ${stderr}`)));
  });
}

/** A raw HTTP client that reads and discards; counts the bytes and notices the end. */
function reader(port: number): { received(): number; ended(): boolean; destroy(): void } {
  let received = 0;
  let ended = false;
  const socket = connect(port, "127.0.0.1");
  socket.on("data", (chunk: Uint8Array) => received += chunk.byteLength);
  socket.on("end", () => ended = true);
  socket.on("error", () => ended = true);
  socket.write("GET /sse HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
  return { received: () => received, ended: () => ended, destroy: () => socket.destroy() };
}

async function fanOut(args: string[]): Promise<Stats> {
  const server = await startServer(args);
  const origin = `http://127.0.0.1:${server.port}`;
  const readers = Array.from({ length: CLIENTS }, () => reader(server.port));
  try {
    await waitFor(() => readers.every((r) => r.received() > 0), 20_000, "every client's opening");
    const go = await fetch(`${origin}/go`, { method: "POST" });
    assert.equal(await go.text(), "published");
    await waitFor(
      () => readers.every((r) => r.received() > BYTES),
      60_000,
      "every client to receive the big event",
    );
    if (args.includes("--close")) {
      await waitFor(() => readers.every((r) => r.ended()), 20_000, "every stream to end");
    }
    return await (await fetch(`${origin}/stats`)).json() as Stats;
  } finally {
    for (const r of readers) r.destroy();
    server.stop();
  }
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

describe(`A 10 MB event reaches ${CLIENTS} HTTP clients as shared bytes on ${runtime}`, () => {
  for (
    const [name, args] of [["published", []], ["flushed by broker.close()", ["--close"]]] as const
  ) {
    it(`${name}: the server's RSS grows by less than 400 MB`, { timeout: 120_000 }, async () => {
      const stats = await fanOut([String(BYTES), ...args]);
      const growth = stats.peak - stats.baseline;
      console.log(
        `${runtime} ${name}: RSS ${mib(stats.baseline)} -> peak ${mib(stats.peak)} ` +
          `(+${mib(growth)}), ${mib(stats.after)} after GC`,
      );
      assert.ok(growth < LIMIT, `RSS grew by ${mib(growth)}`);
    });
  }
});
