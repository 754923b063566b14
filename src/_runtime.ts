/**
 * The signal to watch for a client that goes away, or undefined where watching it does harm.
 *
 * Deno.serve aborts `request.signal` also after a successful response and prints a warning
 * about that legacy behaviour to anyone who listens, while the body's `cancel()` reliably sees
 * a disconnect there. Bun has had releases where `cancel()` did not fire, so there the signal
 * is a second source.
 */
export function requestSignal(request: Request): AbortSignal | undefined {
  return "Deno" in globalThis ? undefined : request.signal;
}
