/**
 * When a stream's frames leave: one scheduler per broker (one shared by stand-alone streams), and
 * batching across turns of the event loop within `writeDelay`. Every schedule here is exact, on
 * the virtual clock.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Broker, EventStream, type EventStreamOptions, sseResponse } from "../mod.ts";
import { setImmediate } from "node:timers";
import { reasonOf } from "./_helpers.ts";
import { onVirtualClock, settle, type VirtualClock } from "./_clock.ts";
import { FlushScheduler, useScheduler } from "../src/_flush_scheduler.ts";

const decoder = new TextDecoder();
const OPENING = ":\n\n";
const frames = (...data: (string | number)[]): string => data.map((d) => `data: ${d}\n\n`).join("");
const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from }, (_, i) => from + i);

/** The due times of held chunks (a 0 ms timer is the scheduler's lag probe, not a hold). */
const held = (clock: VirtualClock): number[] => clock.dueTimes.filter((due) => due > clock.now());

/** Reads every chunk after the opening one, with the virtual time it arrived at. */
function record(
  readable: ReadableStream<Uint8Array>,
  clock: VirtualClock,
): { chunks: [number, string][]; done: Promise<void> } {
  const reader = readable.getReader();
  const chunks: [number, string][] = [];
  const done = (async () => {
    assert.equal(decoder.decode((await reader.read()).value), OPENING);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      chunks.push([clock.now(), decoder.decode(value)]);
    }
  })();
  return { chunks, done };
}

function open(
  clock: VirtualClock,
  options: EventStreamOptions = {},
): { stream: EventStream; chunks: [number, string][]; done: Promise<void> } {
  const stream = new EventStream({ heartbeat: null, writeTimeout: null, ...options });
  return { stream, ...record(stream.readable, clock) };
}

/** Publishes one event at each ms from now on, `count` of them. */
async function onePerMs(stream: EventStream, clock: VirtualClock, from: number, to: number) {
  for (let n = from; n < to; n++) {
    await stream.publish(n);
    await clock.advance(1);
  }
}

