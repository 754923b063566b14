import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { EventParserStream, type ParsedEvent } from "../../mod.ts";
import { delay, waitFor } from "../_helpers.ts";
import { type RedisServer, startRedis } from "./_redis_server.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const bin = (name: string) =>
  fileURLToPath(new URL(`../../node_modules/.bin/${name}`, import.meta.url));
const script = fileURLToPath(new URL("./fixtures/sse_worker.ts", import.meta.url));

interface WorkerProcess {
  name: string;
  origin: string;
  child: ChildProcess;
  stderr: string[];
}

/** Starts one worker process and waits for the port it prints. */
function startWorker(
  name: string,
  command: string[],
  args: string[],
): Promise<WorkerProcess> {
  const child = spawn(command[0]!, [...command.slice(1), script, ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1" },
  });
  const stderr: string[] = [];
  child.stderr!.on("data", (chunk) => stderr.push(String(chunk)));
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      reject(new Error(`Worker ${name} printed no port: ${stderr.join("")}`));
    }, 15_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`Worker ${name} exited with ${code}: ${stderr.join("")}`));
    });
    child.stdout!.on("data", (chunk) => {
      out += String(chunk);
      const port = /PORT (\d+)/.exec(out)?.[1];
      if (port) {
        clearTimeout(timer);
        child.stdout!.removeAllListeners("data");
        child.stdout!.resume();
        resolve({ name, origin: `http://127.0.0.1:${port}`, child, stderr });
      }
    });
  });
}

async function stopWorker(worker: WorkerProcess): Promise<void> {
  if (worker.child.exitCode !== null || worker.child.pid === undefined) return;
  const exited = new Promise((resolve) => worker.child.once("exit", resolve));
  process.kill(worker.child.pid, "SIGTERM");
  const timer = setTimeout(() => {
    try {
      process.kill(worker.child.pid!, "SIGKILL");
    } catch {
      // gone
    }
  }, 3_000);
  await exited;
  clearTimeout(timer);
}

/** An SSE client that reconnects as EventSource does, with `Last-Event-ID`. */
class Client {
  events: ParsedEvent[] = [];
  lastEventId: string;
  connections = 0;
  connected = false;
  #controller = new AbortController();
  #loop: Promise<void>;

  constructor(public origin: string, channels: string, lastEventId = "") {
    this.lastEventId = lastEventId;
    this.#loop = this.#run(channels);
  }

  /** The data of every event but the gap signal. */
  get data(): string[] {
    return this.events.filter((e) => e.type !== "stream-reset").map((e) => e.data);
  }

  get resets(): number {
    return this.events.filter((e) => e.type === "stream-reset").length;
  }

  async #run(channels: string): Promise<void> {
    const signal = this.#controller.signal;
    while (!signal.aborted) {
      try {
        const response = await fetch(`${this.origin}/events?channels=${channels}`, {
          headers: this.lastEventId ? { "last-event-id": this.lastEventId } : {},
          signal,
        });
        this.connections++;
        this.connected = true;
        const parser = new EventParserStream({ lastEventId: this.lastEventId });
        const reader = response.body!.pipeThrough(parser).getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          this.events.push(value);
          this.lastEventId = value.lastEventId;
        }
      } catch {
        // aborted, or the worker dropped the connection: reconnect below
      }
      this.connected = false;
      if (!signal.aborted) await delay(50);
    }
  }

  async close(): Promise<void> {
    this.#controller.abort();
    await this.#loop;
  }
}

async function publish(worker: WorkerProcess, channel: string, data: string): Promise<Response> {
  const response = await fetch(`${worker.origin}/publish?channel=${channel}`, {
    method: "POST",
    body: data,
  });
  await response.body?.cancel();
  return response;
}

let redis: RedisServer;
let workers: WorkerProcess[] = [];
const clients: Client[] = [];
/** The clients on channel "room", across the three workers. */
const roomClients: Client[] = [];

before(async () => {
  redis = await startRedis();
  const prefix = `w${Math.random().toString(36).slice(2, 8)}:`;
  const deno = [bin("deno"), "run", "-A"];
  workers = await Promise.all([
    startWorker("deno/node-redis", deno, [redis.url, "node-redis", prefix, "100"]),
    startWorker("deno/ioredis", deno, [redis.url, "ioredis", prefix, "100"]),
    startWorker("bun/built-in", [bin("bun")], [redis.url, "bun", prefix, "100"]),
  ]);
});

after(async () => {
  for (const client of clients) await client.close();
  await Promise.all(workers.map(stopWorker));
  await redis.stop();
});

