/**
 * The one heap of heartbeat and write-timeout deadlines (`src/_deadlines.ts`): every deadline
 * comes at its own time, in order, on one timer, and an entry removed or ended leaves nothing.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type Deadlined, deadlines, deadlineSlot, onDeadline } from "../src/_deadlines.ts";
import { EventStream } from "../mod.ts";
import { onVirtualClock, type VirtualClock } from "./_clock.ts";

/** An entry that records when its deadline came, and may set the next one. */
function entry(name: string, log: [string, number][], clock: VirtualClock, every?: number) {
  const item: Deadlined & { name: string } = {
    name,
    [deadlineSlot]: -1,
    [onDeadline]() {
      log.push([name, clock.now()]);
      if (every !== undefined) deadlines().set(item, clock.now() + every);
    },
  };
  return item;
}

/** A small seeded generator, so that a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return seed / 2_147_483_648;
  };
}

describe("Deadlines", () => {
  it("runs 500 deadlines set in random order each at its time, in order, on one timer", async () => {
    await onVirtualClock(async (clock) => {
      const log: [string, number][] = [];
      const next = random(7);
      const expected: [string, number][] = [];
      for (let n = 0; n < 500; n++) {
        const due = 1 + Math.floor(next() * 1_000);
        deadlines().set(entry(`e${n}`, log, clock), due);
        expected.push([`e${n}`, due]);
      }
      assert.equal(clock.pending, 1, "one timer for all of them");
      assert.equal(deadlines().size, 500);
      await clock.advance(1_000);
      assert.deepEqual(
        log.map(([, at]) => at),
        expected.map(([, due]) => due).sort((a, b) => a - b),
      );
      for (const [name, at] of log) {
        assert.equal(at, expected.find(([n]) => n === name)![1], `${name} at its own time`);
      }
      assert.equal(clock.pending, 0, "no timer once the heap is empty");
    });
  });

  it("moves and removes deadlines, keeping the timer on the earliest one", async () => {
    await onVirtualClock(async (clock) => {
      const log: [string, number][] = [];
      const [a, b, c] = ["a", "b", "c"].map((name) => entry(name, log, clock));
      const heap = deadlines();
      heap.set(a!, 30);
      heap.set(b!, 10);
      heap.set(c!, 20);
      assert.deepEqual(clock.dueTimes, [10]);
      heap.delete(b!);
      assert.equal(b![deadlineSlot], -1);
      assert.deepEqual(clock.dueTimes, [20]);
      heap.set(a!, 5); // moved earlier
      assert.deepEqual(clock.dueTimes, [5]);
      heap.delete(b!); // not in the heap: nothing happens
      await clock.advance(30);
      assert.deepEqual(log, [["a", 5], ["c", 20]]);
      assert.equal(heap.size, 0);
    });
  });

  it("an entry that sets its next deadline when one comes runs on schedule", async () => {
    await onVirtualClock(async (clock) => {
      const log: [string, number][] = [];
      const heap = deadlines();
      const fast = entry("fast", log, clock, 10);
      const slow = entry("slow", log, clock, 25);
      heap.set(fast, 10);
      heap.set(slow, 25);
      await clock.advance(50);
      // Deadlines due at the same ms run in no set order.
      log.sort(([a, at], [b, bt]) => at - bt || a.localeCompare(b));
      assert.deepEqual(log, [
        ["fast", 10],
        ["fast", 20],
        ["slow", 25],
        ["fast", 30],
        ["fast", 40],
        ["fast", 50],
        ["slow", 50],
      ]);
      heap.delete(fast);
      heap.delete(slow);
      assert.equal(clock.pending, 0);
    });
  });

  it("1,000 idle streams share one timer for their heartbeats, and leave none when closed", async () => {
    await onVirtualClock(async (clock) => {
      const streams = Array.from({ length: 1_000 }, () => new EventStream({ heartbeat: 5_000 }));
      const readers = streams.map((stream) => stream.readable.getReader());
      await Promise.all(readers.map((reader) => reader.read())); // the opening comment
      assert.equal(clock.pending, 1);
      assert.equal(deadlines().size, 1_000);
      const beats = readers.map((reader) => reader.read());
      await clock.advance(5_000);
      const chunks = await Promise.all(beats);
      assert.ok(chunks.every(({ value }) => new TextDecoder().decode(value) === ":\n\n"));
      for (const stream of streams) stream.close();
      assert.equal(deadlines().size, 0);
      assert.equal(clock.pending, 0);
    });
  });
});
