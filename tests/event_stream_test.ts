import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  EventStream,
  type EventStreamOptions,
  StreamClosedError,
  StreamOverflowError,
} from "../mod.ts";
import { delay, reasonOf, waitFor } from "./_helpers.ts";
import { onVirtualClock, settle } from "./_clock.ts";
import { deadlineSlot } from "../src/_deadlines.ts";

/** Whether `promise` settled within the microtasks and one macrotask turn. */
async function settledNow(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  await settle();
  return settled;
}

const decoder = new TextDecoder();
const OPENING = ":\n\n";

type Reader = ReadableStreamDefaultReader<Uint8Array>;

/** Reads one chunk as text; "<done>" at the end. */
async function readText(reader: Reader): Promise<string> {
  const { done, value } = await reader.read();
  return done ? "<done>" : decoder.decode(value);
}

/** Reads every remaining chunk. */
async function readAll(reader: Reader): Promise<string[]> {
  const chunks: string[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return chunks;
    chunks.push(decoder.decode(value));
  }
}

/** Settles to "pending" if `promise` has not settled within `ms`. */
function settledWithin(promise: Promise<unknown>, ms = 30): Promise<string> {
  return Promise.race([
    promise.then(() => "resolved", () => "rejected"),
    delay(ms).then(() => "pending"),
  ]);
}

function open(options: EventStreamOptions = {}): { stream: EventStream; reader: Reader } {
  const stream = new EventStream({ heartbeat: null, writeTimeout: null, ...options });
  return { stream, reader: stream.readable.getReader() };
}

describe("EventStream opening and order", () => {
  it("EventStream sends an empty comment first so the response starts at once", async () => {
    const { stream, reader } = open();
    assert.equal(await readText(reader), OPENING);
    stream.close();
    assert.equal(await readText(reader), "<done>");
  });

  it("EventStream sends the retry option as the first frame", async () => {
    const { stream, reader } = open({ retry: 2500 });
    assert.equal(await readText(reader), "retry: 2500\n\n");
    stream.close();
  });

  it("EventStream refuses a bad retry option with a RangeError", () => {
    assert.throws(() => new EventStream({ retry: -1 }), RangeError);
    assert.throws(() => new EventStream({ retry: 1.5 }), RangeError);
  });

  it("EventStream delivers send and publish frames in order", async () => {
    const { stream, reader } = open();
    await stream.publish("one");
    await stream.send({ event: "two", data: { n: 2 } });
    await stream.publish(3, { event: "three", id: "3", retry: 100 });
    await stream.send({ comment: "four" });
    stream.comment("five");
    await stream.publish(new TextEncoder().encode("six"));
    stream.close();
    assert.equal(
      (await readAll(reader)).join(""),
      OPENING + "data: one\n\n" + 'event: two\ndata: {"n":2}\n\n' +
        "event: three\nid: 3\nretry: 100\ndata: 3\n\n" + ": four\n\n" + ": five\n\n" +
        "data: six\n\n",
    );
  });

  it("EventStream exposes closed", () => {
    const stream = new EventStream({ heartbeat: null });
    assert.equal(stream.closed, false);
    stream.close();
    assert.equal(stream.closed, true);
  });
});

