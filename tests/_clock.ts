/**
 * A virtual clock for timing tests: installs itself as the package's clock (`src/_clock.ts`), and
 * moves time only when the test says so. Timers run in order of their due time (then of their
 * creation), and every callback is followed by a real macrotask turn, so the promises and stream
 * reads it started settle before the next timer runs.
 * @module
 */

import { type Clock, useClock } from "../src/_clock.ts";

interface Timer {
  id: number;
  due: number;
  callback: (arg: unknown) => void;
  arg: unknown;
}

/** Lets pending promises, stream reads and I/O callbacks run: one real macrotask turn. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A virtual clock; `install()` makes it the package's clock. */
export class VirtualClock implements Clock {
  #now = 0;
  #next = 1;
  #timers = new Map<number, Timer>();
  #restore: (() => void) | undefined;

  /** Makes this the package's clock; returns itself. Call `uninstall()` when done. */
  install(): this {
    this.#restore = useClock(this);
    return this;
  }

  /** Puts the system clock back. */
  uninstall(): void {
    this.#restore?.();
    this.#restore = undefined;
  }

  now(): number {
    return this.#now;
  }

  setTimeout<T>(callback: (arg: T) => void, ms: number, arg: T): number {
    const id = this.#next++;
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    this.#timers.set(id, {
      id,
      due: this.#now + delay,
      callback: callback as (arg: unknown) => void,
      arg,
    });
    return id;
  }

  clearTimeout(handle: unknown): void {
    if (typeof handle === "number") this.#timers.delete(handle);
  }

  /** Timers not yet run. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * The pending timers whose callback argument is `arg` (a stream passes itself): what one object
   * left behind, whatever timers of other tests (a stream made on the real clock re-arms here when
   * its real timer fires while this clock is installed) are pending too.
   */
  pendingFor(arg: unknown): number {
    let n = 0;
    for (const timer of this.#timers.values()) if (timer.arg === arg) n++;
    return n;
  }

  /** The due times of the pending timers, soonest first. */
  get dueTimes(): number[] {
    return [...this.#timers.values()].map((t) => t.due).sort((a, b) => a - b);
  }

  /**
   * Moves time forward by `ms`, running every timer that falls due on the way at its own time,
   * with a real macrotask turn after each (and one at the start).
   */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    await settle();
    while (true) {
      let first: Timer | undefined;
      for (const timer of this.#timers.values()) {
        if (timer.due <= target && (!first || timer.due < first.due)) first = timer;
      }
      if (!first) break;
      this.#timers.delete(first.id);
      this.#now = first.due;
      first.callback(first.arg);
      await settle();
    }
    this.#now = target;
    await settle();
  }
}

/** Runs `fn` with the package on a new virtual clock, and puts the system clock back after. */
export async function onVirtualClock(fn: (clock: VirtualClock) => Promise<void>): Promise<void> {
  const clock = new VirtualClock().install();
  try {
    await fn(clock);
  } finally {
    clock.uninstall();
  }
}
