/**
 * Waits `ms`, or less if `signal` aborts first.
 *
 * It resolves instead of rejecting on abort so that a reconnect loop can end quietly, and it
 * removes its abort listener on both paths: a long-lived signal must not collect one listener per
 * reconnect.
 *
 * @param ms How long to wait.
 * @param signal Ends the wait early.
 * @returns `true` when the time elapsed, `false` when the signal aborted.
 */
export function abortableDelay(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