describe("EventStream batching within writeDelay", () => {
  it("a quiet stream writes at once: within the turn, no timer, no virtual time", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, chunks, done } = open(clock);
      await clock.advance(100);
      await stream.publish("now");
      assert.equal(clock.pending, 0, "no batching timer for a quiet stream");
      await settle();
      assert.deepEqual(chunks, [[100, frames("now")]]);
      // Quiet again once writeDelay has passed since that chunk: at once again.
      await clock.advance(5);
      await stream.publish("again");
      assert.deepEqual(held(clock), [], "nothing held");
      await settle();
      assert.deepEqual(chunks.at(-1), [105, frames("again")]);
      stream.close();
      await done;
    });
  });

  it("a busy stream writes one chunk per window, due writeDelay ms after the last", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, chunks, done } = open(clock);
      await settle();
      await onePerMs(stream, clock, 0, 20);
      assert.deepEqual(chunks, [
        [0, frames(0)],
        [5, frames(1, 2, 3, 4)],
        [10, frames(5, 6, 7, 8, 9)],
        [15, frames(10, 11, 12, 13, 14)],
        [20, frames(15, 16, 17, 18, 19)],
      ]);
      assert.equal(clock.pending, 0, "nothing held once all left");
      stream.close();
      await done;
    });
  });

  it("the window is the time since the last chunk: the next event waits only what is left of it", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, chunks, done } = open(clock, { writeDelay: 10 });
      await settle();
      await stream.publish("a");
      await clock.advance(7);
      await stream.publish("b");
      assert.deepEqual(clock.dueTimes, [10]);
      await clock.advance(2);
      assert.equal(chunks.length, 1);
      await clock.advance(1);
      await stream.publish("c"); // written to 0 ms ago: held until 20
      await clock.advance(10);
      assert.deepEqual(chunks, [[0, frames("a")], [10, frames("b")], [20, frames("c")]]);
      stream.close();
      await done;
    });
  });

  it("writeDelay 0 turns batching off: every event leaves in its own turn, never a timer", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, chunks, done } = open(clock, { writeDelay: 0 });
      await settle();
      for (let n = 0; n < 5; n++) {
        await stream.publish(n);
        assert.equal(clock.pending, 0);
        await clock.advance(1);
      }
      assert.deepEqual(chunks, range(0, 5).map((n) => [n, frames(n)]));
      stream.close();
      await done;
    });
  });

  it("events queued in one go still leave as one chunk, with batching off too", async () => {
    await onVirtualClock(async (clock) => {
      for (const writeDelay of [0, 5]) {
        const { stream, chunks, done } = open(clock, { writeDelay });
        await settle();
        void stream.publish("a");
        void stream.publish("b");
        await settle();
        assert.deepEqual(chunks, [[clock.now(), frames("a", "b")]]);
        stream.close();
        await done;
      }
    });
  });

  it("a held chunk leaves at once when it reaches bufferSize frames, and its timer goes", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, chunks, done } = open(clock, { bufferSize: 4 });
      await settle();
      await stream.publish(0);
      await settle();
      for (const n of [1, 2, 3]) await stream.publish(n);
      assert.deepEqual(clock.dueTimes, [5]);
      await stream.publish(4); // the buffer is full: waiting would only make the producer wait
      assert.deepEqual(held(clock), []);
      await settle();
      assert.deepEqual(chunks, [[0, frames(0)], [0, frames(1, 2, 3, 4)]]);
      stream.close();
      await done;
    });
  });

  it("a held chunk leaves at once when it reaches 64 KiB", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, chunks, done } = open(clock);
      await settle();
      await stream.publish("a");
      await settle();
      await stream.publish("b");
      const large = "x".repeat(65_536);
      await stream.publish(large);
      assert.deepEqual(held(clock), []);
      await settle();
      assert.deepEqual(chunks.map(([at]) => at), [0, 0]);
      assert.equal(chunks[1]![1], frames("b", large));
      stream.close();
      await done;
    });
  });

  it("close() while a chunk is held delivers it and leaves no timer", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, chunks, done } = open(clock);
      await settle();
      await stream.publish("a");
      await settle();
      await stream.publish("b");
      assert.equal(clock.pending, 1);
      stream.close();
      assert.equal(clock.pending, 0, "no timer outlives the stream");
      await done;
      assert.deepEqual(chunks, [[0, frames("a")], [0, frames("b")]]);
    });
  });

  it("frames queued while the client is not reading leave at the window's end, or at once after it", async () => {
    await onVirtualClock(async (clock) => {
      const stream = new EventStream({ heartbeat: null, writeTimeout: null });
      const reader = stream.readable.getReader();
      await reader.read();
      const first = reader.read();
      await stream.publish("a");
      assert.equal(decoder.decode((await first).value), frames("a"));
      await stream.publish("b"); // nobody reads: nothing to schedule
      await clock.advance(3);
      const second = reader.read(); // within the window of "a": held until 5
      await clock.advance(1);
      await stream.publish("c");
      assert.equal(
        await Promise.race([second.then(() => "read"), settle().then(() => "held")]),
        "held",
      );
      await clock.advance(1);
      assert.equal(decoder.decode((await second).value), frames("b", "c"));
      await stream.publish("d"); // nobody reads, past the window when the read comes
      await clock.advance(20);
      const third = reader.read();
      await settle();
      assert.equal(clock.now(), 25);
      assert.equal(decoder.decode((await third).value), frames("d"));
      stream.close();
    });
  });

  it("heartbeats stay a full interval after the last chunk, a held one included, and make no stream busy", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, chunks, done } = open(clock, { heartbeat: 1_000 });
      await settle();
      await stream.publish("a");
      await clock.advance(1);
      await stream.publish("b"); // held until 5
      await clock.advance(1_003);
      assert.deepEqual(chunks, [[0, frames("a")], [5, frames("b")]]);
      await clock.advance(1);
      assert.deepEqual(chunks.at(-1), [1_005, OPENING]);
      // An event right after a heartbeat is not held: the heartbeat is no traffic.
      await clock.advance(1);
      await stream.publish("c");
      await settle();
      assert.deepEqual(chunks.at(-1), [1_006, frames("c")]);
      stream.close();
      await done;
    });
  });

  it("writeTimeout counts from when a held chunk is handed out", async () => {
    await onVirtualClock(async (clock) => {
      const stream = new EventStream({ heartbeat: null, writeTimeout: 1_000 });
      const reader = stream.readable.getReader();
      await reader.read();
      const first = reader.read();
      await stream.publish("a");
      await first;
      const second = reader.read();
      await stream.publish("b");
      await clock.advance(5);
      assert.equal(decoder.decode((await second).value), frames("b"));
      // The client takes nothing more: dropped writeTimeout ms after the held chunk left.
      await stream.publish("c");
      await clock.advance(999);
      assert.equal(stream.closed, false);
      await clock.advance(1);
      assert.equal(reasonOf(stream).reason, "timeout");
      assert.equal(clock.now(), 1_005);
      assert.equal(clock.pending, 0);
      reader.releaseLock();
    });
  });

  it("refuses a writeDelay out of range with a RangeError", () => {
    for (const writeDelay of [-1, 1_001, NaN, Infinity, "5" as unknown as number]) {
      assert.throws(
        () => new EventStream({ writeDelay }),
        (error: unknown) =>
          error instanceof RangeError &&
          error.message.startsWith(
            "Cannot create EventStream: `writeDelay` must be a number of ms from 0 to 1000, got `",
          ),
        String(writeDelay),
      );
      assert.throws(
        () => new Broker({ writeDelay }),
        /^RangeError: Cannot create Broker: `writeDelay`/,
      );
    }
    new EventStream({ writeDelay: 1_000 }).close();
    new EventStream({ writeDelay: 0.5 }).close();
  });

  it("sseResponse passes writeDelay to the stream it creates", async () => {
    await onVirtualClock(async (clock) => {
      let producer!: EventStream;
      const response = sseResponse((stream) => {
        producer = stream;
        return new Promise<void>((resolve) =>
          stream.signal.addEventListener("abort", () => resolve())
        );
      }, { heartbeat: null, writeTimeout: null, writeDelay: 0 });
      const { chunks, done } = record(response.body!, clock);
      await settle();
      await producer.publish("a");
      await clock.advance(1);
      await producer.publish("b");
      await clock.advance(1);
      assert.deepEqual(chunks, [[0, frames("a")], [1, frames("b")]]);
      producer.close();
      await done;
    });
  });
});

