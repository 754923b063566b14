/**
 * Clients that stop reading: bounded chunks (a dropped client pins at most one inside the
 * runtime), the heartbeat counted as data by the write timeout (exact schedule on the virtual
 * clock), a graceful close that does not wait forever for a client that stopped reading, and
 * real servers with raw TCP clients that never read: what is noticed, and what each runtime
 * does with the socket (docs/operations.md, "Stalled and frozen clients", quotes these figures).
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { execFileSync } from "node:child_process";
import { Broker, EventStream, type EventStreamOptions, StreamClosedError } from "../mod.ts";
import { offerFrame } from "../src/_stream_control.ts";
import { delay, reasonOf, runtime, serve, waitFor } from "./_helpers.ts";
import { onVirtualClock } from "./_clock.ts";
import { deadlines, deadlineSlot } from "../src/_deadlines.ts";
import { runFixture } from "./fixtures/_spawn.ts";

const CHUNK_BYTES = 65_536;
type Reader = ReadableStreamDefaultReader<Uint8Array>;

function open(options: EventStreamOptions): { stream: EventStream; reader: Reader } {
  const stream = new EventStream({ heartbeat: null, writeTimeout: null, ...options });
  return { stream, reader: stream.readable.getReader() };
}

async function readChunk(reader: Reader): Promise<Uint8Array> {
  const { done, value } = await reader.read();
  assert.equal(done, false);
  return value!;
}

describe("EventStream hands the runtime bounded chunks", () => {
  it("a large shared frame leaves as 64 KiB views of the same bytes, one per read", async () => {
    const { stream, reader } = open({});
    await readChunk(reader); // the opening comment
    const frame = new Uint8Array(CHUNK_BYTES * 3 + 100).fill(97);
    assert.equal(stream[offerFrame](frame, "disconnect"), 0);
    const sizes: number[] = [];
    let offset = 0;
    for (let i = 0; i < 4; i++) {
      const chunk = await readChunk(reader);
      assert.equal(chunk.buffer, frame.buffer, "a view, not a copy");
      assert.equal(chunk.byteOffset, offset);
      offset += chunk.byteLength;
      sizes.push(chunk.byteLength);
    }
    assert.deepEqual(sizes, [CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES, 100]);
    stream.close();
    assert.equal((await reader.read()).done, true);
  });

  it("a long text frame leaves in pieces of at most 64 KiB that decode to the frame", async () => {
    const { stream, reader } = open({});
    await readChunk(reader);
    // Four-byte characters (surrogate pairs) and one-byte ones: pieces never cut a pair.
    const data = "a🎉".repeat(50_000) + "é\n".repeat(30_000);
    await stream.publish(data);
    stream.close();
    const decoder = new TextDecoder("utf-8", { fatal: true });
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      assert.ok(value.byteLength <= CHUNK_BYTES, `a chunk of ${value.byteLength} bytes`);
      text += decoder.decode(value, { stream: true });
    }
    const expected = data.split("\n").map((line) => `data: ${line}\n`).join("") + "\n";
    assert.equal(text, expected);
  });

  it("small frames are still joined into one chunk", async () => {
    const { stream, reader } = open({});
    await readChunk(reader);
    const small = new Uint8Array(100).fill(98);
    stream[offerFrame](small, "disconnect");
    stream[offerFrame](small, "disconnect");
    void stream.publish("c");
    assert.equal((await readChunk(reader)).byteLength, 200 + "data: c\n\n".length);
    stream.close();
  });
});

describe("EventStream write timeout counts the heartbeat as data", () => {
  it("a reader that does not take a heartbeat is dropped `writeTimeout` ms after it, exactly", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, reader } = open({ heartbeat: 5_000, writeTimeout: 12_000 });
      await readChunk(reader);
      // The runtime asks for more (a read is pending), the stream is quiet.
      const heartbeat = reader.read();
      await clock.advance(5_000);
      assert.equal(new TextDecoder().decode((await heartbeat).value), ":\n\n");
      // The client never comes back for more: the heartbeat was the last chunk taken.
      await clock.advance(11_999);
      assert.equal(stream.signal.aborted, false);
      await clock.advance(1);
      assert.equal(reasonOf(stream).reason, "timeout");
      assert.equal(clock.now(), 17_000);
      assert.equal(stream[deadlineSlot], -1);
      await assert.rejects(reader.read(), StreamClosedError);
    });
  });

  it("a reader that keeps taking heartbeats is never dropped", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, reader } = open({ heartbeat: 5_000, writeTimeout: 12_000 });
      await readChunk(reader);
      for (let i = 0; i < 10; i++) {
        const next = reader.read();
        await clock.advance(5_000);
        assert.equal(new TextDecoder().decode((await next).value), ":\n\n");
      }
      assert.equal(stream.signal.aborted, false);
      stream.close();
    });
  });

  it("each chunk of a large frame restarts the write timeout; a stalled one ends the stream", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, reader } = open({ writeTimeout: 10_000 });
      await readChunk(reader);
      stream[offerFrame](new Uint8Array(CHUNK_BYTES * 4), "disconnect");
      // Two chunks, each taken 8 s after the previous: within the timeout every time.
      for (let i = 0; i < 2; i++) {
        await clock.advance(8_000);
        await readChunk(reader);
      }
      assert.equal(stream.signal.aborted, false);
      await clock.advance(10_000);
      assert.equal(reasonOf(stream).reason, "timeout");
      assert.equal(clock.now(), 26_000);
    });
  });

  it("close() with a chunk half handed out delivers the rest in bounded chunks, no timer left", async () => {
    await onVirtualClock(async () => {
      const { stream, reader } = open({ heartbeat: 1_000, writeTimeout: 10_000 });
      await readChunk(reader);
      assert.equal(deadlines().size, 1, "its heartbeat check, on this test's clock");
      stream[offerFrame](new Uint8Array(CHUNK_BYTES * 2 + 1), "disconnect");
      await readChunk(reader); // the first view; two are still ours
      await stream.publish("after");
      stream.close();
      assert.equal(stream[deadlineSlot], -1, "no timer outlives the stream");
      assert.equal(deadlines().size, 0);
      const sizes: number[] = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        sizes.push(value.byteLength);
      }
      assert.deepEqual(sizes, [CHUNK_BYTES, 1, "data: after\n\n".length]);
    });
  });
});

/** Opens a raw TCP client that sends one GET and never reads a byte. */
function stalledClient(port: number, path: string): Socket {
  const socket = connect(port, "127.0.0.1");
  socket.pause();
  socket.on("error", () => {});
  socket.write(`GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`);
  return socket;
}

