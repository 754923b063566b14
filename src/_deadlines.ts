/**
 * One timer for the heartbeat and write-timeout deadlines of every stream, instead of one timer
 * per stream: a binary min-heap of due times per clock, whose earliest entry holds the only
 * timer. An idle connection then costs two array slots here rather than a runtime timer (about
 * 0.25 KiB each on Bun), and setting, moving or removing a deadline is O(log n).
 *
 * A heap belongs to the clock that was in use when it was made (a test's virtual clock gets its
 * own), so that due times of different clocks never meet in one heap.
 * @module
 */

import { clock, type TimerHandle } from "./_clock.ts";

/** The method the heap calls on an entry whose deadline has come (it may set a new one). */
export const onDeadline: unique symbol = Symbol("flume.onDeadline");
/** Where an entry's index in its heap is kept: -1 when it has no deadline. */
export const deadlineSlot: unique symbol = Symbol("flume.deadlineSlot");

/** An object with at most one deadline. */
export interface Deadlined {
  [deadlineSlot]: number;
  [onDeadline](): void;
}

/** The deadlines of one clock. */
export class Deadlines {
  /** Entries and their due times, as a binary min-heap on `#dues`. */
  #items: Deadlined[] = [];
  #dues: number[] = [];
  #timer: TimerHandle | undefined;
  #timerDue = Infinity;
  /** Deadlines are being run: the timer is set once, after. */
  #running = false;
  readonly #now: () => number;
  readonly #setTimeout: typeof clock.setTimeout;
  readonly #clearTimeout: typeof clock.clearTimeout;

  constructor() {
    this.#now = clock.now;
    this.#setTimeout = clock.setTimeout;
    this.#clearTimeout = clock.clearTimeout;
  }

  /** The deadlines pending: for tests. */
  get size(): number {
    return this.#items.length;
  }

  /** Sets (or moves) `item`'s deadline to `due`, a time of this heap's clock. */
  set(item: Deadlined, due: number): void {
    let at = item[deadlineSlot];
    if (at < 0) {
      at = this.#items.length;
      this.#items.push(item);
      this.#dues.push(due);
      item[deadlineSlot] = at;
    } else {
      this.#dues[at] = due;
    }
    this.#down(this.#up(at));
    this.#arm();
  }

  /** Removes `item`'s deadline, if it has one. */
  delete(item: Deadlined): void {
    const at = item[deadlineSlot];
    if (at < 0) return;
    item[deadlineSlot] = -1;
    const lastItem = this.#items.pop()!;
    const lastDue = this.#dues.pop()!;
    if (at < this.#items.length) {
      this.#items[at] = lastItem;
      this.#dues[at] = lastDue;
      lastItem[deadlineSlot] = at;
      this.#down(this.#up(at));
    }
    this.#arm();
  }

  #up(at: number): number {
    const items = this.#items;
    const dues = this.#dues;
    const item = items[at]!;
    const due = dues[at]!;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (dues[parent]! <= due) break;
      items[at] = items[parent]!;
      dues[at] = dues[parent]!;
      items[at]![deadlineSlot] = at;
      at = parent;
    }
    items[at] = item;
    dues[at] = due;
    item[deadlineSlot] = at;
    return at;
  }

  #down(at: number): void {
    const items = this.#items;
    const dues = this.#dues;
    const length = items.length;
    const item = items[at]!;
    const due = dues[at]!;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= length) break;
      if (child + 1 < length && dues[child + 1]! < dues[child]!) child++;
      if (dues[child]! >= due) break;
      items[at] = items[child]!;
      dues[at] = dues[child]!;
      items[at]![deadlineSlot] = at;
      at = child;
    }
    items[at] = item;
    dues[at] = due;
    item[deadlineSlot] = at;
  }

  /** Keeps the one timer on the earliest deadline. */
  #arm(): void {
    if (this.#running) return;
    const first = this.#dues[0] ?? Infinity;
    if (first === this.#timerDue) return;
    this.#clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerDue = first;
    if (first === Infinity) return;
    this.#timer = this.#setTimeout(Deadlines.#fire, Math.max(0, first - this.#now()), this);
  }

  /** A shared function and the heap as its argument: no closure per timer. */
  static #fire(heap: Deadlines): void {
    heap.#run();
  }

  #run(): void {
    this.#timer = undefined;
    this.#timerDue = Infinity;
    const now = this.#now();
    this.#running = true;
    // A runtime timer may fire a fraction of a ms early by `now()`: what is not due yet waits
    // for the next timer. An entry sets its next deadline later than now, so this ends.
    while (this.#items.length > 0 && this.#dues[0]! <= now) {
      const item = this.#items[0]!;
      this.delete(item);
      try {
        item[onDeadline]();
      } catch (error) {
        // Not the others' problem: theirs still run, and this one is reported as a timer's is.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
    this.#running = false;
    this.#arm();
  }
}

/** One heap per clock, found by the clock's `now` function (a swap installs new functions). */
const heaps = new WeakMap<object, Deadlines>();

/** The deadlines of the clock in use now. */
export function deadlines(): Deadlines {
  let heap = heaps.get(clock.now);
  if (heap === undefined) heaps.set(clock.now, heap = new Deadlines());
  return heap;
}
