/**
 * The one clock of the package: every timer and every reading of "now" in `EventStream`, the
 * broker, the Redis bridge and the client goes through {@linkcode clock}, so that tests can run
 * them on a virtual clock and assert exact schedules instead of wall-clock windows.
 *
 * It is an object whose methods a test replaces (and restores) as a whole; nothing in the
 * package replaces them. Timers take the callback's argument after the delay so that a hot path
 * can pass a shared function and its target instead of making a closure per call.
 * @module
 */

/** An opaque timer handle. */
export type TimerHandle = unknown;

/** Timers and a monotonic "now" in ms. */
export interface Clock {
  /** Milliseconds since an arbitrary origin; never goes back. */
  now(): number;
  /** Calls `callback(arg)` once after `ms`. */
  setTimeout<T>(callback: (arg: T) => void, ms: number, arg: T): TimerHandle;
  /** Cancels a timer; `undefined` and a timer that already ran are ignored. */
  clearTimeout(handle: TimerHandle | undefined): void;
}

/** The runtime's own clock. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (callback, ms, arg) => setTimeout(callback, ms, arg),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout> | undefined),
};

/** The clock in use: the system's, unless a test has swapped in a virtual one. */
export const clock: Clock = { ...systemClock };

/**
 * Swaps the clock in use for another until the returned function is called.
 * @returns A function that restores the system clock.
 */
export function useClock(replacement: Clock): () => void {
  // Bound wrappers, not `Object.assign(clock, replacement)`: a class instance keeps its methods
  // on its prototype, which `Object.assign` does not copy.
  Object.assign(
    clock,
    {
      now: () => replacement.now(),
      setTimeout: (callback, ms, arg) => replacement.setTimeout(callback, ms, arg),
      clearTimeout: (handle) => replacement.clearTimeout(handle),
    } satisfies Clock,
  );
  return () => void Object.assign(clock, systemClock);
}