describe("three worker processes (two Deno, one Bun) sharing a broker over Redis", () => {
  it("deliver every publish once to every client of the channel, in one order", {
    timeout: 30_000,
  }, async () => {
    const room = workers.flatMap((
      w,
    ) => [new Client(w.origin, "room"), new Client(w.origin, "room")]);
    const other = workers.map((w) => new Client(w.origin, "other"));
    clients.push(...room, ...other);
    roomClients.push(...room);
    await waitFor(() => [...room, ...other].every((c) => c.connected), 5_000, "clients");
    const expected: string[] = [];
    await Promise.all(workers.map(async (worker, w) => {
      for (let i = 0; i < 10; i++) {
        expected.push(`w${w}-${i}`);
        const response = await publish(worker, "room", `w${w}-${i}`);
        assert.equal(response.status, 204);
      }
    }));
    await waitFor(() => room.every((c) => c.data.length >= 30), 5_000, "30 events everywhere");
    await delay(100);
    const first = room[0]!.data;
    assert.deepEqual([...first].sort(), [...expected].sort(), "each event exactly once");
    for (const client of room) assert.deepEqual(client.data, first, "the same order everywhere");
    for (let w = 0; w < 3; w++) {
      const mine = first.filter((d) => d.startsWith(`w${w}-`));
      assert.deepEqual(mine, Array.from({ length: 10 }, (_, i) => `w${w}-${i}`), "publisher order");
    }
    for (const client of other) assert.deepEqual(client.events, []);
  });

  it("replay exactly what a client missed when it reconnects to another worker", {
    timeout: 20_000,
  }, async () => {
    const away = new Client(workers[0]!.origin, "room,side");
    await waitFor(() => away.connected, 5_000, "connect");
    assert.equal((await publish(workers[1]!, "side", "s0")).status, 204);
    await waitFor(() => away.data.length === 1, 3_000, "s0");
    await away.close();
    const missed = ["r1", "s1", "r2", "s2"];
    for (const [i, data] of missed.entries()) {
      assert.equal(
        (await publish(workers[i % 3]!, data[0] === "r" ? "room" : "side", data)).status,
        204,
      );
    }
    const back = new Client(workers[2]!.origin, "room,side", away.lastEventId);
    clients.push(back);
    roomClients.push(back);
    await waitFor(() => back.data.length >= 4, 3_000, "the replay");
    assert.equal((await publish(workers[0]!, "room", "r3")).status, 204);
    await waitFor(() => back.data.length >= 5, 3_000, "a live event");
    await delay(100);
    assert.deepEqual(back.data, [...missed, "r3"]);
    assert.equal(back.resets, 0);
    assert.equal(back.connections, 1);
  });

  it("keep serving through a kill -9 of Redis, and deliver everywhere once it is back", {
    timeout: 30_000,
  }, async () => {
    const room = roomClients;
    const before = room.map((c) => c.data.length);
    await redis.kill();
    await delay(200); // for every worker's sockets to see the close
    for (const worker of workers) {
      const started = Date.now();
      const response = await publish(worker, "room", "lost");
      assert.equal(response.status, 503, `${worker.name} refuses a publish`);
      const took = Date.now() - started;
      assert.ok(took < 1_000, `${worker.name} refused it at once, not after ${took} ms`);
      const health = await fetch(`${worker.origin}/health`);
      assert.equal(await health.text(), "ok", `${worker.name} keeps serving`);
    }
    await redis.restart();
    // Each worker takes publishes again once its connections are back.
    for (const worker of workers) {
      const deadline = Date.now() + 10_000;
      while ((await publish(worker, "probe", "p")).status !== 204) {
        assert.ok(Date.now() < deadline, `${worker.name} recovers: ${worker.stderr.join("")}`);
        await delay(100);
      }
    }
    // Redis came back empty: every client is told to refetch (the gap signal), then resumes.
    await waitFor(
      () => room.every((c) => c.resets >= 1 && c.connected),
      8_000,
      "the gap signal at every client",
    ).catch((error) => {
      throw new Error(
        `${error.message}: ${
          JSON.stringify(room.map((c) => [c.origin, c.resets, c.connected, c.connections]))
        }\n${workers.map((w) => `${w.name}: ${w.stderr.join("")}`).join("\n")}`,
      );
    });
    for (const [w, worker] of workers.entries()) {
      assert.equal((await publish(worker, "room", `after-${w}`)).status, 204);
    }
    await waitFor(() => room.every((c, i) => c.data.length >= before[i]! + 3), 5_000, "after");
    await delay(100);
    for (const [i, client] of room.entries()) {
      assert.deepEqual(client.data.slice(before[i]), ["after-0", "after-1", "after-2"]);
    }
  });
});
