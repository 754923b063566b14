// The newcomer's rough edges, run as a newcomer would: examples/redis_workers.ts under the `deno`
// of `npm install` (a plain `kill` of the parent stops its workers; a worker that cannot bind
// stops everything with a message), and the Web Push demo's "Enable notifications" in a
// Chromium that has no push service. Run with `npm test -- node`.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createServer as createNetServer } from "node:net";
import { withBrowser } from "../_browser.ts";
import { freePort, waitFor } from "../_helpers.ts";
import { type RedisServer, startRedis } from "../redis/_redis_server.ts";

const deno = new URL("../../node_modules/.bin/deno", import.meta.url).pathname;
const root = new URL("../..", import.meta.url).pathname;

/** Whether a process with this pid is alive. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts examples/redis_workers.ts and collects its output and its workers' pids. */
function startWorkers(env: Record<string, string>): {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
} {
  let output = "";
  const child = spawn(deno, ["run", "-A", "examples/redis_workers.ts"], {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1", ...env },
  });
  child.stdout!.on("data", (chunk) => output += chunk);
  child.stderr!.on("data", (chunk) => output += chunk);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** A port whose next one is free too (the example's workers take PORT, PORT + 1, …). */
async function twoFreePorts(): Promise<number> {
  for (;;) {
    const port = await freePort();
    const probe = createNetServer();
    const free = await new Promise<boolean>((resolve) => {
      probe.once("error", () => resolve(false));
      probe.listen(port + 1, "127.0.0.1", () => resolve(true));
    });
    if (free) {
      await new Promise((resolve) => probe.close(resolve));
      return port;
    }
  }
}

function workerPids(output: string): number[] {
  return [...output.matchAll(/^worker (\d+) on /gm)].map((m) => Number(m[1]));
}

describe("examples/redis_workers.ts", () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.stop());

  it("a plain kill of the parent stops every worker", { timeout: 150_000 }, async () => {
    const port = await twoFreePorts();
    const run = startWorkers({ REDIS_URL: redis.url, WORKERS: "2", PORT: String(port) });
    try {
      // A fresh clone starts cold: Deno reads the npm packages for the first time.
      let started = false;
      const early = run.exited.then((code) => {
        if (!started) throw new Error(`the example exited (code ${code}) early:\n${run.output()}`);
      });
      early.catch(() => {}); // read by the race below; once started, an exit is expected
      await Promise.race([
        waitFor(() => workerPids(run.output()).length === 2, 120_000, "two workers"),
        early,
      ]);
      started = true;
      const pids = workerPids(run.output());
      run.child.kill("SIGTERM");
      assert.equal(await run.exited, 0);
      await waitFor(() => pids.every((pid) => !alive(pid)), 10_000, "the workers to stop");
    } finally {
      run.child.kill("SIGKILL");
      for (const pid of workerPids(run.output())) if (alive(pid)) process.kill(pid, "SIGKILL");
    }
  });

  it("a worker that cannot bind its port stops them all with a clear message", {
    timeout: 150_000,
  }, async () => {
    // The second worker's port is taken: by a listener on a port the system picked, which is
    // free for sure, with the workers' ports counted back from it.
    const blocker = createNetServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port - 1;
    const run = startWorkers({ REDIS_URL: redis.url, WORKERS: "2", PORT: String(port) });
    try {
      const code = await Promise.race([
        run.exited,
        new Promise((resolve) => setTimeout(resolve, 120_000, "timeout")),
      ]);
      assert.equal(code, 1, run.output());
      assert.match(
        run.output(),
        new RegExp(`Cannot start worker on 127\\.0\\.0\\.1:${port + 1}: the port is in use`),
      );
      assert.match(
        run.output(),
        new RegExp(`worker on port ${port + 1} exited \\(code 1\\); stopping the others`),
      );
      await waitFor(
        () => workerPids(run.output()).every((pid) => !alive(pid)),
        10_000,
        "the other worker to stop",
      );
    } finally {
      run.child.kill("SIGKILL");
      for (const pid of workerPids(run.output())) if (alive(pid)) process.kill(pid, "SIGKILL");
      blocker.close();
    }
  });
});

describe("examples/webpush", () => {
  it("Enable notifications says push is unavailable instead of an uncaught AbortError", async () => {
    // As `npm run webpush:demo` starts it, on a free port.
    const port = await freePort();
    let output = "";
    const child = spawn(deno, ["run", "-A", "examples/webpush/server.ts"], {
      cwd: root,
      env: { ...process.env, NO_COLOR: "1", PORT: String(port) },
    });
    child.stdout!.on("data", (chunk) => output += chunk);
    child.stderr!.on("data", (chunk) => output += chunk);
    await waitFor(() => /Listening on/.test(output), 30_000, "the Web Push demo to listen");
    assert.match(output, new RegExp(`127\\.0\\.0\\.1:${port}`), "listens on 127.0.0.1 only");
    try {
      await withBrowser(async (browser) => {
        const context = await browser.newContext({ permissions: ["notifications"] });
        const page = await context.newPage();
        const errors: string[] = [];
        page.on("pageerror", (error) => errors.push(String(error)));
        await page.goto(`http://127.0.0.1:${port}/`);
        await page.click("#enable");
        await page.waitForFunction("document.getElementById('status').textContent !== ''");
        const status = await page.textContent("#status");
        // Headless Chromium has no push service: subscribe() fails with an AbortError.
        assert.match(status ?? "", /^Push is not available here \(AbortError: /);
        assert.deepEqual(errors, []);
        await context.close();
      });
    } finally {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
  });
});
