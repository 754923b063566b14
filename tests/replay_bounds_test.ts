import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type Bridge,
  type BridgeEvent,
  type BridgeGap,
  type BridgeReplay,
  Broker,
  type BrokerOptions,
  type EventStream,
  type HistoryLimits,
  type ParsedEvent,
  STREAM_RESET_EVENT,
} from "../mod.ts";
import { MemoryBridge } from "../src/_memory_bridge.ts";
import { PIECE_BYTES } from "../src/_replay.ts";
import { VirtualClock } from "./_clock.ts";
import { delay, readEvents, reasonOf, runtime, serve, waitFor } from "./_helpers.ts";
import { runFixture } from "./fixtures/_spawn.ts";

/** A broker without timers, so that a unit test leaves nothing behind. */
function quietBroker(options: BrokerOptions<Record<string, unknown>> = {}): Broker {
  return new Broker({ heartbeat: null, writeTimeout: null, ...options });
}

/** Publishes `count` events of about `size` bytes with ids `e0`, `e1`, ... */
async function fill(broker: Broker, channel: string, count: number, size: number): Promise<void> {
  const pad = "x".repeat(size);
  for (let n = 0; n < count; n++) await broker.publish(channel, `${n}:${pad}`, { id: `e${n}` });
}

/** Lets a replay that was asked for reach the stream. */
async function settled(): Promise<void> {
  for (let n = 0; n < 3; n++) await delay(0);
}

const numbers = (events: ParsedEvent[]): string[] => events.map((e) => e.data.split(":")[0]!);
const range = (from: number, to: number): string[] =>
  Array.from({ length: to - from }, (_, n) => String(from + n));

/**
 * A real bridge (the broker's own, in memory) that counts its replay reads and can hold their
 * answers back until `release()`: the broker cannot tell it from the default.
 */
class CountingBridge implements Bridge {
  readonly inner = new MemoryBridge();
  reads = 0;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;

  /** Holds every replay answer until `release()`. */
  hold(): void {
    this.#gate = new Promise((resolve) => this.#open = resolve);
  }

  release(): void {
    this.#open?.();
    this.#gate = undefined;
  }

  open(
    deliver: (event: BridgeEvent) => void,
    lost?: (gap: BridgeGap) => void,
    limits?: HistoryLimits,
  ): Promise<void> {
    return this.inner.open(deliver, lost, limits);
  }

  publish(
    event: { channel: string | null; body: string; id?: string },
    history: number,
  ): Promise<BridgeEvent> {
    return this.inner.publish(event, history);
  }