/** Server-side TCP states of a port (`ss -tan`), e.g. `{ ESTAB: 1 }`. */
function socketStates(port: number): Record<string, number> {
  const out = execFileSync("ss", ["-tanH", `sport = :${port}`], { encoding: "utf8" });
  const states: Record<string, number> = {};
  for (const line of out.split("\n")) {
    const state = line.trim().split(/\s+/)[0];
    if (state && state !== "LISTEN") states[state] = (states[state] ?? 0) + 1;
  }
  return states;
}

describe(`Stalled raw TCP clients on a real ${runtime} server`, () => {
  it("a client whose buffers are full is dropped with reason timeout, heartbeats or not", {
    timeout: 60_000,
  }, async () => {
    const streams: EventStream[] = [];
    const server = await serve(() => {
      const stream = new EventStream({ heartbeat: 100, writeTimeout: 1_000 });
      streams.push(stream);
      // One big event fills the kernel buffers, then the stream is quiet but for heartbeats.
      void stream.publish("x".repeat(16_000_000)).catch(() => {});
      return stream.response();
    }, { idleTimeout: 0 });
    const socket = stalledClient(server.port, "/");
    try {
      await waitFor(() => streams[0]?.signal.aborted === true, 30_000, "the write timeout");
      assert.equal(reasonOf(streams[0]!).reason, "timeout");
      console.log(`${runtime}: after the drop the server's socket is`, socketStates(server.port));
    } finally {
      socket.destroy();
      await server.close();
    }
  });

  it("a frozen client on a quiet stream is not seen: heartbeats only fill its buffers", {
    timeout: 30_000,
  }, async () => {
    let stream: EventStream | undefined;
    const server = await serve(() => {
      stream = new EventStream({ heartbeat: 20, writeTimeout: 300 });
      return stream.response();
    }, { idleTimeout: 0 });
    const socket = stalledClient(server.port, "/");
    try {
      await waitFor(() => stream !== undefined, 10_000, "the request");
      // 100 heartbeats (300 bytes) sit in the client's kernel buffers, which take megabytes:
      // the runtime keeps asking for more, so nothing shows that the app reads nothing.
      await delay(2_000);
      assert.equal(stream!.signal.aborted, false);
    } finally {
      socket.destroy();
      await server.close();
    }
  });

  it("a stalled broker client is dropped for overflow", {
    timeout: 60_000,
  }, async () => {
    const broker = new Broker({ heartbeat: null, bufferSize: 4 });
    const server = await serve((request) => broker.response("c", request), { idleTimeout: 0 });
    const socket = stalledClient(server.port, "/");
    try {
      await waitFor(() => broker.clientCount("c") === 1, 10_000, "the subscriber");
      const frame = "y".repeat(1_000_000);
      for (let i = 0; i < 200 && broker.clientCount("c") === 1; i++) {
        await broker.publish("c", frame);
        await delay(5);
      }
      assert.equal(broker.clientCount("c"), 0, "the stalled client was dropped");
    } finally {
      socket.destroy();
      await broker.close();
      await server.close();
    }
  });
});

describe(`What ${runtime} does with the socket of a dropped client (tests/fixtures/stalled_socket.ts)`, () => {
  const modes = runtime === "bun"
    ? [["error", true], ["close", true], ["bun-timeout", false], ["bun-idle", false]] as const
    : [["error", true], ["close", true]] as const;
  for (const [mode, kept] of modes) {
    it(`${mode}: the socket is ${kept ? "kept ESTABLISHED with its send queue" : "closed"}`, {
      timeout: 60_000,
    }, async () => {
      const run = await runFixture("stalled_socket.ts", [mode, "2", "3"], 50_000);
      assert.equal(run.code, 0, run.stderr);
      const report = JSON.parse(run.lines.find((line) => line.text.startsWith("{"))!.text);
      console.log(JSON.stringify(report));
      assert.equal(report.before.count, 2);
      if (kept) {
        assert.equal(report.after.count, 2);
        assert.ok(report.after.sendQueue > 1_000_000);
      } else {
        assert.equal(report.after.count, 0);
      }
    });
  }
});
