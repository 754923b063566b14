/** Resolved backoff settings (every field set). */
export interface Backoff {
  initial: number;
  max: number;
  factor: number;
  jitter: number;
}

/**
 * The wait before reconnect number `attempt` of a failure streak.
 *
 * [spec] The first reconnect waits exactly the reconnection time (the server's `retry:`, or the
 * initial delay), as `EventSource` does. Only repeated failures grow the wait, by `factor` per
 * attempt up to `max`, and jitter takes a random share of up to `jitter` off it so that clients
 * cut off together do not come back together. The wait never drops below the reconnection time:
 * a server's `retry:` is a floor, even above `max`.
 *
 * @param attempt 1 for the first reconnect of a streak.
 * @param reconnectionTime The current reconnection time in ms.
 * @param backoff The settings.
 * @param random A source of numbers in [0, 1).
 * @returns The delay in ms.
 */
export function backoffDelay(
  attempt: number,
  reconnectionTime: number,
  backoff: Backoff,
  random: () => number = Math.random,
): number {
  if (attempt <= 1) return reconnectionTime;
  // A `retry: 0` server would otherwise be hammered in a loop while it is down.
  const base = Math.max(reconnectionTime, 1);
  const grown = Math.min(backoff.max, base * backoff.factor ** (attempt - 1));
  const jittered = Math.round(grown - grown * backoff.jitter * random());
  return Math.max(reconnectionTime, jittered);
}
