/**
 * The load client of `broker_bench.ts`: one process holding many SSE connections over raw
 * HTTP/1.1 sockets (`node:net`), so that it costs as little as possible and never shares an event
 * loop with the server. It writes one `GET` per connection and counts frames by finding blank
 * lines (LF LF) in the raw bytes: no HTTP parser, no decoding, no de-chunking (a runtime writes
 * whole frames per HTTP chunk, so the chunk framing never splits an LF LF).
 *
 * It is driven by JSON commands on stdin, one a line, and answers each with one JSON line on
 * stdout:
 *
 * - `{"cmd":"connect","port":P,"path":"/x","count":N}`: opens N connections (a set), answers
 *   `{"set":S,"ms":...}` once each has its response head and its opening frame.
 * - `{"cmd":"expect","set":S,"frames":F}`: answers once every connection of the set has counted
 *   F more frames: `{"armed":true}` at once, then `{"first":t,"last":t,"cpuMs":c,"ms":w,
 *   "reads":r}` (times are `timeOrigin + now()`, the server's clock too; CPU and wall time are
 *   the client's own over the round; `reads` is the socket reads of the round over the set, a
 *   lower bound of the chunks the server wrote). A paused connection is not waited for.
 * - `{"cmd":"latency","set":S,"on":true|false}`: while on, reads the number after `data: ` in
 *   every frame (a send time) and records receipt time minus it; off answers with percentiles.
 * - `{"cmd":"pause","set":S,"index":I}`: stops reading one connection (a stalled client); an
 *   `expect` no longer waits for it.
 * - `{"cmd":"frames","set":S}`: answers with each connection's frame count since the last
 *   `expect`.
 * - `{"cmd":"close","set":S}` / `{"cmd":"exit"}`.
 *
 * Run by `broker_bench.ts` on Bun (default) or Deno: `bun bench/_fanout_client.ts`.
 * @module
 */
import { connect, type Socket } from "node:net";
import process from "node:process";
import { createInterface } from "node:readline";

interface Conn {
  socket: Socket;
  head: boolean;
  /** Bytes of the response head read so far (it may come in pieces). */
  headText: string;
  frames: number;
  lastWasLF: boolean;
  /** Latency mode: text after the last blank line, carried into the next read. */
  carry: string;
  /** Reads (`data` events) since the last `expect`: at most one per chunk the server wrote. */
  reads: number;
  /** Stopped by `pause`: an `expect` does not wait for it. */
  paused: boolean;
}

interface Round {
  frames: number;
  remaining: number;
  first: number;
  last: number;
  cpu: NodeJS.CpuUsage;
  wall: number;
}

interface ConnSet {
  conns: Conn[];
  round: Round | null;
  latency: number[] | null;
}

const LF = 10;
const sets: ConnSet[] = [];
const now = (): number => performance.timeOrigin + performance.now();