describe("EventStream buffering", () => {
  it("EventStream send resolves once queued and waits while bufferSize frames are queued", async () => {
    // The opening frame takes one of the two slots.
    const { stream, reader } = open({ bufferSize: 2 });
    assert.equal(await settledWithin(stream.publish("a")), "resolved");
    const waiting = stream.publish("b");
    assert.equal(await settledWithin(waiting), "pending");
    assert.equal(await readText(reader), OPENING + "data: a\n\n");
    assert.equal(await settledWithin(waiting), "resolved");
    assert.equal(await readText(reader), "data: b\n\n");
    stream.close();
  });

  it("EventStream send waits while bufferBytes bytes are queued, whatever the frame count", async () => {
    const { stream, reader } = open({ bufferBytes: 100 });
    assert.equal(await readText(reader), OPENING);
    const big = "x".repeat(120);
    assert.equal(
      await settledWithin(stream.publish(big)),
      "resolved",
      "an empty buffer takes any frame",
    );
    const waiting = stream.publish("small");
    assert.equal(await settledWithin(waiting), "pending");
    assert.equal(await readText(reader), `data: ${big}\n\n`);
    assert.equal(await settledWithin(waiting), "resolved");
    assert.equal(await readText(reader), "data: small\n\n");
    stream.close();
  });

  it("EventStream rejects a send with StreamOverflowError when bufferSize sends already wait", async () => {
    const { stream, reader } = open({ bufferSize: 4 });
    const sends = Array.from({ length: 12 }, (_, i) => stream.publish(i));
    const outcomes = await Promise.all(sends.map((send) => settledWithin(send)));
    // 3 queued beside the opening frame, 4 waiting, the other 5 refused.
    assert.deepEqual(outcomes, [
      ...Array(3).fill("resolved"),
      ...Array(4).fill("pending"),
      ...Array(5).fill("rejected"),
    ]);
    for (const send of sends.slice(7)) {
      await assert.rejects(send, (error: unknown) => {
        assert.ok(error instanceof StreamOverflowError);
        assert.ok(error instanceof RangeError);
        assert.equal(error.bufferSize, 4);
        return true;
      });
    }
    assert.equal(stream.signal.aborted, false, "an overflowing send does not end the stream");
    const drained = readAll(reader);
    await Promise.all(sends.slice(0, 7));
    stream.close();
    const frames = (await drained).join("");
    assert.equal(frames, OPENING + [0, 1, 2, 3, 4, 5, 6].map((n) => `data: ${n}\n\n`).join(""));
  });

  it("EventStream never hands over more than bufferSize frames at once: memory stays bounded", async () => {
    const { stream, reader } = open({ bufferSize: 8 });
    const producing = (async () => {
      for (let n = 0; n < 300; n++) await stream.publish(n);
      stream.close();
    })();
    let frames = 0;
    let largest = 0;
    for (;;) {
      await delay(1); // a slow reader: the producer is always ahead
      const { done, value } = await reader.read();
      if (done) break;
      const count = decoder.decode(value).split("\n\n").length - 1;
      largest = Math.max(largest, count);
      frames += count;
    }
    await producing;
    assert.equal(frames, 301);
    assert.ok(largest <= 8, `a chunk held ${largest} frames`);
    assert.ok(largest > 1, "frames queued while the reader was away were joined");
  });

  it("EventStream stays usable after a send of an invalid event is rejected", async () => {
    const { stream, reader } = open();
    await assert.rejects(stream.send({ event: "a\nb", data: "x" }), TypeError);
    await assert.rejects(stream.publish("x", { retry: -1 }), RangeError);
    await assert.rejects(stream.publish(10n), TypeError);
    assert.throws(() => stream.comment("\ud800"), TypeError);
    assert.equal(stream.signal.aborted, false);
    await stream.publish("ok");
    stream.close();
    assert.equal((await readAll(reader)).join(""), OPENING + "data: ok\n\n");
  });
});

describe("EventStream delivery timing", () => {
  it("EventStream joins frames queued before a read into one chunk", async () => {
    const { stream, reader } = open();
    assert.equal(await readText(reader), OPENING);
    await stream.publish("a");
    await stream.publish("b");
    await stream.publish("c");
    assert.equal(await readText(reader), "data: a\n\ndata: b\n\ndata: c\n\n");
    stream.close();
  });

  it("EventStream joins frames queued in one go while the reader waits", async () => {
    const { stream, reader } = open();
    assert.equal(await readText(reader), OPENING);
    const next = readText(reader);
    await delay(10);
    void stream.publish("a");
    void stream.publish("b");
    assert.equal(await next, "data: a\n\ndata: b\n\n");
    stream.close();
  });

  it("EventStream delivers a frame to an idle stream at once, without waiting for more", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, reader } = open({ heartbeat: 5_000, writeTimeout: 30_000 });
      assert.equal(await readText(reader), OPENING);
      const next = readText(reader);
      await clock.advance(1_000);
      await stream.publish("now");
      // No virtual time passes: the frame leaves within the same turn of the event loop.
      assert.equal(await settledNow(next), true);
      assert.equal(await next, "data: now\n\n");
      assert.equal(clock.now(), 1_000);
      stream.close();
    });
  });
});

