/**
 * The signal to watch for a client that goes away, or undefined where the body's `cancel()`
 * already sees it and the signal only costs.
 *
 * Deno.serve aborts `request.signal` also after a successful response and prints a warning
 * about that legacy behaviour to anyone who listens, while the body's `cancel()` reliably sees
 * a disconnect there. Bun.serve fires `cancel()` on a disconnect too (the suite checks it on
 * every run), and its `request.signal` is made on first read and costs about 0.6 KiB per idle
 * connection; on a Bun release where `cancel()` does not fire, the heartbeat and `writeTimeout`
 * still end a stream whose bytes stop being taken (docs/operations.md). Elsewhere (Node through
 * `@flume/sse/node`, workerd) the signal is a second source.
 */
export function requestSignal(request: Request): AbortSignal | undefined {
  return "Deno" in globalThis || "Bun" in globalThis ? undefined : request.signal;
}
