/**
 * Starts workerd (the npm package) with tests/cloudflare/worker.ts bundled by esbuild, and a
 * Cap'n Proto config that declares the `Events` Durable Object namespace with its storage in
 * memory or on disk, on a free port of 127.0.0.1; stops it by pid.
 * @module
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { freePort } from "../_helpers.ts";

const bin = (name: string): string =>
  fileURLToPath(new URL(`../../node_modules/.bin/${name}`, import.meta.url));

/** Where the Durable Objects keep their storage. */
export type Storage = "memory" | "disk";

/** A folder with the bundled worker and its config: workerd can be started on it again. */
export interface WorkerdSite {
  dir: string;
  storage: Storage;
  /** Starts workerd on a free port; the storage on disk survives a stop. */
  start(): Promise<RunningWorkerd>;
  /** Removes the folder (stop every process first). */
  remove(): Promise<void>;
}

/** A running workerd. */
export interface RunningWorkerd {
  origin: string;
  pid: number;
  /** SIGTERM (SIGKILL after 2 s: workerd drains open streams first); resolves once it has exited. */
  stop(): Promise<void>;
}

/** Bundles the worker and writes the config for `storage` into a new temporary folder. */
export async function prepareWorkerd(storage: Storage): Promise<WorkerdSite> {
  const dir = await mkdtemp(join(tmpdir(), "flume-do-"));
  const built = spawnSync(bin("esbuild"), [
    fileURLToPath(new URL("./worker.ts", import.meta.url)),
    "--bundle",
    "--format=esm",
    "--target=es2022",
    `--outfile=${join(dir, "worker.js")}`,
    "--log-level=warning",
  ], { encoding: "utf8" });
  if (built.status !== 0) throw new Error(`Cannot bundle the worker: ${built.stderr}`);
  const services = storage === "disk"
    ? `(name = "do-disk", disk = (path = ${JSON.stringify(join(dir, "do"))}, writable = true)),`
    : "";
  const durableObjectStorage = storage === "disk" ? `(localDisk = "do-disk")` : "(inMemory = void)";
  await writeFile(
    join(dir, "config.capnp"),
    `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    ${services}
  ],
  sockets = [ (name = "http", address = "127.0.0.1:0", http = (), service = "main") ],
);

const worker :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "2025-09-01",
  durableObjectNamespaces = [ (className = "Events", uniqueKey = "flume-test-events") ],
  durableObjectStorage = ${durableObjectStorage},
  bindings = [ (name = "EVENTS", durableObjectNamespace = "Events") ],
);
`,
  );
  if (storage === "disk") await import("node:fs/promises").then((fs) => fs.mkdir(join(dir, "do")));
  return {
    dir,
    storage,
    async start() {
      let lastError: unknown;
      // A free port can be taken between the probe and workerd's bind: try another.
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          return await startOn(dir, await freePort());
        } catch (error) {
          lastError = error;
        }
      }
      throw lastError;
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

async function startOn(dir: string, port: number): Promise<RunningWorkerd> {
  const origin = `http://127.0.0.1:${port}`;
  const child = spawn(
    bin("workerd"),
    [
      "serve",
      "--experimental",
      join(dir, "config.capnp"),
      "--socket-addr",
      `http=127.0.0.1:${port}`,
    ],
    { stdio: ["ignore", "inherit", "pipe"] },
  );
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    process.stderr.write(chunk);
    if (stderr.length < 10_000) stderr += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let running = true;
  void exited.then(() => running = false);
  const stop = async (): Promise<void> => {
    if (running) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 2_000);
      await exited;
      clearTimeout(timer);
    }
  };
  const deadline = Date.now() + 20_000;
  while (true) {
    if (!running) throw new Error(`Cannot start workerd: it exited: ${stderr}`);
    try {
      const response = await fetch(`${origin}/health`);
      await response.body?.cancel();
      if (response.ok) return { origin, pid: child.pid!, stop };
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`Cannot start workerd: no answer on ${origin} within 20 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
