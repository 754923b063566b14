/**
 * Runs `worker.ts` under Cloudflare's own runtime, `workerd` (the npm package `workerd`), with
 * the `wrangler.json` beside it; `workerd` bundles the TypeScript with esbuild as `wrangler` does.
 *
 * ```sh
 * deno run -A examples/edge/serve_workerd.ts        # or: bun examples/edge/serve_workerd.ts
 * curl -N http://127.0.0.1:8787/clock
 * ```
 *
 * The config is copied to a temporary folder (with `main` made absolute), so the scratch files
 * `workerd` writes next to it stay out of the repository.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** A `workerd` process serving the example. */
export interface RunningWorkerd {
  /** `http://127.0.0.1:PORT` without a trailing slash. */
  origin: string;
  port: number;
  /** Stops `workerd` and removes its temporary folder. */
  close(): Promise<void>;
}

/** Options of {@linkcode startWorkerd}. */
export interface StartWorkerdOptions {
  /**
   * The port on 127.0.0.1.
   * @default {8787}
   */
  port?: number;
  /**
   * Milliseconds to wait for `workerd` to answer.
   * @default {20_000}
   */
  timeout?: number;
}

const bin = (name: string): string =>
  fileURLToPath(new URL(`../../node_modules/.bin/${name}`, import.meta.url));

/**
 * Starts `workerd` on 127.0.0.1 and waits until the worker answers.
 * @param options Port and start-up timeout.
 * @returns The running process.
 */
export async function startWorkerd(options: StartWorkerdOptions = {}): Promise<RunningWorkerd> {
  const port = options.port ?? 8787;
  const origin = `http://127.0.0.1:${port}`;
  const dir = await mkdtemp(join(tmpdir(), "flume-workerd-"));
  const config = JSON.parse(await readFile(new URL("./wrangler.json", import.meta.url), "utf8"));
  config.main = fileURLToPath(new URL(config.main, new URL("./wrangler.json", import.meta.url)));
  await writeFile(join(dir, "wrangler.json"), JSON.stringify(config, null, 2));

  const child = spawn(
    bin("workerd"),
    ["serve", join(dir, "wrangler.json"), "--socket-addr", `http=127.0.0.1:${port}`],
    {
      env: { ...process.env, WORKERD_ESBUILD: bin("esbuild") },
      stdio: ["ignore", "inherit", "pipe"],
    },
  );
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    process.stderr.write(chunk);
    if (stderr.length < 10_000) stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  let running = true;
  void exited.then(() => running = false);

  const close = async (): Promise<void> => {
    if (running) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (options.timeout ?? 20_000);
  while (true) {
    if (!running) {
      await close();
      throw new Error(`Cannot start workerd: it exited with code ${await exited}: ${stderr}`);
    }
    try {
      const response = await fetch(`${origin}/stats`);
      await response.body?.cancel();
      if (response.ok) return { origin, port, close };
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await close();
      throw new Error(`Cannot start workerd: no answer on ${origin} within the timeout`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

if (import.meta.main) {
  const running = await startWorkerd({ port: Number(process.env.PORT ?? 8787) });
  console.log(`worker.ts under workerd at ${running.origin}/ (Ctrl+C to stop)`);
  const stop = (): void => void running.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
