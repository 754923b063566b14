/**
 * When streams hand their queued frames to the runtime: one scheduler for many streams (one per
 * broker, one shared by stand-alone streams) instead of a chain of microtasks per stream.
 *
 * A stream whose runtime is waiting for bytes asks the scheduler for a flush, either now
 * ({@linkcode FlushScheduler.ready}: one microtask flushes every stream that asked, each as one
 * chunk) or at a due time ({@linkcode FlushScheduler.hold}: the batching window of a busy stream,
 * see `writeDelay` in `event_stream.ts`). Held streams are kept in buckets by due time, and one
 * timer (on the clock seam) serves the earliest bucket. Streams flushed in one run share its
 * `now`, so their next windows end together and one timer serves them all: a broker's 1,000
 * busy clients cost one timer per window, not 1,000.
 * @module
 */

import { clock, type TimerHandle } from "./_clock.ts";

/**
 * The method a scheduler calls on a stream: flush if `due` is still the flush it asked for
 * (a stream that asked again, or ended, since then ignores a stale call). `now` is the run's time.
 */
export const flushDue: unique symbol = Symbol("flume.flushDue");

/**
 * Sets the scheduler a stream uses instead of the shared one; the broker calls it right after
 * creating a stream, before anything could be scheduled.
 */
export const useScheduler: unique symbol = Symbol("flume.useScheduler");

/** The `due` of a flush asked for "now", as opposed to a time. */
export const READY = -1;

/** A stream as the scheduler sees it. */
export interface Flushable {
  [flushDue](now: number, due: number): void;
}

interface Bucket {
  due: number;
  streams: Set<Flushable>;
}

/** Flushes ready streams in one microtask, and held streams when their windows end. */
export class FlushScheduler {
  #ready: Flushable[] = [];
  #queued = false;
  /** Held streams by due time, earliest first; mostly one or two buckets. */
  #buckets: Bucket[] = [];
  #timer: TimerHandle | undefined;
  #timerDue = Infinity;
  /** The `clearTimeout` of the clock the timer was set on (see `#arm`). */
  #timerClear: ((handle: TimerHandle) => void) | undefined;
  /**
   * How long the event loop stayed busy after the last run of flushes that was probed, in ms:
   * the runtime's writes of those chunks (and whatever else ran) before a timer could run.
   */
  lag = 0;
  /** When `lag` was measured (`clock.now()`); -Infinity before the first probe. */
  lagAt = -Infinity;
  #busy = false;

  /** Flushes `stream` in this turn of the event loop, with every other ready stream. */
  ready(stream: Flushable): void {
    this.#ready.push(stream);
    if (this.#queued) return;
    this.#queued = true;
    queueMicrotask(this.#runReady);
  }

  /** Flushes `stream` at `due` (a `clock.now()` time), with every stream due then. */
  hold(stream: Flushable, due: number): void {
    const buckets = this.#buckets;
    // Windows of streams flushed in one run end together: the matching bucket is nearly always
    // the last one, so the search from the end is one step.
    let at = buckets.length;
    while (at > 0 && buckets[at - 1]!.due > due) at--;
    const before = buckets[at - 1];
    if (before !== undefined && before.due === due) before.streams.add(stream);
    else buckets.splice(at, 0, { due, streams: new Set([stream]) });
    // An overdue timer is re-armed too: one set on a clock that was swapped out (a test's
    // virtual clock) never runs, and a late one loses nothing by running now.
    if (due < this.#timerDue || this.#timerDue < clock.now()) this.#arm();
  }

  /** Forgets a held stream (it ended, or must flush now): no timer outlives the streams. */
  cancel(stream: Flushable, due: number): void {
    const buckets = this.#buckets;
    const at = buckets.findIndex((bucket) => bucket.due === due);
    if (at < 0) return;
    const streams = buckets[at]!.streams;
    streams.delete(stream);
    if (streams.size > 0) return;
    buckets.splice(at, 1);
    if (at === 0) this.#arm();
  }

  #runReady = (): void => {
    const streams = this.#ready;
    this.#ready = [];
    this.#queued = false;
    const now = clock.now();
    this.#busy = false;
    for (const stream of streams) stream[flushDue](now, READY);
    if (this.#busy) this.#probe(now);
  };

  /**
   * What a stream that flushed events again within a second calls during a run: only then is the
   * event loop's lag worth measuring (a quiet stream never asks for it).
   */
  wantLag(): void {
    this.#busy = true;
  }

  /**
   * Measures how long the runtime keeps the event loop busy after a run of flushes: a timer of
   * 0 ms runs once the writes those chunks started are done. A producer at full speed publishes
   * as soon as they are, so its events are as far apart as the writes take, and the rate alone
   * cannot tell it from a producer that is merely steady; this lag can (see `EventStream`).
   * At most one per run, and only for a run with a busy stream: not one per event per client.
   */
  #probe(now: number): void {
    clock.setTimeout(FlushScheduler.#probed, 0, { scheduler: this, at: now });
  }

  static #probed(probe: { scheduler: FlushScheduler; at: number }): void {
    const now = clock.now();
    probe.scheduler.lag = now - probe.at;
    probe.scheduler.lagAt = now;
  }

  /** Sets the one timer to the earliest bucket, or clears it when nothing is held. */
  #arm(): void {
    // A timer set on a clock that was swapped out since (a test's virtual clock) is not one to
    // cancel on the new one, where its handle may name another timer.
    if (this.#timerClear === clock.clearTimeout) clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    const first = this.#buckets[0];
    this.#timerDue = first?.due ?? Infinity;
    if (first === undefined) return;
    this.#timerClear = clock.clearTimeout;
    this.#timer = clock.setTimeout(
      FlushScheduler.#fire,
      Math.max(0, first.due - clock.now()),
      this,
    );
  }

  /** A shared function and the scheduler as its argument: no closure per timer. */
  static #fire(scheduler: FlushScheduler): void {
    scheduler.#runDue();
  }

  #runDue(): void {
    this.#timer = undefined;
    this.#timerDue = Infinity;
    const now = clock.now();
    const buckets = this.#buckets;
    // A runtime timer may fire a fraction of a ms before `due` by `performance.now()`: what is
    // not due yet gets a new timer, never an early flush.
    while (buckets.length > 0 && buckets[0]!.due <= now) {
      const { due, streams } = buckets.shift()!;
      for (const stream of streams) stream[flushDue](now, due);
    }
    if (buckets.length > 0 && this.#timer === undefined) this.#arm();
  }
}

/** The scheduler of every stream that no broker gave one of its own. */
export const sharedScheduler: FlushScheduler = new FlushScheduler();
