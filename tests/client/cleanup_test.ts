import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { delay, runtime, serve, type TestServer } from "../_helpers.ts";
import { openBody, SSE } from "./_server.ts";

const probe = new URL("./_exit_probe.ts", import.meta.url).pathname;

interface ProbeResult {
  outcome: string;
  events: string[];
  /** ms from the probe's last line to its exit. */
  exitAfter: number;
  code: number | null;
}

/** Runs the probe with one scenario; kills it if it has not exited `grace` ms after reporting. */
function runProbe(
  origin: string,
  scenario: string,
  env: Record<string, string> = {},
  grace = 3_000,
): Promise<ProbeResult> {
  const args = runtime === "deno"
    ? ["run", "-A", probe, origin, scenario]
    : [probe, origin, scenario];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let output = "";
  let reportedAt = 0;
  let killer: ReturnType<typeof setTimeout> | undefined;
  child.stdout!.on("data", (chunk) => {
    output += String(chunk);
    if (reportedAt === 0 && output.includes("\n")) {
      reportedAt = Date.now();
      killer = setTimeout(() => child.kill("SIGKILL"), grace);
    }
  });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(killer);
      try {
        const { outcome, events } = JSON.parse(output.trim().split("\n").at(-1)!);
        resolve({ outcome, events, exitAfter: Date.now() - reportedAt, code });
      } catch {
        reject(new Error(`The probe printed no result: ${JSON.stringify(output)}`));
      }
    });
  });
}

async function probeServer(): Promise<TestServer> {
  let hangs = 0;
  return await serve(async (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/open") return new Response(openBody("data: one\n\n"), { headers: SSE });
    if (path === "/end") return new Response("data: one\n\n", { headers: SSE });
    if (path === "/401") return new Response("no", { status: 401 });
    if (path === "/hang-once") {
      if (hangs++ === 0) return new Response(openBody(""), { headers: SSE });
      return new Response(openBody("data: two\n\n"), { headers: SSE });
    }
    if (path === "/quiet") {
      // A stream quiet for 10 s, longer than a low BUN_CONFIG_HTTP_IDLE_TIMEOUT lets a fetch wait.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(": open\n\n"));
          timer = setTimeout(() => {
            controller.enqueue(new TextEncoder().encode("data: late\n\n"));
            controller.close();
          }, 10_000);
        },
        cancel() {
          clearTimeout(timer);
        },
      });
      return new Response(body, { headers: SSE });
    }
    await delay(0);
    return new Response(null, { status: 404 });
  }, { idleTimeout: 0 });
}

describe("connect cleanup", () => {
  const scenarios: [string, string, string[]][] = [
    ["break", "completed", ["one"]],
    ["close-in-backoff", "completed", ["one"]],
    ["abort-in-read", "completed", ["one"]],
    ["http-error", "ConnectError 401", []],
    ["timeout-then-break", "completed", ["two"]],
  ];
  for (const [scenario, outcome, events] of scenarios) {
    it(`connect leaves no timer, listener or body behind after "${scenario}": the process exits`, {
      timeout: 20_000,
    }, async () => {
      const server = await probeServer();
      try {
        const result = await runProbe(server.origin, scenario);
        assert.equal(result.outcome, outcome);
        assert.deepEqual(result.events, events);
        assert.equal(result.code, 0);
        assert.ok(result.exitAfter < 1_500, `exited ${result.exitAfter} ms after its last event`);
      } finally {
        await server.close();
      }
    });
  }

  it("connect keeps a quiet stream past Bun's fetch idle timeout, which cuts a plain fetch", {
    skip: runtime !== "bun",
    timeout: 40_000,
  }, async () => {
    const server = await probeServer();
    try {
      const result = await runProbe(server.origin, "bun-idle", {
        BUN_CONFIG_HTTP_IDLE_TIMEOUT: "1",
      });
      assert.deepEqual(result.events, ["late"]);
      assert.equal(result.outcome, "plain fetch failed: TimeoutError");
    } finally {
      await server.close();
    }
  });
});
