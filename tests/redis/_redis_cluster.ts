/**
 * A real Redis Cluster for the Redis suites: `masters` masters with `replicas` replicas each, as
 * `redis-server --cluster-enabled yes` processes on free ports of 127.0.0.1 (no persistence),
 * joined with `redis-cli --cluster create`, stopped by pid. One cluster per test file, shared by
 * its tests: starting one takes about two seconds, a failover (`killMaster`) two to three.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { freePort } from "../_helpers.ts";

/** One `redis-server` of the cluster. */
export interface ClusterNode {
  port: number;
  /** The pid of its process; the process may be dead (see `alive`). */
  pid: number;
  /** Its role when last looked at (`startCluster`, `killMaster`, `reshard`, `roles()`). */
  role: "master" | "replica";
  /** False once `killMaster` killed it. */
  alive: boolean;
}

/** What `startCluster` starts. */
export interface ClusterOptions {
  /** @default {3} */
  masters?: number;
  /** Replicas per master. @default {1} */
  replicas?: number;
}

/** A running test cluster. */
export interface RedisCluster {
  nodes: ClusterNode[];
  /** `redis://127.0.0.1:PORT` of every node, masters first (as started). */
  urls: string[];
  /** The port of the live master that serves a slot (a number) or a key (hash tags count). */
  masterOf(slotOrKey: number | string): Promise<number>;
  /**
   * Kills a master with SIGKILL, then waits until one of its replicas took over its slots and
   * every live node says `cluster_state:ok`. Resolves with the port of the new master.
   */
  killMaster(port: number): Promise<number>;
  /** Moves `slots` slots from one master to another with `redis-cli --cluster reshard`. */
  reshard(fromPort: number, toPort: number, slots: number): Promise<void>;
  /**
   * Moves one slot and its keys to another master, as `reshard` does it, step by step:
   * `CLUSTER SETSLOT IMPORTING/MIGRATING`, `MIGRATE` of every key, `SETSLOT NODE` everywhere.
   */
  moveSlot(slot: number, toPort: number): Promise<void>;
  /** Refreshes and returns every live node's role. */
  roles(): Promise<ClusterNode[]>;
  /** The ports of a master's live replicas. */
  replicasOf(port: number): Promise<number[]>;
  /** A command sent to one node on a fresh connection (no redirection followed). */
  command(port: number, args: string[]): Promise<Reply>;
  /** Kills every process it started and removes its directory. */
  stop(): Promise<void>;
}

/** A RESP reply: errors come back as `Error` values rather than thrown. */
export type Reply = string | number | null | Error | Reply[];

/** The hash slot of a key (CRC16/XMODEM of the key, or of its hash tag, modulo 16384). */
export function slotOf(key: string): number {
  const open = key.indexOf("{");
  if (open !== -1) {
    const close = key.indexOf("}", open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of new TextEncoder().encode(key)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc % 16384;
}

/** Sends one command on a fresh socket and parses its one reply. */
export function command(port: number, args: string[], ms = 2_000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let buffer = Buffer.alloc(0);
    const done = (error: Error | undefined, reply?: Reply) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(reply!);
    };
    const timer = setTimeout(() => done(new Error(`No reply from port ${port} to ${args[0]}`)), ms);
    socket.on("error", (error) => done(error));
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const parsed = parse(buffer, 0);
      if (parsed) done(undefined, parsed[0]);
    });
    socket.connect(port, "127.0.0.1", () => {
      let text = `*${args.length}\r\n`;
      for (const arg of args) text += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
      socket.write(text);
    });
  });
}

/** One RESP2 value from `at`, with where it ends, or undefined when more bytes are needed. */
function parse(buffer: Buffer, at: number): [Reply, number] | undefined {
  const eol = buffer.indexOf("\r\n", at);
  if (eol === -1) return undefined;
  const line = buffer.toString("utf8", at + 1, eol);
  const next = eol + 2;
  switch (String.fromCharCode(buffer[at]!)) {
    case "+":
      return [line, next];
    case "-":
      return [new Error(line), next];
    case ":":
      return [Number(line), next];
    case "$": {
      const n = Number(line);
      if (n < 0) return [null, next];
      if (buffer.length < next + n + 2) return undefined;
      return [buffer.toString("utf8", next, next + n), next + n + 2];
    }
    case "*": {
      const n = Number(line);
      if (n < 0) return [null, next];
      const items: Reply[] = [];
      let end = next;
      for (let i = 0; i < n; i++) {
        const item = parse(buffer, end);
        if (!item) return undefined;
        items.push(item[0]);
        end = item[1];
      }
      return [items, end];
    }
  }
  throw new Error(`Cannot parse Redis reply: ${line}`);
}

async function waitUntil(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A free port whose cluster bus port (+10000) is free too. */
async function clusterPort(taken: Set<number>): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = await freePort();
    if (port >= 55535 || taken.has(port) || taken.has(port + 10000)) continue;
    if (await isFree(port + 10000)) return port;
  }
  throw new Error("Cannot find free ports for a Redis Cluster node");
}

