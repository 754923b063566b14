import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, clampRetry, MAX_RETRY, MAX_TIMEOUT } from "../../src/client/_backoff.ts";
import { abortableDelay } from "../../src/client/_abortable_delay.ts";
import { VirtualClock } from "../_clock.ts";

const settings = { initial: 3_000, max: 30_000, factor: 2, jitter: 1, resetAfter: 5_000 };
const exact = { ...settings, jitter: 0 };
const low = () => 0;
const middle = () => 0.5;
const high = () => 0.999_999;

describe("backoff", () => {
  it("backoffDelay waits the reconnection time on average on the first reconnect", () => {
    assert.equal(backoffDelay(1, 300, settings, middle), 300);
    assert.equal(backoffDelay(1, 300, exact, high), 300);
  });

  it("backoffDelay jitters the first reconnect over 0 to twice the reconnection time", () => {
    assert.equal(backoffDelay(1, 300, settings, low), 0);
    assert.equal(backoffDelay(1, 300, settings, high), 600);
    assert.equal(backoffDelay(1, 300, { ...settings, jitter: 0.5 }, low), 150);
    assert.equal(backoffDelay(1, 300, { ...settings, jitter: 0.5 }, high), 450);
  });

  it("backoffDelay grows by factor on repeated failures up to max", () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7].map((attempt) => backoffDelay(attempt, 3_000, exact)),
      [3_000, 6_000, 12_000, 24_000, 30_000, 30_000, 30_000],
    );
  });

  it("backoffDelay grows from initial when the server's retry is lower, so retry: 0 is no loop", () => {
    assert.deepEqual(
      [1, 2, 3, 4].map((attempt) => backoffDelay(attempt, 0, exact)),
      [0, 6_000, 12_000, 24_000],
    );
    assert.deepEqual(
      [1, 2, 3].map((attempt) => backoffDelay(attempt, 0, { ...exact, initial: 10 })),
      [0, 20, 40],
    );
  });

  it("backoffDelay keeps a server's retry above max as the ceiling of growth", () => {
    assert.deepEqual(
      [1, 2, 5].map((attempt) => backoffDelay(attempt, 60_000, exact)),
      [60_000, 60_000, 60_000],
    );
  });

  it("backoffDelay spreads jittered waits evenly around the wait", () => {
    const delays = Array.from({ length: 2_000 }, () => backoffDelay(3, 1_000, settings));
    assert.ok(delays.every((delay) => delay >= 0 && delay <= 24_000));
    const mean = delays.reduce((sum, delay) => sum + delay, 0) / delays.length;
    assert.ok(mean > 10_000 && mean < 14_000, `mean ${mean}`);
    assert.ok(new Set(delays).size > 1_500, "most delays differ");
  });

  it("backoffDelay never returns more than the longest timer the runtimes keep", () => {
    const huge = { ...settings, max: MAX_TIMEOUT };
    assert.equal(backoffDelay(40, MAX_TIMEOUT, huge, high), MAX_TIMEOUT);
    assert.equal(backoffDelay(1, MAX_TIMEOUT, huge, high), MAX_TIMEOUT);
  });

  it("clampRetry caps a server's retry at one hour", () => {
    assert.equal(MAX_RETRY, 3_600_000);
    assert.equal(clampRetry(99_999_999_999), MAX_RETRY);
    assert.equal(clampRetry(1_500), 1_500);
    assert.equal(clampRetry(0), 0);
  });

  it("abortableDelay resolves true after exactly the time and false at once on abort", async () => {
    const clock = new VirtualClock().install();
    try {
      const controller = new AbortController();
      let done: boolean | undefined;
      void abortableDelay(500, controller.signal).then((value) => done = value);
      await clock.advance(499);
      assert.equal(done, undefined);
      await clock.advance(1);
      assert.equal(done, true);
      const waiting = abortableDelay(60_000, controller.signal);
      assert.equal(clock.pending, 1);
      controller.abort();
      assert.equal(await waiting, false);
      assert.equal(clock.pending, 0, "the timer is cleared");
      assert.equal(await abortableDelay(60_000, controller.signal), false);
      assert.equal(clock.pending, 0);
    } finally {
      clock.uninstall();
    }
  });

  it("abortableDelay cuts a wait beyond the longest timer instead of overflowing it", () => {
    const clock = new VirtualClock().install();
    try {
      const controller = new AbortController();
      void abortableDelay(99_999_999_999, controller.signal);
      assert.deepEqual(clock.dueTimes, [MAX_TIMEOUT]);
      controller.abort();
    } finally {
      clock.uninstall();
    }
  });

  it("abortableDelay removes its abort listener when the time elapses", async () => {
    const clock = new VirtualClock().install();
    try {
      const signal = new AbortController().signal;
      let added = 0;
      let removed = 0;
      const add = signal.addEventListener.bind(signal);
      const remove = signal.removeEventListener.bind(signal);
      signal.addEventListener = ((...args: Parameters<typeof add>) => {
        added++;
        add(...args);
      }) as typeof add;
      signal.removeEventListener = ((...args: Parameters<typeof remove>) => {
        removed++;
        remove(...args);
      }) as typeof remove;
      for (let i = 0; i < 3; i++) {
        const waiting = abortableDelay(1, signal);
        await clock.advance(1);
        assert.equal(await waiting, true);
      }
      assert.equal(added, 3);
      assert.equal(removed, 3);
    } finally {
      clock.uninstall();
    }
  });
});
