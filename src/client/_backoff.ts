/** Resolved backoff settings (every field set). */
export interface Backoff {
  initial: number;
  max: number;
  factor: number;
  jitter: number;
  resetAfter: number;
}

/**
 * The longest timer the runtimes keep: a longer `setTimeout` overflows and fires after 1 ms,
 * which would turn a "wait for ages" into a reconnect loop.
 */
export const MAX_TIMEOUT = 2_147_483_647;

/**
 * The largest server `retry:` honoured, in ms (one hour); a larger one counts as one hour. A
 * server that asks for more wants its clients gone for a long time; an hour keeps that wish
 * while a client still comes back the same day, and keeps every jittered wait far below
 * {@linkcode MAX_TIMEOUT}.
 */
export const MAX_RETRY = 3_600_000;

/** A server's `retry:` as the client uses it: clamped to {@linkcode MAX_RETRY}. */
export function clampRetry(ms: number): number {
  return Math.min(ms, MAX_RETRY);
}

/**
 * The wait before reconnect number `attempt` of a streak.
 *
 * The streak counts connections that failed or ended within `resetAfter` of opening. The first
 * reconnect of a streak waits the reconnection time (the server's `retry:`, or `initial`), as
 * `EventSource` does. Each further one grows the wait by `factor`, from the reconnection time or
 * from `initial` if that is longer (so a `retry: 0` server that drops every connection is not
 * hammered), up to `max`, or up to the reconnection time if that is longer (a server's wish to be
 * left alone is kept). Then every wait, the first included, is jittered: spread evenly over
 * `wait ± wait × jitter`, so its mean stays the wait and clients cut off together come back
 * spread out instead of in one burst ("full jitter" at the default `jitter` of 1).
 *
 * @param attempt 1 for the first reconnect of a streak.
 * @param reconnectionTime The current reconnection time in ms.
 * @param backoff The settings.
 * @param random A source of numbers in [0, 1).
 * @returns The delay in ms, a whole number from 0 to {@linkcode MAX_TIMEOUT}.
 */
export function backoffDelay(
  attempt: number,
  reconnectionTime: number,
  backoff: Backoff,
  random: () => number = Math.random,
): number {
  let wait = reconnectionTime;
  if (attempt > 1) {
    const ceiling = Math.max(backoff.max, reconnectionTime);
    const base = Math.max(reconnectionTime, backoff.initial);
    wait = Math.min(ceiling, base * backoff.factor ** (attempt - 1));
  }
  const jittered = Math.round(wait * (1 + backoff.jitter * (2 * random() - 1)));
  return Math.min(MAX_TIMEOUT, Math.max(0, jittered));
}