describe("EventStream heartbeat", () => {
  it("EventStream sends a heartbeat comment after each `heartbeat` ms of idleness, exactly", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, reader } = open({ heartbeat: 5_000 });
      assert.equal(await readText(reader), OPENING);
      const beats: number[] = [];
      const reading = (async () => {
        for (;;) {
          const text = await readText(reader);
          if (text === "<done>") return;
          assert.equal(text, ":\n\n");
          beats.push(clock.now());
        }
      })();
      await clock.advance(4_999);
      assert.deepEqual(beats, []);
      await clock.advance(1);
      assert.deepEqual(beats, [5_000]);
      await clock.advance(10_000);
      assert.deepEqual(beats, [5_000, 10_000, 15_000]);
      stream.close();
      await reading;
      assert.equal(stream[deadlineSlot], -1, "no timer outlives the stream");
    });
  });

  it("EventStream sends no heartbeat while busy, and one a full interval after the last event", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, reader } = open({ heartbeat: 5_000 });
      assert.equal(await readText(reader), OPENING);
      const chunks: [number, string][] = [];
      const reading = (async () => {
        for (;;) {
          const text = await readText(reader);
          if (text === "<done>") return;
          chunks.push([clock.now(), text]);
        }
      })();
      for (let n = 0; n < 40; n++) {
        await stream.publish(n);
        await clock.advance(1_000);
      }
      // The last event left at 39 s: the next heartbeat is due at 44 s, not before.
      await clock.advance(3_999);
      assert.equal(chunks.filter(([, text]) => text === ":\n\n").length, 0);
      await clock.advance(1);
      assert.deepEqual(chunks.at(-1), [44_000, ":\n\n"]);
      assert.equal(chunks.filter(([, text]) => text.startsWith("data: ")).length, 40);
      stream.close();
      await reading;
    });
  });

  it("EventStream refuses out-of-range options with a RangeError", () => {
    const bad: EventStreamOptions[] = [
      { bufferSize: 0 },
      { bufferSize: -1 },
      { bufferSize: 1.5 },
      { bufferSize: NaN },
      { bufferSize: Infinity },
      { bufferBytes: 0 },
      { bufferBytes: -10 },
      { heartbeat: 0 },
      { heartbeat: -5 },
      { heartbeat: NaN },
      { heartbeat: Infinity },
      { heartbeat: 2 ** 31 },
      { writeTimeout: 0 },
      { writeTimeout: -1 },
      { writeTimeout: NaN },
      { writeTimeout: Infinity },
      { heartbeat: "5" as unknown as number },
    ];
    for (const options of bad) {
      assert.throws(() => new EventStream(options), RangeError, JSON.stringify(options));
    }
  });

  it("EventStream accepts null to turn the heartbeat and write timeout off", () => {
    const stream = new EventStream({ heartbeat: null, writeTimeout: null, bufferSize: 1 });
    stream.close();
  });
});

