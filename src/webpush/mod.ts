/**
 * Web Push for `@flume/sse`: notifications that reach a user when no page is open, so no SSE
 * stream can. WebCrypto only, no dependencies, on Deno, Bun and edge runtimes.
 *
 * - {@linkcode WebPushDispatcher} encrypts messages (RFC 8291, `aes128gcm`), signs VAPID tokens
 *   (RFC 8292) and sends them (RFC 8030), one or many at a time.
 * - {@linkcode parsePushSubscription} validates what the browser's `PushSubscription.toJSON()`
 *   sent you.
 * - {@linkcode generateVapidKeys} makes the key pair the browser subscribes with: make it once
 *   and keep it.
 * - {@linkcode PushFallback} sends an event over SSE when the user has a page open, and by Web
 *   Push when not.
 * - {@linkcode WebPushGoneError} (404/410) says to delete a subscription; a
 *   {@linkcode WebPushError} of any other status says to keep it.
 *
 * This module is separate from the core: importing `@flume/sse` never loads it.
 *
 * @example Send a notification, and learn that a subscription is gone
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   generateVapidKeys,
 *   parsePushSubscription,
 *   WebPushDispatcher,
 *   WebPushGoneError,
 * } from "@flume/sse/webpush";
 *
 * // A browser's subscription, made here with WebCrypto: a P-256 key and a 16-byte secret.
 * const base64url = (bytes: Uint8Array) =>
 *   btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
 *     .replace(/=+$/, "");
 * const browserKey = await crypto.subtle.generateKey(
 *   { name: "ECDH", namedCurve: "P-256" },
 *   true,
 *   ["deriveBits"],
 * );
 * const subscription = parsePushSubscription({
 *   endpoint: "https://push.example.net/send/abc",
 *   expirationTime: null,
 *   keys: {
 *     p256dh: base64url(new Uint8Array(await crypto.subtle.exportKey("raw", browserKey.publicKey))),
 *     auth: base64url(crypto.getRandomValues(new Uint8Array(16))),
 *   },
 * });
 *
 * // A stand-in for the push service: it records each request and answers 201, then 410.
 * const requests: Request[] = [];
 * const statuses = [201, 410];
 * const dispatcher = await WebPushDispatcher.create(
 *   { ...(await generateVapidKeys()), subject: "mailto:ops@example.com" },
 *   {
 *     fetch: (input, init) => {
 *       requests.push(new Request(input, init));
 *       return Promise.resolve(new Response(null, { status: statuses.shift() ?? 500 }));
 *     },
 *   },
 * );
 *
 * await dispatcher.send(subscription, { title: "Build finished" }, { urgency: "high" });
 * assert.equal(requests[0]!.url, subscription.endpoint);
 * assert.equal(requests[0]!.headers.get("content-encoding"), "aes128gcm");
 * assert.match(requests[0]!.headers.get("authorization")!, /^vapid t=\S+, k=\S+$/);
 *
 * // 410: the user unsubscribed; delete the subscription.
 * await assert.rejects(dispatcher.send(subscription, "again"), WebPushGoneError);
 * ```
 *
 * @module
 */

export { generateVapidKeys, type VapidKeys } from "./generate_vapid_keys.ts";
export {
  parsePushSubscription,
  type ParsePushSubscriptionOptions,
  type PushSubscriptionJSON,
} from "./parse_push_subscription.ts";
export {
  type LiveChannels,
  type PushEnvelope,
  PushFallback,
  type PushFallbackDeliverOptions,
  type PushFallbackResult,
} from "./push_fallback.ts";
export {
  type VapidDetails,
  WebPushDispatcher,
  type WebPushDispatcherOptions,
  type WebPushSendManyOptions,
  type WebPushSendManyResult,
  type WebPushSendOptions,
  type WebPushUrgency,
} from "./web_push_dispatcher.ts";
export {
  WebPushError,
  type WebPushErrorOptions,
  type WebPushFailure,
  WebPushGoneError,
} from "./web_push_error.ts";
