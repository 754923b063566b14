import type { PushSubscriptionJSON } from "./parse_push_subscription.ts";

/** Options for {@linkcode WebPushError} and {@linkcode WebPushGoneError}. */
export interface WebPushErrorOptions extends ErrorOptions {
  /** The HTTP status the push service answered. */
  status: number;
  /** The subscription endpoint the message was sent to. */
  endpoint: string;
  /**
   * The start of the response body, as text: push services explain refusals there.
   *
   * @default {""}
   */
  body?: string;
  /**
   * Seconds to wait before trying again, from the `Retry-After` header (a 429 or 503 usually
   * carries one).
   *
   * @default {undefined}
   */
  retryAfter?: number | undefined;
  /**
   * The underlying cause, if any.
   *
   * @default {undefined}
   */
  cause?: unknown;
}

/**
 * A push service refused a message. The subscription may still be valid: only a
 * {@linkcode WebPushGoneError} means it should be deleted.
 *
 * @example Retry later on 429
 * ```ts
 * import assert from "node:assert/strict";
 * import { WebPushError, WebPushGoneError } from "@flume/sse/webpush";
 *
 * // What `send()` throws when a push service answers 429 with `Retry-After: 30`:
 * const error: unknown = new WebPushError(
 *   "Cannot send push message: `https://push.example.net` answered 429",
 *   { status: 429, endpoint: "https://push.example.net/abc", retryAfter: 30 },
 * );
 * assert.ok(error instanceof WebPushError && !(error instanceof WebPushGoneError));
 * assert.equal(error.name, "WebPushError");
 * assert.equal(error.status, 429);
 * assert.equal(error.retryAfter, 30); // keep the subscription, try again in 30 s
 * assert.equal(error.body, "");
 * ```
 */
export class WebPushError extends Error {
  /** Always `"WebPushError"`. */
  override name: string = "WebPushError";
  /** The HTTP status the push service answered. */
  readonly status: number;
  /** The subscription endpoint the message was sent to. */
  readonly endpoint: string;
  /** The start of the response body, as text. */
  readonly body: string;
  /** Seconds to wait before trying again, when the push service said so. */
  readonly retryAfter: number | undefined;

  /**
   * Creates the error.
   *
   * @param message What failed and why.
   * @param options Status, endpoint, response text and retry delay.
   */
  constructor(message: string, options: WebPushErrorOptions) {
    // `options` whole: Error reads `cause` from it, and sets none when it has none.
    super(message, options);
    this.status = options.status;
    this.endpoint = options.endpoint;
    this.body = options.body ?? "";
    this.retryAfter = options.retryAfter;
  }
}

/**
 * The push service answered 404 or 410: the subscription has expired or was unsubscribed, and
 * should be deleted. No other status means that.
 *
 * @example Delete a gone subscription
 * ```ts
 * import assert from "node:assert/strict";
 * import { WebPushError, WebPushGoneError } from "@flume/sse/webpush";
 *
 * // What `send()` throws when a push service answers 410:
 * const error: unknown = new WebPushGoneError(
 *   "Cannot send push message: `https://push.example.net` answered 410, the subscription is gone",
 *   { status: 410, endpoint: "https://push.example.net/abc" },
 * );
 * assert.ok(error instanceof WebPushGoneError && error instanceof WebPushError);
 * assert.equal(error.name, "WebPushGoneError");
 * assert.equal(error.endpoint, "https://push.example.net/abc"); // delete this subscription
 * ```
 */
export class WebPushGoneError extends WebPushError {
  /** Always `"WebPushGoneError"`. */
  override name: string = "WebPushGoneError";
}

/** One subscription that `WebPushDispatcher.sendMany()` could not deliver to, though not gone. */
export interface WebPushFailure {
  /** The subscription, as it was passed in. */
  subscription: PushSubscriptionJSON;
  /**
   * Why: a {@linkcode WebPushError}, a `TypeError` for an invalid subscription, a network error,
   * the signal's abort reason, or what a throwing `onError` threw.
   */
  error: unknown;
}