describe("EventStream ends", () => {
  it("EventStream aborts its signal with reason timeout `writeTimeout` ms after the reader stopped reading", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, reader } = open({ writeTimeout: 30_000 });
      assert.equal(await readText(reader), OPENING);
      await stream.publish("unread");
      await clock.advance(29_999);
      assert.equal(stream.signal.aborted, false);
      await clock.advance(1);
      assert.equal(reasonOf(stream).reason, "timeout");
      assert.equal(stream[deadlineSlot], -1);
      await assert.rejects(reader.read(), StreamClosedError);
      await assert.rejects(stream.publish("late"), StreamClosedError);
    });
  });

  it("EventStream on a real clock times out a reader that stopped reading", async () => {
    const { stream, reader } = open({ writeTimeout: 100 });
    assert.equal(await readText(reader), OPENING);
    await stream.publish("unread");
    await waitFor(() => stream.signal.aborted, 10_000, "the write timeout");
    assert.equal(reasonOf(stream).reason, "timeout");
    await assert.rejects(reader.read(), StreamClosedError);
    await assert.rejects(stream.publish("late"), StreamClosedError);
  });

  it("EventStream does not time out while the reader waits for data", async () => {
    await onVirtualClock(async (clock) => {
      const { stream, reader } = open({ writeTimeout: 30_000 });
      assert.equal(await readText(reader), OPENING);
      const next = readText(reader);
      await clock.advance(120_000);
      assert.equal(stream.signal.aborted, false);
      await stream.publish("still here");
      assert.equal(await next, "data: still here\n\n");
      stream.close();
    });
  });

  it("EventStream aborts its signal with reason cancelled when the reader cancels", async () => {
    const { stream, reader } = open();
    await reader.cancel("gone");
    assert.equal(stream.signal.aborted, true);
    const reason = reasonOf(stream);
    assert.equal(reason.reason, "cancelled");
    assert.equal(reason.cause, "gone");
    await assert.rejects(stream.publish("late"), (error: unknown) => {
      assert.ok(error instanceof StreamClosedError);
      assert.equal(error.reason, "cancelled");
      return true;
    });
    stream.comment("ignored after cancel");
  });

  it("EventStream aborts its signal with reason closed on close()", async () => {
    const { stream } = open();
    stream.close();
    stream.close();
    assert.equal(reasonOf(stream).reason, "closed");
    assert.equal(reasonOf(stream).name, "StreamClosedError");
    await assert.rejects(stream.send({ data: "late" }), StreamClosedError);
    stream.comment("ignored after close");
  });

  it("EventStream aborts its signal with reason aborted when options.signal aborts", async () => {
    const controller = new AbortController();
    const { stream, reader } = open({ signal: controller.signal });
    assert.equal(await readText(reader), OPENING);
    controller.abort("stop");
    assert.equal(reasonOf(stream).reason, "aborted");
    assert.equal(reasonOf(stream).cause, "stop");
    assert.equal(await readText(reader), "<done>");
  });

  it("EventStream starts closed when options.signal is already aborted", async () => {
    const { stream, reader } = open({ signal: AbortSignal.abort("early") });
    assert.equal(reasonOf(stream).reason, "aborted");
    assert.equal(reasonOf(stream).cause, "early");
    assert.equal(await readText(reader), "<done>");
    await assert.rejects(stream.publish("x"), StreamClosedError);
  });

  it("EventStream removes its listener from options.signal when it ends", () => {
    for (const end of ["close", "cancel"] as const) {
      const controller = new AbortController();
      const signal = controller.signal;
      let added = 0;
      let removed = 0;
      const add = signal.addEventListener.bind(signal);
      const remove = signal.removeEventListener.bind(signal);
      signal.addEventListener = (...args: Parameters<typeof add>) => {
        added++;
        add(...args);
      };
      signal.removeEventListener = (...args: Parameters<typeof remove>) => {
        removed++;
        remove(...args);
      };
      const stream = new EventStream({ heartbeat: null, signal });
      if (end === "close") stream.close();
      else void stream.readable.cancel();
      assert.equal(added, 1);
      assert.equal(removed, 1, `after ${end}`);
    }
  });

  it("EventStream close() delivers what was queued, then ends", async () => {
    const { stream, reader } = open({ bufferSize: 3 });
    await stream.publish("a");
    await stream.publish("b");
    const waiting = stream.publish("c");
    stream.close();
    assert.equal(stream.signal.aborted, true, "the signal aborts at once");
    await assert.rejects(waiting, (error: unknown) => {
      assert.ok(error instanceof StreamClosedError);
      assert.equal(error.reason, "closed");
      return true;
    });
    assert.equal((await readAll(reader)).join(""), OPENING + "data: a\n\ndata: b\n\n");
  });

  it("EventStream comment() drops the comment when the buffer is full, without throwing", async () => {
    const { stream, reader } = open({ bufferSize: 2 });
    await stream.publish("a");
    stream.comment("dropped");
    stream.close();
    assert.equal((await readAll(reader)).join(""), OPENING + "data: a\n\n");
  });

  it("EventStream comment() writes each line of a multi-line comment", async () => {
    const { stream, reader } = open();
    stream.comment("one\ntwo");
    stream.close();
    assert.equal((await readAll(reader)).join(""), OPENING + ": one\n: two\n\n");
  });

  it("EventStream response() wraps the stream with SSE headers", async () => {
    const stream = new EventStream({ heartbeat: null });
    const response = stream.response({ status: 201, headers: { "x-extra": "1" } });
    assert.equal(response.status, 201);
    assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
    assert.equal(response.headers.get("x-extra"), "1");
    await stream.publish("x");
    stream.close();
    assert.equal(await response.text(), OPENING + "data: x\n\n");
  });
});
