#!/usr/bin/env node
/**
 * The better-sse peer of `broker_bench.ts`'s fan-out, on Node (better-sse builds on
 * `node:http`): one channel, every client a session registered on it, `channel.broadcast()` per
 * event, the library's defaults otherwise. It answers the same control requests as the
 * benchmark's own servers (`/ctl/count`, `/ctl/publish`, `/ctl/cpu`), prints `LISTEN <port>`
 * once listening on 127.0.0.1, and exits when its stdin closes.
 *
 * Usage: `node bench/better_sse_server.mjs`.
 */
import { createServer } from "node:http";
import process from "node:process";
import { createChannel, createSession } from "better-sse";

const PAYLOAD = "x".repeat(90) + "0123456789";
const channel = createChannel();
let cpuStart = process.cpuUsage();
const now = () => performance.timeOrigin + performance.now();

/** `pace` "immediate": each event in its own macrotask (see `publishBurst` in broker_bench.ts). */
async function publish(events, pace) {
  cpuStart = process.cpuUsage();
  const t0 = now();
  for (let i = 0; i < events; i++) {
    channel.broadcast(PAYLOAD);
    await Promise.resolve(); // as the other servers' `await publish()`: a microtask turn
    if (pace === "immediate") await new Promise((resolve) => setImmediate(resolve));
  }
  return { t0, publishMs: now() - t0 };
}

async function control(url) {
  switch (url.pathname) {
    case "/ctl/count":
      return channel.sessionCount;
    case "/ctl/publish":
      return await publish(Number(url.searchParams.get("events")), url.searchParams.get("pace"));
    case "/ctl/cpu": {
      const cpu = process.cpuUsage(cpuStart);
      return (cpu.user + cpu.system) / 1000;
    }
  }
  throw new Error(`Cannot answer: no control ${url.pathname}`);
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://127.0.0.1");
  if (url.pathname === "/sse") {
    const session = await createSession(req, res);
    channel.register(session); // createSession resolves once the session is connected
    return;
  }
  try {
    const body = JSON.stringify(await control(url));
    res.writeHead(200, { "content-type": "application/json" }).end(body);
  } catch (error) {
    res.writeHead(500).end(String(error));
  }
});
server.keepAliveTimeout = 0;
server.requestTimeout = 0;
server.listen(0, "127.0.0.1", 4096, () => console.log(`LISTEN ${server.address().port}`));
// The conductor kills this process; this is the bound in case it cannot.
setTimeout(() => process.exit(3), 300_000).unref();
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
