/**
 * The conductor's side of the HTTP benchmarks (`broker_bench.ts`, `sustained_bench.ts`): child
 * processes that speak in lines, the benchmark servers (the serve role of `broker_bench.ts`, or
 * better-sse on Node), the one load client process (`_fanout_client.ts`), and the `/ctl/...`
 * requests that drive a server.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { runtime } from "./_report.ts";

const here = (name: string): string => fileURLToPath(new URL(name, import.meta.url));

/** A child process that speaks in lines on stdout. */
export class Child {
  #process: ChildProcess;
  #lines: string[] = [];
  #waiting: { resolve(line: string): void; reject(error: Error): void }[] = [];
  #exited = false;

  /** Starts `exe args` with the file-descriptor limit raised to the hard limit. */
  constructor(exe: string, argv: string[], readonly name: string) {
    this.#process = spawn(
      "sh",
      ["-c", 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', exe, ...argv],
      { stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, NO_COLOR: "1" } },
    );
    createInterface({ input: this.#process.stdout! }).on("line", (line) => {
      const waiter = this.#waiting.shift();
      if (waiter) waiter.resolve(line);
      else this.#lines.push(line);
    });
    this.#process.on("exit", (code) => {
      this.#exited = true;
      const error = new Error(`Cannot benchmark: ${name} exited with code ${code}`);
      for (const waiter of this.#waiting.splice(0)) waiter.reject(error);
    });
  }

  /** The next line it prints, within `ms`. */
  next(ms = 60_000): Promise<string> {
    const line = this.#lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.#exited) return Promise.reject(new Error(`Cannot benchmark: ${this.name} exited`));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (line: string): void => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (error: Error): void => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.#waiting.splice(this.#waiting.indexOf(waiter), 1);
        reject(new Error(`Cannot benchmark: ${this.name} said nothing for ${ms} ms`));
      }, ms);
      this.#waiting.push(waiter);
    });
  }

  /** Sends a command to the load client and returns its answer. */
  async ask(command: Record<string, unknown>, ms?: number): Promise<Record<string, number>> {
    this.#process.stdin!.write(`${JSON.stringify(command)}\n`);
    return JSON.parse(await this.next(ms));
  }

  /**
   * Stops it, by its own pid. Under `BENCH_CPU_PROF` a server is asked to exit (its stdin
   * closes) so that it writes its profile, and killed only if it has not within 10 s.
   */
  kill(): void {
    if (this.#exited) return;
    if (!PROFILE) return void this.#process.kill("SIGKILL");
    this.#process.stdin!.end();
    setTimeout(() => {
      if (!this.#exited) this.#process.kill("SIGKILL");
    }, 10_000).unref?.();
  }
}

/** A benchmark server: its process and where it listens. */
export interface Server {
  child: Child;
  origin: string;
  port: number;
}

/**
 * `BENCH_CPU_PROF=<dir>`: servers on Deno or Bun run with `--cpu-prof` and write their profile
 * there when they exit (see `profile_summary.mjs`).
 */
const PROFILE = process.env.BENCH_CPU_PROF;

/**
 * Starts a server: the serve role of `broker_bench.ts` on this runtime with `scenario`'s broker
 * options, or better-sse on Node (`node`).
 */
export async function startServer(scenario: string, node = false): Promise<Server> {
  const profile = PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE}`] : [];
  const child = node
    ? new Child("node", [here("./better_sse_server.mjs")], "better-sse server")
    : new Child(
      process.execPath,
      runtime === "deno"
        ? [
          "run",
          "-A",
          "--v8-flags=--expose-gc",
          ...profile,
          here("./broker_bench.ts"),
          "--serve",
          scenario,
        ]
        : [...profile, here("./broker_bench.ts"), "--serve", scenario],
      `${scenario} server`,
    );
  const line = await child.next(30_000);
  const port = Number(/^LISTEN (\d+)$/.exec(line)?.[1]);
  if (!port) {
    child.kill();
    throw new Error(`Cannot start server: it printed ${line}`);
  }
  return { child, port, origin: `http://127.0.0.1:${port}` };
}

/** A runtime's binary: the project's own (node_modules/.bin) when there is one. */
export function binary(name: string): string {
  if (name === runtime) return process.execPath;
  const local = here(`../node_modules/.bin/${name}`);
  return existsSync(local) ? local : name;
}

/**
 * The load client, Bun by default whatever the server runs: its `node:net` reads 1,000 sockets
 * at a fraction of a core (`BENCH_CLIENT=deno` to compare).
 */
export function startClient(): Child {
  const client = process.env.BENCH_CLIENT ?? "bun";
  const path = here("./_fanout_client.ts");
  return client === "deno"
    ? new Child(binary("deno"), ["run", "-A", path], "load client")
    : new Child(binary("bun"), [path], "load client");
}

export async function ctl<T>(server: Server, path: string, ms = 60_000): Promise<T> {
  const response = await fetch(`${server.origin}/ctl/${path}`, {
    signal: AbortSignal.timeout(ms),
  });
  if (!response.ok) throw new Error(`Cannot control server: ${path} answered ${response.status}`);
  return await response.json();
}

export async function waitForCount(server: Server, variant: string, count: number): Promise<void> {
  const end = Date.now() + 30_000;
  while (await ctl<number>(server, `count?variant=${variant}`) !== count) {
    if (Date.now() > end) {
      throw new Error(`Cannot benchmark: ${variant} never had ${count} clients`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
