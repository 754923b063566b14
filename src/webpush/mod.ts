/**
 * Web Push for `@flume/sse`: notifications that reach a user when no page is open, so no SSE
 * stream can. WebCrypto only, no dependencies, on Deno, Bun and edge runtimes.
 *
 * - {@linkcode WebPushDispatcher} encrypts messages (RFC 8291, `aes128gcm`), signs VAPID tokens
 *   (RFC 8292) and sends them (RFC 8030), one or many at a time.
 * - {@linkcode parsePushSubscription} validates what the browser's `PushSubscription.toJSON()`
 *   sent you.
 * - {@linkcode generateVapidKeys} makes the key pair the browser subscribes with.
 * - {@linkcode PushFallback} sends an event over SSE when the user has a page open, and by Web
 *   Push when not.
 * - {@linkcode WebPushGoneError} (404/410) says to delete a subscription; a
 *   {@linkcode WebPushError} of any other status says to keep it.
 *
 * This module is separate from the core: importing `@flume/sse` never loads it.
 *
 * @example Send a notification and prune gone subscriptions
 * ```ts ignore
 * import { parsePushSubscription, WebPushDispatcher } from "@flume/sse/webpush";
 *
 * const dispatcher = await WebPushDispatcher.create({
 *   publicKey: Deno.env.get("VAPID_PUBLIC_KEY")!,
 *   privateKey: Deno.env.get("VAPID_PRIVATE_KEY")!,
 *   subject: "mailto:ops@example.com",
 * });
 * const subscriptions = [parsePushSubscription(JSON.parse(await Deno.readTextFile("sub.json")))];
 * const gone = await dispatcher.sendMany(subscriptions, {
 *   title: "Build finished",
 *   body: "main is green",
 * });
 * console.log("delete", gone, "failed", gone.failures);
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