function run(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (chunk) => output += String(chunk));
    child.stderr!.on("data", (chunk) => output += String(chunk));
    child.once("error", reject);
    child.once("exit", (code) => {
      if (code === 0) resolve(output);
      else {reject(
          new Error(`${bin} ${args.join(" ")} exited with ${code}: ${output.slice(-2000)}`),
        );}
    });
  });
}

interface NodeLine {
  id: string;
  port: number;
  role: "master" | "replica";
  failed: boolean;
  masterId: string;
  slots: [number, number][];
}

/** `CLUSTER NODES` as seen by one node. */
async function clusterNodes(port: number): Promise<NodeLine[]> {
  const text = await command(port, ["CLUSTER", "NODES"]);
  if (typeof text !== "string") throw new Error(`CLUSTER NODES failed on ${port}`);
  return text.trim().split("\n").map((line) => {
    const [id, address, flags, master, , , , , ...slots] = line.split(" ");
    return {
      id: id!,
      port: Number(/:(\d+)@/.exec(address!)?.[1]),
      role: flags!.includes("master") ? "master" : "replica",
      failed: flags!.split(",").some((f) => f === "fail" || f === "noaddr"),
      masterId: master!,
      slots: slots.filter((s) => !s.startsWith("[")).map((s) => {
        const [a, b] = s.split("-");
        return [Number(a), Number(b ?? a)] as [number, number];
      }),
    };
  });
}

async function stateOk(port: number): Promise<boolean> {
  const info = await command(port, ["CLUSTER", "INFO"]);
  return typeof info === "string" && info.includes("cluster_state:ok");
}