describe("EventStream batching on a busy event loop (real clock)", () => {
  /**
   * A producer that publishes one event per macrotask, as fast as it can, to a client whose
   * every chunk keeps the event loop busy for 10 ms (standing in for the runtime's writes to
   * 1,000 sockets): its events are 10 ms apart, more than the window, yet it is at full speed.
   */
  async function chunksFor(writeDelay: number, events = 40): Promise<number> {
    const stream = new EventStream({ heartbeat: null, writeTimeout: null, writeDelay });
    let chunks = 0;
    let bytes = 0;
    const want = OPENING.length + events * frames(0).length;
    const reading = (async () => {
      for await (const chunk of stream.readable) {
        chunks++;
        bytes += chunk.byteLength;
        const until = performance.now() + 10;
        while (performance.now() < until) { /* the writes */ }
        if (bytes >= want) return;
      }
    })();
    for (let n = 0; n < events; n++) {
      await stream.publish(n % 10);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await reading;
    stream.close();
    return chunks - 1; // the opening comment
  }

  it("a producer at full speed is batched though its events are further apart than the window", async () => {
    const unbatched = await chunksFor(0);
    const batched = await chunksFor(5);
    assert.ok(unbatched >= 36, `writeDelay 0: ${unbatched} chunks for 40 events`);
    assert.ok(batched <= 20, `writeDelay 5: ${batched} chunks for 40 events`);
  });
});

describe("EventStream batching for a busy event loop (scheduler lag, virtual clock)", () => {
  /** A stream on a scheduler of its own, whose measured lag the test sets. */
  function onScheduler(clock: VirtualClock) {
    const scheduler = new FlushScheduler();
    const opened = open(clock);
    opened.stream[useScheduler](scheduler);
    /** As if the writes of the last run kept the event loop busy for `ms`, ending now. */
    const busy = (ms: number): void => {
      scheduler.lag = ms;
      scheduler.lagAt = clock.now();
    };
    return { ...opened, busy };
  }

  it("holds an event that comes as a busy loop frees up, and not one paced by a timer", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, chunks, done, busy } = onScheduler(clock);
      await settle();
      await stream.publish("a");
      await settle();
      // 20 ms later, the loop was busy 8 ms and freed up 1 ms ago: a producer at full speed.
      await clock.advance(19);
      busy(8);
      await clock.advance(1);
      await stream.publish("b");
      assert.deepEqual(held(clock), [25], "held writeDelay from now");
      await clock.advance(1);
      await stream.publish("c");
      await clock.advance(4);
      assert.deepEqual(chunks, [[0, frames("a")], [25, frames("b", "c")]]);
      // A producer paced by a timer: the loop freed up 6 ms before its event, so no hold.
      await clock.advance(50);
      busy(8);
      await clock.advance(6);
      await stream.publish("d");
      assert.deepEqual(held(clock), []);
      await settle();
      assert.deepEqual(chunks.at(-1), [81, frames("d")]);
      stream.close();
      await done;
    });
  });

  it("stops holding for the loop for 10 s after 3 holds in a row that caught under 3 events", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, chunks, done, busy } = onScheduler(clock);
      await settle();
      await stream.publish(0);
      await settle();
      /** An event 20 ms after the last chunk, as the busy loop frees up: held 5 ms. */
      const heldAlone = async (data: string, extra: string[] = []) => {
        await clock.advance(20);
        busy(8);
        await stream.publish(data);
        const due = clock.now() + 5;
        assert.deepEqual(held(clock), [due], `${data} held`);
        for (const more of extra) await stream.publish(more);
        await clock.advance(5);
        assert.deepEqual(chunks.at(-1), [due, frames(data, ...extra)]);
      };
      await heldAlone("a");
      await heldAlone("b", ["b2"]); // two events: still a useless hold
      // Three events: a useful one, which starts the count again.
      await heldAlone("c", ["c2", "c3"]);
      await heldAlone("d");
      await heldAlone("e");
      await heldAlone("f"); // the third useless one in a row: muted from here (150)
      for (const at of [170, 190, 9_000, 10_100]) {
        await clock.advance(at - clock.now());
        busy(8);
        await stream.publish(at);
        assert.deepEqual(held(clock), [], `no hold at ${at}`);
        await settle();
        assert.deepEqual(chunks.at(-1), [at, frames(at)]);
      }
      // 10 s after the mute it holds again.
      await clock.advance(10_155 - clock.now());
      busy(8);
      await stream.publish("again");
      assert.deepEqual(held(clock), [10_160]);
      await clock.advance(5);
      assert.deepEqual(chunks.at(-1), [10_160, frames("again")]);
      stream.close();
      await done;
    });
  });
});