function reply(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** LF LF pairs in one read, including one split across the previous read and this one. */
function countFrames(conn: Conn, bytes: Uint8Array, from: number): number {
  let frames = 0;
  if (conn.lastWasLF && from < bytes.length && bytes[from] === LF) frames++;
  let i = bytes.indexOf(LF, from);
  while (i !== -1) {
    if (bytes[i + 1] === LF) {
      frames++;
      i = bytes.indexOf(LF, i + 2);
    } else {
      i = bytes.indexOf(LF, i + 1);
    }
  }
  const end = bytes.length;
  conn.lastWasLF = end > from && bytes[end - 1] === LF &&
    !(end - 2 >= from && bytes[end - 2] === LF);
  return frames;
}

const SEND_TIME = /data: (\d+(?:\.\d+)?)/g;

function recordLatency(set: ConnSet, conn: Conn, bytes: Uint8Array, from: number): void {
  const received = now();
  const text = conn.carry + Buffer.from(bytes.buffer, bytes.byteOffset + from, bytes.length - from)
    .toString("latin1");
  const cut = text.lastIndexOf("\n\n");
  const whole = cut === -1 ? "" : text.slice(0, cut);
  conn.carry = cut === -1 ? text : text.slice(cut + 2);
  for (const match of whole.matchAll(SEND_TIME)) set.latency!.push(received - Number(match[1]));
}

function onData(set: ConnSet, conn: Conn, bytes: Uint8Array, ready: () => void): void {
  let from = 0;
  if (!conn.head) {
    // The head: small, and read as text only until its end.
    const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("latin1");
    conn.headText += text;
    const end = conn.headText.indexOf("\r\n\r\n");
    if (end === -1) return;
    if (!conn.headText.startsWith("HTTP/1.1 200")) {
      throw new Error(`Cannot connect: got ${conn.headText.split("\r\n")[0]}`);
    }
    from = bytes.length - (conn.headText.length - end - 4);
    conn.head = true;
    conn.headText = "";
  }
  conn.reads++;
  const frames = countFrames(conn, bytes, from);
  if (frames === 0) return;
  if (set.latency) recordLatency(set, conn, bytes, from);
  const before = conn.frames;
  conn.frames += frames;
  if (before === 0) ready(); // the opening frame
  const round = set.round;
  if (round && before < round.frames && conn.frames >= round.frames) {
    const t = now();
    if (round.first === 0) round.first = t;
    round.last = t;
    if (--round.remaining === 0) {
      const cpu = process.cpuUsage(round.cpu);
      set.round = null;
      let reads = 0;
      for (const c of set.conns) if (!c.paused) reads += c.reads;
      reply({
        first: round.first,
        last: round.last,
        cpuMs: (cpu.user + cpu.system) / 1000,
        ms: performance.now() - round.wall,
        reads,
      });
    }
  }
}

function open(port: number, path: string, count: number): void {
  const set: ConnSet = { conns: [], round: null, latency: null };
  const id = sets.push(set) - 1;
  const started = performance.now();
  let ready = 0;
  let opened = 0;
  const onReady = (): void => {
    if (++ready === count) reply({ set: id, ms: performance.now() - started });
    else startMore();
  };
  const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    "Accept: text/event-stream\r\n\r\n";
  // At most 256 handshakes in flight: beyond the listen backlog, SYNs are dropped and retried
  // a second later.
  const startMore = (): void => {
    while (opened < count && opened - ready < 256) {
      opened++;
      const socket = connect({ port, host: "127.0.0.1", noDelay: true });
      const conn: Conn = {
        socket,
        head: false,
        headText: "",
        frames: 0,
        lastWasLF: false,
        carry: "",
        reads: 0,
        paused: false,
      };
      set.conns.push(conn);
      socket.on("connect", () => socket.write(request));
      socket.on("data", (bytes: Uint8Array) => onData(set, conn, bytes, onReady));
      socket.on("error", (error) => {
        if (!set.conns.includes(conn)) return;
        console.error(`Cannot read connection: ${error.message}`);
      });
    }
  };
  startMore();
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function handle(line: string): void {
  const command = JSON.parse(line);
  const set = sets[command.set];
  switch (command.cmd) {
    case "connect":
      open(command.port, command.path, command.count);
      break;
    case "expect": {
      for (const conn of set.conns) {
        conn.frames = 1; // the opening frame stays counted
        conn.reads = 0;
      }
      set.round = {
        frames: 1 + command.frames,
        remaining: set.conns.filter((conn) => !conn.paused).length,
        first: 0,
        last: 0,
        cpu: process.cpuUsage(),
        wall: performance.now(),
      };
      reply({ armed: true });
      break;
    }
    case "latency":
      if (command.on) {
        set.latency = [];
        for (const conn of set.conns) conn.carry = "";
        reply({ ok: true });
      } else {
        const samples = set.latency ?? [];
        set.latency = null;
        samples.sort((a, b) => a - b);
        reply({
          count: samples.length,
          p50: percentile(samples, 0.5),
          p99: percentile(samples, 0.99),
          max: samples.at(-1) ?? NaN,
        });
      }
      break;
    case "pause":
      set.conns[command.index].socket.pause();
      set.conns[command.index].paused = true;
      reply({ ok: true });
      break;
    case "frames":
      reply({ frames: set.conns.map((conn) => conn.frames - 1) });
      break;
    case "close":
      for (const conn of set.conns.splice(0)) conn.socket.destroy();
      reply({ ok: true });
      break;
    case "exit":
      for (const s of sets) for (const conn of s.conns.splice(0)) conn.socket.destroy();
      process.exit(0);
  }
}

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() !== "") handle(line);
});
// The parent went away without saying goodbye: leave too.
process.stdin.on("end", () => process.exit(0));