/** Starts a cluster and waits until every node says `cluster_state:ok`. */
export async function startCluster(options: ClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicas ?? 1;
  const dir = mkdtempSync(join(tmpdir(), "flume-cluster-"));
  const children = new Map<number, ChildProcess>();
  const exits = new Map<number, Promise<void>>();
  const nodes: ClusterNode[] = [];
  const taken = new Set<number>();

  const kill = async (port: number) => {
    const child = children.get(port);
    if (child?.pid === undefined) return;
    children.delete(port);
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {
      // It is gone already.
    }
    await exits.get(port);
  };
  const stop = async () => {
    await Promise.all([...children.keys()].map(kill));
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const port = await clusterPort(taken);
      taken.add(port);
      taken.add(port + 10000);
      const child = spawn("redis-server", [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        join(dir, `nodes-${port}.conf`),
        "--cluster-node-timeout",
        "1000",
        // A replica with stale data still takes over: the test kills masters on purpose.
        "--cluster-replica-validity-factor",
        "0",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir,
      ], { stdio: "ignore" });
      child.once("error", () => {});
      children.set(port, child);
      exits.set(port, new Promise((resolve) => child.once("exit", () => resolve())));
      nodes.push({ port, pid: child.pid!, role: "master", alive: true });
    }
    await Promise.all(
      nodes.map((n) =>
        waitUntil(
          `redis-server on ${n.port}`,
          async () => (await command(n.port, ["PING"])) === "PONG",
        )
      ),
    );
    await run("redis-cli", [
      "--cluster",
      "create",
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      "--cluster-replicas",
      String(replicas),
      "--cluster-yes",
    ]);
    await waitUntil("cluster_state:ok on every node", async () => {
      for (const n of nodes) if (!(await stateOk(n.port))) return false;
      // Every node must also know every other node's role, or a client may get stale slots.
      for (const n of nodes) {
        const seen = await clusterNodes(n.port);
        if (seen.filter((l) => l.role === "master" && l.slots.length > 0).length !== masters) {
          return false;
        }
        if (seen.length !== nodes.length) return false;
        // And every replica must be attached: until then it shows as a master without slots,
        // and a test would take it for one (SETSLOT to it fails).
        if (seen.filter((l) => l.role === "replica").length !== masters * replicas) return false;
      }
      return true;
    });
  } catch (error) {
    await stop();
    throw error;
  }

  const live = () => nodes.filter((n) => n.alive);
  const roles = async () => {
    const seen = await clusterNodes(live()[0]!.port);
    for (const n of nodes) {
      const line = seen.find((l) => l.port === n.port);
      if (line) n.role = line.role;
    }
    return nodes;
  };
  await roles();
  const masterOf = async (slotOrKey: number | string) => {
    const slot = typeof slotOrKey === "number" ? slotOrKey : slotOf(slotOrKey);
    for (const line of await clusterNodes(live()[0]!.port)) {
      if (line.role !== "master" || line.failed) continue;
      if (line.slots.some(([a, b]) => a <= slot && slot <= b)) return line.port;
    }
    throw new Error(`No live master serves slot ${slot}`);
  };
  const idOf = async (port: number) => {
    const id = await command(port, ["CLUSTER", "MYID"]);
    if (typeof id !== "string") throw new Error(`CLUSTER MYID failed on ${port}`);
    return id;
  };
  /** Every live node says `cluster_state:ok` and sees the same owner for every slot. */
  const settled = async () => {
    let seen: string | undefined;
    for (const n of live()) {
      if (!(await stateOk(n.port))) return false;
      const owners = (await clusterNodes(n.port))
        .filter((l) => l.role === "master" && !l.failed && l.slots.length > 0)
        .map((l) => `${l.port}:${JSON.stringify(l.slots)}`).sort().join(" ");
      if (seen !== undefined && owners !== seen) return false;
      seen = owners;
    }
    return true;
  };

  return {
    nodes,
    urls: nodes.map((n) => `redis://127.0.0.1:${n.port}`),
    masterOf,
    roles,
    command,
    async replicasOf(port) {
      const id = await idOf(port);
      const seen = await clusterNodes(live()[0]!.port);
      return seen.filter((l) => l.masterId === id && !l.failed).map((l) => l.port);
    },
    async killMaster(port) {
      const node = nodes.find((n) => n.port === port && n.alive);
      if (!node || node.role !== "master") throw new Error(`${port} is not a live master`);
      const id = await idOf(port);
      const replicaPorts = (await clusterNodes(port)).filter((l) => l.masterId === id).map((l) =>
        l.port
      );
      node.alive = false;
      await kill(port);
      let promoted = 0;
      await waitUntil(`a replica of ${port} to take over`, async () => {
        for (const p of replicaPorts) {
          const role = await command(p, ["ROLE"]);
          if (Array.isArray(role) && role[0] === "master") promoted = p;
        }
        if (promoted === 0) return false;
        // Every live node must see the new master as serving the slots.
        for (const n of live()) {
          const seen = await clusterNodes(n.port);
          const line = seen.find((l) => l.port === promoted);
          if (line?.role !== "master" || line.slots.length === 0) return false;
        }
        return settled();
      });
      // Forget the dead node everywhere, or `redis-cli --cluster` refuses to work on the cluster.
      const dead = id;
      await Promise.all(live().map((n) => command(n.port, ["CLUSTER", "FORGET", dead])));
      await waitUntil("the dead node to be forgotten", async () => {
        for (const n of live()) {
          if ((await clusterNodes(n.port)).some((l) => l.id === dead)) return false;
        }
        return settled();
      });
      await roles();
      return promoted;
    },
    async reshard(fromPort, toPort, slots) {
      const [from, to] = await Promise.all([idOf(fromPort), idOf(toPort)]);
      await waitUntil("every node to agree before the reshard", settled);
      await run("redis-cli", [
        "--cluster",
        "reshard",
        `127.0.0.1:${fromPort}`,
        "--cluster-from",
        from,
        "--cluster-to",
        to,
        "--cluster-slots",
        String(slots),
        "--cluster-yes",
        "--cluster-pipeline",
        "100",
      ]);
      await waitUntil("cluster_state:ok after the reshard", settled);
    },
    async moveSlot(slot, toPort) {
      const fromPort = await masterOf(slot);
      if (fromPort === toPort) return;
      const [from, to] = await Promise.all([idOf(fromPort), idOf(toPort)]);
      const check = (reply: Reply) => {
        if (reply instanceof Error) throw reply;
        return reply;
      };
      check(await command(toPort, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", from]));
      check(await command(fromPort, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", to]));
      for (;;) {
        const keys = check(
          await command(fromPort, ["CLUSTER", "GETKEYSINSLOT", String(slot), "100"]),
        );
        if (!Array.isArray(keys) || keys.length === 0) break;
        check(
          await command(fromPort, [
            "MIGRATE",
            "127.0.0.1",
            String(toPort),
            "",
            "0",
            "5000",
            "KEYS",
            ...keys.map(String),
          ]),
        );
      }
      // The new owner first, then the old one, then the rest (as redis-cli does).
      check(await command(toPort, ["CLUSTER", "SETSLOT", String(slot), "NODE", to]));
      check(await command(fromPort, ["CLUSTER", "SETSLOT", String(slot), "NODE", to]));
      for (const n of live()) {
        if (n.port !== toPort && n.port !== fromPort && n.role === "master") {
          check(await command(n.port, ["CLUSTER", "SETSLOT", String(slot), "NODE", to]));
        }
      }
      await waitUntil(`every node to see slot ${slot} on ${toPort}`, async () => {
        for (const n of live()) {
          const seen = await clusterNodes(n.port);
          const owner = seen.find((l) =>
            l.role === "master" && l.slots.some(([a, b]) => a <= slot && slot <= b)
          );
          if (owner?.port !== toPort) return false;
        }
        return settled();
      });
    },
    stop,
  };
}
