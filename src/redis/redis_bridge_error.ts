/**
 * Why the Redis bridge failed:
 * - `"unavailable"`: Redis is unreachable (or answered with an error), so the event was not
 *   published; no worker, this one included, delivered it.
 * - `"timeout"`: Redis did not answer, or the event did not come back on the subscription, in
 *   time. The event may have reached other workers.
 * - `"closed"`: the bridge (its broker) is closed.
 * - `"malformed"`: a message on the bridge's Redis channel that it did not write, or that Redis
 *   does not confirm (a forged sequence jump or epoch); skipped, never delivered.
 * - `"lost"`: this worker missed events it cannot fetch any more (Redis lost its data, or they
 *   fell out of the heal log); its clients got the gap signal on their open streams.
 */
export type RedisBridgeErrorReason = "unavailable" | "timeout" | "closed" | "malformed" | "lost";

/** Options of {@linkcode RedisBridgeError}. */
export interface RedisBridgeErrorOptions extends ErrorOptions {
  /** What went wrong, for callers that branch on it. */
  reason: RedisBridgeErrorReason;
  /**
   * The underlying error (the Redis client's), if any.
   *
   * @default {undefined}
   */
  cause?: unknown;
}

/**
 * A failure of the Redis bridge: what `publish()` rejects with when Redis is unreachable, and
 * what the bridge's `onError` gets for what has no caller (a malformed message, missed events).
 *
 * @example Tell an outage apart from a bad event
 * ```ts
 * import assert from "node:assert/strict";
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
 *
 * const down = new RedisBridgeError("Cannot publish event: Redis is unreachable", {
 *   reason: "unavailable",
 * });
 * assert.equal(await publishOrQueue(() => Promise.reject(down)), false);
 * assert.equal(await publishOrQueue(() => Promise.resolve()), true);
 * assert.equal(down.name, "RedisBridgeError");
 * ```
 */
export class RedisBridgeError extends Error {
  /** Always `"RedisBridgeError"`. */
  override name: string = "RedisBridgeError";
  /** What went wrong, for callers that branch on it. */
  readonly reason: RedisBridgeErrorReason;

  /**
   * Creates the error.
   * @param message What failed and why.
   * @param options The reason, and the underlying error if any.
   */
  constructor(message: string, options: RedisBridgeErrorOptions) {
    // Error takes `cause` from the options only when it is there: no `cause: undefined`.
    super(message, options);
    this.reason = options.reason;
  }
}