  /** Held, it answers late and from later history, as Redis may: live events may be in it. */
  async replay(channels: readonly string[], lastEventId: string): Promise<BridgeReplay> {
    this.reads++;
    await this.#gate;
    return this.inner.replay(channels, lastEventId);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

describe("Broker replays in bounded pieces", () => {
  it("a client that never reads pins about one buffer of its replay, then gets it all in order", async () => {
    const bufferBytes = 131_072;
    const broker = quietBroker({ history: 200, bufferBytes });
    await fill(broker, "a", 200, 10_000); // 2 MB of history
    const stream = broker.subscribe("a", { lastEventId: "e0" });
    await settled();
    const queued = broker.metrics().bytesQueued;
    // Pieces are queued while the buffer has room: one buffer and at most one piece beyond it.
    assert.ok(queued >= bufferBytes, `queued ${queued}`);
    assert.ok(queued <= bufferBytes + PIECE_BYTES, `queued ${queued}`);
    assert.equal(broker.metrics().replaysInProgress, 1);
    await broker.publish("a", "live", { id: "live" }); // held: it comes after the replay
    const events = await readEvents(stream.readable, 200);
    assert.deepEqual(numbers(events), [...range(1, 200), "live"]);
    assert.deepEqual(events.map((e) => e.lastEventId).slice(0, 2), ["e1", "e2"]);
    assert.equal(broker.metrics().replaysInProgress, 0);
    assert.ok(broker.metrics().bytesQueued > 199 * 10_000);
    assert.equal(broker.metrics().slowConsumers, 0);
    await broker.close();
  });

  it("an event larger than a piece is cut across pieces and arrives whole, multi-byte text included", async () => {
    const broker = quietBroker({ history: 10, bufferBytes: 65_536 });
    const big = "é😀".repeat(100_000); // 600 KB of UTF-8, a surrogate pair every third unit
    await broker.publish("a", "first", { id: "first" });
    await broker.publish("a", big, { id: "big" });
    await broker.publish("a", "after", { id: "after" });
    const stream = broker.subscribe("a", { lastEventId: "first" });
    const events = await readEvents(stream.readable, 2);
    assert.equal(events[0]!.data, big);
    assert.equal(events[1]!.data, "after");
    await broker.close();
  });

  it('"drop-oldest" never drops a replay piece: the held live events lose their oldest instead', async () => {
    const broker = quietBroker({
      history: 100,
      bufferSize: 4,
      bufferBytes: 65_536,
      overflow: "drop-oldest",
    });
    await fill(broker, "a", 100, 10_000);
    const stream = broker.subscribe("a", { lastEventId: "e0" });
    await settled();
    for (let n = 0; n < 10; n++) await broker.publish("a", `live${n}`);
    assert.equal(broker.metrics().slowConsumers, 6, "held within bufferSize: 6 of 10 dropped");
    const events = await readEvents(stream.readable, 103);
    assert.deepEqual(numbers(events), [...range(1, 100), "live6", "live7", "live8", "live9"]);
    assert.equal(stream.closed, true); // readEvents cancelled it
    await broker.close();
  });

  it('"disconnect" ends a client whose held live events pass its bounds mid-replay', async () => {
    const broker = quietBroker({ history: 100, bufferSize: 4, bufferBytes: 65_536 });
    await fill(broker, "a", 100, 10_000);
    const stream = broker.subscribe("a", { lastEventId: "e0" });
    await settled();
    for (let n = 0; n < 4; n++) await broker.publish("a", `live${n}`);
    assert.equal(stream.closed, false, "four held events fit");
    await broker.publish("a", "one too many");
    assert.equal(reasonOf(stream).reason, "overflow");
    assert.equal(broker.clientCount(), 0);
    assert.deepEqual(
      [broker.metrics().slowConsumers, broker.metrics().replaysInProgress],
      [1, 0],
    );
    await broker.close();
  });

  it('"disconnect" ends a client whose held live events pass its bounds before the bridge answers', async () => {
    const bridge = new CountingBridge();
    const broker = quietBroker({ history: 100, bufferSize: 4, bridge });
    await fill(broker, "a", 10, 10);
    bridge.hold();
    const stream = broker.subscribe("a", { lastEventId: "e0" });
    for (let n = 0; n < 5; n++) await broker.publish("a", `live${n}`);
    // Nothing of the replay was queued: it ends gracefully and comes back from the same id.
    assert.equal(reasonOf(stream).reason, "closed");
    assert.deepEqual(await readEvents(stream.readable), []);
    assert.deepEqual(
      [broker.clientCount(), broker.metrics().slowConsumers, broker.metrics().replaysInProgress],
      [0, 1, 0],
    );
    bridge.release();
    await settled();
    assert.equal(broker.metrics().replayHits, 0, "the late answer goes nowhere");
    await broker.close();
  });

  it("a client that stops reading mid-replay is dropped by writeTimeout, leaving no replay and no timer", async () => {
    const clock = new VirtualClock().install();
    try {
      const broker = new Broker({
        history: 100,
        heartbeat: 500,
        writeTimeout: 1_000,
        bufferBytes: 65_536,
      });
      await fill(broker, "a", 100, 10_000);
      const stream = broker.subscribe("a", { lastEventId: "e0" });
      const reader = stream.readable.getReader();
      await reader.read(); // the opening comment and the first pieces leave; then it stops
      await settled();
      assert.equal(broker.metrics().replaysInProgress, 1);
      await clock.advance(1_000);
      assert.equal(reasonOf(stream).reason, "timeout");
      assert.deepEqual([broker.clientCount(), broker.metrics().replaysInProgress], [0, 0]);
      assert.equal(clock.pending, 0);
      reader.releaseLock();
      await broker.close();
    } finally {
      clock.uninstall();
    }
  });

  it('"disconnect" ends gracefully a client whose held events overflow while its last pieces wait', async () => {
    const broker = quietBroker({ history: 100, bufferSize: 4, bufferBytes: 131_072 });
    await fill(broker, "a", 8, 10_000); // two pieces: 64 KiB and about 16 KB
    const stream = broker.subscribe("a", { lastEventId: "e0" });
    await settled();
    assert.equal(broker.metrics().replaysInProgress, 1, "the held events wait for an empty buffer");
    for (let n = 0; n < 5; n++) await broker.publish("a", `live${n}`);
    assert.equal(reasonOf(stream).reason, "closed");
    // What was queued still goes out: the client resumes from e7, without a hole.
    assert.deepEqual(numbers(await readEvents(stream.readable)), range(1, 8));
    assert.deepEqual([broker.clientCount(), broker.metrics().slowConsumers], [0, 1]);
    await broker.close();
  });

  it("an event published while the bridge reads arrives once, though the answer carries it too", async () => {
    const bridge = new CountingBridge();
    const broker = quietBroker({ history: 100, bridge });
    await fill(broker, "a", 3, 10);
    bridge.hold();
    const stream = broker.subscribe("a", { lastEventId: "e0" });
    await broker.publish("a", "during", { id: "during" }); // held, and in the late answer
    bridge.release();
    const reading = readEvents(stream.readable, 4);
    await settled();
    await broker.publish("a", "after", { id: "after" });
    assert.deepEqual(numbers(await reading), ["1", "2", "during", "after"]);
    await broker.close();
  });

  it("keeps order with live events on several channels: replay, then held events after it, no duplicate", async () => {
    const broker = quietBroker({ history: 100, bufferBytes: 65_536 });
    await broker.publish("b", "b-old", { id: "b-old" });
    await fill(broker, "a", 30, 5_000);
    const stream = broker.subscribe(["a", "b"], { lastEventId: "b-old" });
    const reading = readEvents(stream.readable, 33);
    await broker.publish("b", "b-live");
    await broker.broadcast("all-live");
    await broker.publish("a", "a-live");
    const events = await reading;
    assert.deepEqual(numbers(events), [...range(0, 30), "b-live", "all-live", "a-live"]);
    await broker.close();
  });
});

describe("Broker shares identical replays", () => {
  it("50 concurrent identical resumes share one bridge read and the same piece bytes", async () => {
    const bridge = new CountingBridge();
    const broker = quietBroker({ history: 100, bridge });
    await fill(broker, "a", 100, 1_000);
    bridge.hold(); // a bridge as slow as Redis: all 50 come while the read is in flight
    const streams: EventStream[] = [];
    for (let n = 0; n < 50; n++) streams.push(broker.subscribe("a", { lastEventId: "e0" }));
    bridge.release();
    assert.equal(bridge.reads, 1);
    assert.equal(broker.metrics().replaysShared, 49);
    const chunks: Uint8Array[][] = [];
    for (const stream of streams.slice(0, 2)) {
      const [one, two] = stream.readable.tee();
      const seen: Uint8Array[] = [];
      chunks.push(seen);
      void (async () => {
        for await (const chunk of one as unknown as AsyncIterable<Uint8Array>) seen.push(chunk);
      })();
      assert.deepEqual(numbers(await readEvents(two, 99)), range(1, 100));
    }
    // Pieces larger than a small frame leave as they are: the same memory for both clients.
    const buffers = new Set(chunks[0]!.map((chunk) => chunk.buffer));
    assert.ok(chunks[1]!.some((chunk) => buffers.has(chunk.buffer)), "a piece shared as is");
    for (const stream of streams.slice(2)) {
      assert.deepEqual(numbers(await readEvents(stream.readable, 99)), range(1, 100));
    }
    assert.equal(broker.metrics().replaysInProgress, 0);
    assert.equal(broker.metrics().replayHits, 50);
    await broker.close();
  });

  it("a resume after a live event on its channels gets a read of its own, and misses nothing", async () => {
    const bridge = new CountingBridge();
    const broker = quietBroker({ history: 200, bridge, bufferBytes: 65_536 });
    await fill(broker, "a", 100, 1_000);
    bridge.hold();
    const stalled = broker.subscribe("a", { lastEventId: "e0" }); // never reads
    await broker.publish("other", "elsewhere");
    const joined = broker.subscribe("a", { lastEventId: "e0" });
    assert.deepEqual([bridge.reads, broker.metrics().replaysShared], [1, 1], "other channel");
    await broker.publish("a", "news");
    const late = broker.subscribe("a", { lastEventId: "e0" });
    assert.deepEqual([bridge.reads, broker.metrics().replaysShared], [2, 1], "a read of its own");
    const also = broker.subscribe("a", { lastEventId: "e0" });
    assert.deepEqual([bridge.reads, broker.metrics().replaysShared], [2, 2]);
    bridge.release();
    for (const stream of [joined, late, also]) {
      assert.deepEqual(numbers(await readEvents(stream.readable, 100)), [...range(1, 100), "news"]);
    }
    assert.equal(broker.metrics().replaysInProgress, 1, "the stalled client's");
    // Its first piece was taken by every client of the read: a new client cannot join it.
    const after = broker.subscribe("a", { lastEventId: "e0" });
    assert.deepEqual([bridge.reads, broker.metrics().replaysShared], [3, 2]);
    stalled.close();
    after.close();
    await settled();
    assert.equal(broker.metrics().replaysInProgress, 0);
    await broker.close();
  });
});

describe("Broker replays and bad input", () => {
  it("answers a 1 MB Last-Event-ID with the gap signal, its id cut to 256 characters", async () => {
    const broker = quietBroker({ history: 10 });
    await broker.publish("a", "one");
    const huge = "z".repeat(1_000_000);
    const streams = [0, 1].map(() => broker.subscribe("a", { lastEventId: huge }));
    assert.equal(broker.metrics().replaysShared, 1);
    for (const stream of streams) {
      const [reset] = await readEvents(stream.readable, 1);
      assert.equal(reset!.type, STREAM_RESET_EVENT);
      assert.deepEqual(JSON.parse(reset!.data), {
        channels: ["a"],
        lastEventId: huge.slice(0, 256),
      });
    }
    assert.deepEqual([broker.clientCount(), broker.metrics().replaysInProgress], [0, 0]);
    await broker.close();
  });

  it(
    `a 1 MB Last-Event-ID header on ${runtime}'s server is refused by the runtime; the largest it lets through gets the gap signal`,
    {
      timeout: 30_000,
    },
    async () => {
      const broker = new Broker({ history: 10, heartbeat: null });
      await broker.publish("a", "one");
      let reached = 0;
      const server = await serve((request) => {
        reached++;
        return broker.response("a", request);
      });
      try {
        const refused = await fetch(`${server.origin}/`, {
          headers: { "Last-Event-ID": "z".repeat(1_000_000) },
        });
        await refused.body?.cancel();
        // Measured: Deno answers 400, Bun 431 (Request Header Fields Too Large).
        assert.equal(refused.status, runtime === "bun" ? 431 : 400);
        assert.equal(reached, 0, "the request never reached the handler");
        const long = "z".repeat(15_000); // within both runtimes' header limits
        const response = await fetch(`${server.origin}/`, { headers: { "Last-Event-ID": long } });
        assert.equal(response.status, 200);
        const [reset] = await readEvents(response, 1);
        assert.equal(reset!.type, STREAM_RESET_EVENT);
        assert.equal(JSON.parse(reset!.data).lastEventId, long.slice(0, 256));
        await waitFor(() => broker.clientCount() === 0, 5_000, "the client to leave");
        assert.equal(broker.metrics().replaysInProgress, 0);
      } finally {
        await broker.close();
        await server.close();
      }
    },
  );

  it("10,000 subscribe/leave cycles dropped mid-replay leave no client, no replay and no timer", {
    timeout: 60_000,
  }, async () => {
    const clock = new VirtualClock().install();
    try {
      // Default heartbeat and writeTimeout: their timers run on the virtual clock.
      const broker = new Broker({ history: 100, bufferBytes: 16_384 });
      await fill(broker, "a", 100, 2_000);
      const open: { stream: EventStream; abort: AbortController }[] = [];
      // The client drops (its request's signal aborts, or it cancels the body); now and then
      // the app closes the stream instead.
      const leave = async (n: number): Promise<void> => {
        const { stream, abort } = open.shift()!;
        if (n % 100 === 0) stream.close();
        else if (n % 2 === 0) abort.abort();
        else await stream.readable.cancel();
      };
      for (let n = 0; n < 10_000; n++) {
        const abort = new AbortController();
        // Two at a time alike: the second joins the first one's read.
        const stream = broker.subscribe(["a", `c${(n >> 1) % 4}`], {
          signal: abort.signal,
          lastEventId: `e${(n >> 1) % 4}`,
        });
        open.push({ stream, abort });
        if (n % 2 === 0) continue;
        if (n % 10 === 1) {
          const reader = stream.readable.getReader();
          await reader.read(); // takes a little of its replay, then leaves
          reader.releaseLock();
        }
        if (n % 500 === 1) await broker.publish("a", `live ${n}`);
        while (open.length > 8) await leave(n + open.length);
      }
      while (open.length > 0) await leave(open.length);
      await delay(0);
      const metrics = broker.metrics();
      assert.deepEqual([broker.clientCount(), broker.clientCount("a"), metrics.replaysInProgress], [
        0,
        0,
        0,
      ]);
      assert.equal(metrics.replaysShared, 5_000);
      // A stream closed with chunks its client never took keeps its write timeout until then.
      await clock.advance(30_000);
      assert.equal(clock.pending, 0, "no timer left");
      await broker.close();
    } finally {
      clock.uninstall();
    }
  });
});

describe(`Broker replay memory on ${runtime}`, () => {
  it(
    "ten rounds of resuming a 10 MB history and dropping stay under +300 MB of RSS, heap back near baseline",
    {
      timeout: 120_000,
    },
    async () => {
      const run = await runFixture("replay_memory.ts", [], 100_000, ["--v8-flags=--expose-gc"]);
      assert.equal(run.killed, false, `killed: ${run.stderr}`);
      assert.equal(run.code, 0, run.stderr);
      const line = run.lines.find((l) => l.text.startsWith("{"));
      assert.ok(line, run.stdout);
      const report = JSON.parse(line.text);
      console.log(`replay memory on ${runtime}:`, line.text);
      const MB = 1_048_576;
      assert.equal(report.resumed, report.clients, "every client got the start of its replay");
      assert.ok(report.peakRssGrowth < 300 * MB, `peak RSS +${report.peakRssGrowth / MB} MB`);
      assert.ok(report.heapGrowthAfter < 24 * MB, `heap +${report.heapGrowthAfter / MB} MB after`);
      assert.deepEqual([report.clientsAfter, report.replaysAfter], [0, 0]);
    },
  );
});
