import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay } from "../../src/client/_backoff.ts";
import { abortableDelay } from "../../src/client/_abortable_delay.ts";

const settings = { initial: 3_000, max: 30_000, factor: 2, jitter: 0.5 };

describe("backoff", () => {
  it("backoffDelay waits exactly the reconnection time on the first reconnect", () => {
    assert.equal(backoffDelay(1, 300, settings, () => 0.99), 300);
  });

  it("backoffDelay grows by factor on repeated failures up to max", () => {
    const noJitter = { ...settings, jitter: 0 };
    assert.deepEqual(
      [2, 3, 4, 5, 6, 7].map((attempt) => backoffDelay(attempt, 3_000, noJitter)),
      [6_000, 12_000, 24_000, 30_000, 30_000, 30_000],
    );
  });

  it("backoffDelay takes at most the jitter share off a grown wait, never below the reconnection time", () => {
    assert.equal(backoffDelay(3, 1_000, settings, () => 0), 4_000);
    assert.equal(backoffDelay(3, 1_000, settings, () => 0.5), 3_000);
    assert.equal(backoffDelay(2, 1_000, settings, () => 0.999_999), 1_000);
    for (let i = 0; i < 1_000; i++) {
      const delay = backoffDelay(4, 1_000, settings);
      assert.ok(delay >= 4_000 && delay <= 8_000, `delay ${delay}`);
    }
  });

  it("backoffDelay keeps a server's retry above max as the floor", () => {
    assert.equal(backoffDelay(5, 60_000, settings, () => 0.5), 60_000);
  });

  it("backoffDelay still grows from a retry of 0", () => {
    const noJitter = { ...settings, jitter: 0 };
    assert.deepEqual(
      [1, 2, 3, 4].map((attempt) => backoffDelay(attempt, 0, noJitter)),
      [0, 2, 4, 8],
    );
  });

  it("abortableDelay resolves true after the time and false at once on abort", async () => {
    const controller = new AbortController();
    assert.equal(await abortableDelay(5, controller.signal), true);
    const started = Date.now();
    const waiting = abortableDelay(60_000, controller.signal);
    controller.abort();
    assert.equal(await waiting, false);
    assert.ok(Date.now() - started < 100);
    assert.equal(await abortableDelay(60_000, controller.signal), false);
  });

  it("abortableDelay removes its abort listener when the time elapses", async () => {
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
    for (let i = 0; i < 3; i++) await abortableDelay(1, signal);
    assert.equal(added, 3);
    assert.equal(removed, 3);
  });
});
