/**
 * Why the Redis bridge failed:
 * - `"unavailable"`: Redis is unreachable (or answered with an error), so the event was not
 *   published; no worker, this one included, delivered it.
 * - `"timeout"`: Redis did not answer, or the event did not come back on the subscription, in
 *   time. The event may have reached other workers.
 * - `"closed"`: the bridge (its broker) is closed.
 * - `"malformed"`: a message on the bridge's Redis channel that it did not write; skipped.
 * - `"lost"`: this worker missed events (its subscription dropped, or Redis lost its data);
 *   its clients were disconnected so that they resume from their `Last-Event-ID`.
 */
export type RedisBridgeErrorReason = "unavailable" | "timeout" | "closed" | "malformed" | "lost";

/**
 * A failure of the Redis bridge: what `publish()` rejects with when Redis is unreachable, and
 * what the bridge's `onError` gets for what has no caller (a malformed message, missed events).
 *
 * @example Tell an outage apart from a bad event
 * ```ts
 * import { RedisBridgeError } from "@flume/sse/redis";
 *
 * async function publishOrQueue(publish: () => Promise<void>): Promise<boolean> {
 *   try {
 *     await publish();
 *     return true;
 *   } catch (error) {
 *     if (error instanceof RedisBridgeError && error.reason === "unavailable") return false;
 *     throw error;
 *   }
 * }
 * ```
 */
export class RedisBridgeError extends Error {
  /** What went wrong, for callers that branch on it. */
  readonly reason: RedisBridgeErrorReason;

  /**
   * Creates the error.
   * @param reason What went wrong.
   * @param message The message.
   * @param options The underlying error, if any.
   */
  constructor(reason: RedisBridgeErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RedisBridgeError";
    this.reason = reason;
  }
}
