import { clock } from "../_clock.ts";
import { MAX_TIMEOUT } from "./_backoff.ts";

/**
 * Waits `ms` on the package clock, or less if `signal` aborts first.
 *
 * It resolves instead of rejecting on abort so that a reconnect loop can end quietly, and it
 * removes its abort listener on both paths: a long-lived signal must not collect one listener per
 * reconnect. A wait above {@linkcode MAX_TIMEOUT} is cut to it: a longer timer would overflow and
 * fire at once.
 *
 * @param ms How long to wait.
 * @param signal Ends the wait early.
 * @returns `true` when the time elapsed, `false` when the signal aborted.
 */
export function abortableDelay(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clock.clearTimeout(timer);
      resolve(false);
    };
    const timer = clock.setTimeout(
      () => {
        signal.removeEventListener("abort", onAbort);
        resolve(true);
      },
      Math.min(ms, MAX_TIMEOUT),
      undefined,
    );
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
