/**
 * A real `redis-server` for the Redis suites: a free port on 127.0.0.1, no persistence (so a
 * restart loses everything, as the bridge must notice), stopped by pid.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { Socket } from "node:net";
import { freePort } from "../_helpers.ts";
import process from "node:process";

/** A running (or stopped) test Redis. */
export interface RedisServer {
  port: number;
  /** `redis://127.0.0.1:PORT`. */
  url: string;
  /** The pid of the current process, or undefined while stopped. */
  readonly pid: number | undefined;
  /** Kills it with SIGKILL (no shutdown, no save) and waits until the process is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty, and waits until it answers PING. */
  restart(): Promise<void>;
  /** Stops it for good. */
  stop(): Promise<void>;
}

export { freePort };

/** Sends PING on a raw socket; resolves with whether `+PONG` came back. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let reply = "";
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 500);
    socket.on("error", () => done(false));
    socket.on("data", (chunk) => {
      reply += String(chunk);
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG"));
    });
    socket.connect(port, "127.0.0.1", () => socket.write("PING\r\n"));
  });
}

async function waitUntil(what: string, check: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Starts `redis-server` on a free port and waits until it answers PING. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const launch = async () => {
    const server = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { stdio: "ignore" },
    );
    child = server;
    exited = new Promise((resolve) => server.once("exit", () => resolve()));
    server.once("error", () => {});
    await waitUntil(`redis-server on port ${port}`, () => ping(port));
  };
  const kill = async () => {
    const current = child;
    if (current?.pid === undefined) return;
    child = undefined;
    try {
      process.kill(current.pid, "SIGKILL");
    } catch {
      // It is gone already.
    }
    await exited;
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child?.pid;
    },
    kill,
    restart: launch,
    stop: kill,
  };
}