describe("Broker flush scheduler", () => {
  it("one timer serves every held client of a broker, and all leave together", async () => {
    await onVirtualClock(async (clock) => {
      const broker = new Broker({ heartbeat: null, writeTimeout: null, writeDelay: 10 });
      const clients = range(0, 3).map(() => record(broker.subscribe("c").readable, clock));
      await settle();
      await broker.publish("c", "a");
      await settle();
      await broker.publish("c", "b");
      await broker.publish("c", "c");
      assert.deepEqual(clock.dueTimes, [10], "one timer for all three");
      await clock.advance(3);
      await broker.publish("c", "d");
      assert.equal(clock.pending, 1);
      await clock.advance(7);
      for (const { chunks } of clients) {
        assert.deepEqual(chunks, [[0, frames("a")], [10, frames("b", "c", "d")]]);
      }
      assert.equal(clock.pending, 0);
      await broker.close();
      await Promise.all(clients.map(({ done }) => done));
    });
  });

  it("writeDelay 0 on a broker writes every publish at once", async () => {
    await onVirtualClock(async (clock) => {
      const broker = new Broker({ heartbeat: null, writeTimeout: null, writeDelay: 0 });
      const client = record(broker.subscribe("c").readable, clock);
      await settle();
      for (let n = 0; n < 3; n++) {
        await broker.publish("c", n);
        assert.equal(clock.pending, 0);
        await clock.advance(1);
      }
      assert.deepEqual(client.chunks, range(0, 3).map((n) => [n, frames(n)]));
      await broker.close();
      await client.done;
    });
  });

  it("a client that leaves while held is forgotten; the others still get the chunk on time", async () => {
    await onVirtualClock(async (clock) => {
      const broker = new Broker({ heartbeat: null, writeTimeout: null });
      const staying = record(broker.subscribe("c").readable, clock);
      const leaving = broker.subscribe("c");
      const left = record(leaving.readable, clock);
      await settle();
      await broker.publish("c", "a");
      await settle();
      await broker.publish("c", "b");
      leaving.close();
      await left.done;
      assert.deepEqual(clock.dueTimes, [5]);
      await clock.advance(5);
      assert.deepEqual(staying.chunks, [[0, frames("a")], [5, frames("b")]]);
      assert.equal(clock.pending, 0);
      await broker.close();
      await staying.done;
    });
  });
});
