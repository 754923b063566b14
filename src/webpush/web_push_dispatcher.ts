import { decodeBase64Url } from "./_base64url.ts";
import { shown, typeOf } from "./_describe.ts";
import { encryptPayload } from "./_ece.ts";
import { checkPayloadSize, encodePayload } from "./_payload.ts";
import { parseRetryAfter, readBodyStart } from "./_response.ts";
import { VapidSigner } from "./_vapid.ts";
import { parsePushSubscription, type PushSubscriptionJSON } from "./parse_push_subscription.ts";
import { WebPushError, type WebPushFailure, WebPushGoneError } from "./web_push_error.ts";

/** The VAPID identity of the application server. */
export interface VapidDetails {
  /** The public key, base64url (65-byte uncompressed P-256 point), as from `generateVapidKeys()`. */
  publicKey: string;
  /** The private key, base64url (32-byte scalar). */
  privateKey: string;
  /** How the push service can reach you: a `mailto:` or `https:` URL. */
  subject: string;
}

/** Options for {@linkcode WebPushDispatcher}. */
export interface WebPushDispatcherOptions {
  /**
   * Seconds a push service keeps a message for a user agent that is offline, unless
   * {@linkcode WebPushSendOptions.ttl} says otherwise. 0 means deliver now or never.
   *
   * @default {86400}
   */
  ttl?: number;
  /**
   * The `fetch` to send with, e.g. one that adds logging or a proxy.
   *
   * @default {globalThis.fetch}
   */
  fetch?: typeof fetch;
  /**
   * Lifetime in seconds of the VAPID token sent to each push service. RFC 8292 allows at most 24
   * hours; 5 minutes are kept back for clock skew, so the maximum is 86100.
   *
   * @default {43200}
   */
  vapidExpiration?: number;
  /**
   * The clock, in ms since the epoch: VAPID `exp` and the token cache use it.
   *
   * @default {Date.now}
   */
  now?: () => number;
  /**
   * Also send to `http:` endpoints on a loopback host, for tests against a local push service.
   * See {@linkcode ParsePushSubscriptionOptions.allowInsecureLoopback}.
   *
   * @default {false}
   */
  allowInsecureLoopback?: boolean;
}

/** [RFC 8030 §5.3] how soon the user agent should be woken for the message. */
export type WebPushUrgency = "very-low" | "low" | "normal" | "high";

/** Options for {@linkcode WebPushDispatcher.send}. */
export interface WebPushSendOptions {
  /**
   * Seconds the push service keeps the message while the user agent is offline.
   *
   * @default {the dispatcher's `ttl`}
   */
  ttl?: number;
  /**
   * The `Urgency` header; omitted when not given, which push services treat as `normal`.
   *
   * @default {undefined}
   */
  urgency?: WebPushUrgency;
  /**
   * The `Topic` header: a newer message with the same topic replaces one still undelivered. At
   * most 32 characters of the base64url alphabet.
   *
   * @default {undefined}
   */
  topic?: string;
  /**
   * Aborts the request, e.g. `AbortSignal.timeout(10_000)`.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/** Options for {@linkcode WebPushDispatcher.sendMany}. */
export interface WebPushSendManyOptions extends WebPushSendOptions {
  /**
   * Requests in flight at once.
   *
   * @default {8}
   */
  concurrency?: number;
  /**
   * Called as it happens for each subscription that failed for a reason other than being gone
   * (an invalid subscription, a 429, a 5xx, a network error, an abort). Every such failure is
   * also in the result's `failures`. If it throws, the batch goes on and that error is added to
   * `failures` as well.
   *
   * @default {console.error}
   */
  onError?: (error: unknown, subscription: PushSubscriptionJSON) => void;
}

/**
 * What {@linkcode WebPushDispatcher.sendMany} resolves with: the endpoints that are gone
 * (404/410, delete them), carrying every other failure in `failures`.
 */
export interface WebPushSendManyResult extends Array<string> {
  /**
   * The subscriptions that failed for another reason, each with its error, in the order they
   * failed; keep these subscriptions. An `onError` that threw adds its own error here too, after
   * the failure it was reporting.
   */
  failures: WebPushFailure[];
}

function reportToConsole(error: unknown, subscription: PushSubscriptionJSON): void {
  console.error(`WebPushDispatcher.sendMany: push to ${subscription?.endpoint} failed:`, error);
}

const URGENCIES = new Set(["very-low", "low", "normal", "high"]);
const TOPIC = /^[A-Za-z0-9_-]{1,32}$/;

function checkTtl(ttl: unknown, action: string): number {
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 0) {
    throw new RangeError(
      `${action}: \`ttl\` must be a non-negative integer of seconds, got \`${
        typeof ttl === "number" ? ttl : typeOf(ttl)
      }\``,
    );
  }
  return ttl;
}

/**
 * Sends Web Push messages: encrypts each payload for its subscription (RFC 8291), signs a VAPID
 * token for its push service (RFC 8292) and POSTs it (RFC 8030). WebCrypto only.
 *
 * The constructor checks the keys' form at once; whether the private key belongs to the public
 * key is checked on first use (every send then rejects if not). {@linkcode WebPushDispatcher.create}
 * checks it up front.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8030 | RFC 8030}, {@link https://www.rfc-editor.org/rfc/rfc8291 | RFC 8291}, {@link https://www.rfc-editor.org/rfc/rfc8292 | RFC 8292}
 *
 * @example Send a notification
 * Not run by the doc tests: it needs your VAPID keys, a stored subscription and a real push
 * service.
 *
 * ```ts ignore
 * import { WebPushDispatcher, WebPushGoneError } from "@flume/sse/webpush";
 *
 * const dispatcher = await WebPushDispatcher.create({
 *   publicKey: Deno.env.get("VAPID_PUBLIC_KEY")!,
 *   privateKey: Deno.env.get("VAPID_PRIVATE_KEY")!,
 *   subject: "mailto:ops@example.com",
 * });
 * const subscription = JSON.parse(await Deno.readTextFile("subscription.json"));
 * try {
 *   await dispatcher.send(subscription, { title: "Build finished", body: "main is green" });
 * } catch (error) {
 *   if (error instanceof WebPushGoneError) console.log("delete", error.endpoint);
 *   else throw error;
 * }
 * ```
 */
export class WebPushDispatcher {
  #signer: VapidSigner;
  #ttl: number;
  #fetch: typeof fetch;
  #now: () => number;
  #parseOptions: { allowInsecureLoopback: boolean };

  /**
   * Creates a dispatcher and checks that the key pair signs tokens that verify, so a wrong
   * private key fails here rather than on the first send.
   *
   * @param vapid The VAPID key pair and subject.
   * @param options Defaults for sending.
   * @returns The dispatcher, ready to send.
   *
   * @example Create a dispatcher with checked keys
   * ```ts
   * import { generateVapidKeys, WebPushDispatcher } from "@flume/sse/webpush";
   *
   * import assert from "node:assert/strict";
   *
   * const keys = await generateVapidKeys();
   * const dispatcher = await WebPushDispatcher.create({ ...keys, subject: "mailto:ops@example.com" });
   * assert.ok(dispatcher instanceof WebPushDispatcher);
   *
   * // A private key of another pair is refused here, not at the first send.
   * const other = await generateVapidKeys();
   * await assert.rejects(
   *   WebPushDispatcher.create({ ...keys, privateKey: other.privateKey, subject: "mailto:ops@example.com" }),
   *   TypeError,
   * );
   * ```
   */
  static async create(
    vapid: VapidDetails,
    options?: WebPushDispatcherOptions,
  ): Promise<WebPushDispatcher> {
    const dispatcher = new WebPushDispatcher(vapid, options);
    await dispatcher.#signer.key();
    return dispatcher;
  }

  /**
   * Creates a dispatcher. Malformed keys, a subject that is not `mailto:`/`https:` or a bad
   * option throw here; a private key that does not match the public key makes the first send
   * reject.
   *
   * @param vapid The VAPID key pair and subject.
   * @param options Defaults for sending.
   */
  constructor(vapid: VapidDetails, options: WebPushDispatcherOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#signer = new VapidSigner({
      publicKey: vapid?.publicKey,
      privateKey: vapid?.privateKey,
      subject: vapid?.subject,
      expiration: options.vapidExpiration ?? 12 * 60 * 60,
      now: this.#now,
    });
    this.#ttl = checkTtl(options.ttl ?? 86_400, "Cannot create WebPushDispatcher");
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#parseOptions = { allowInsecureLoopback: options.allowInsecureLoopback ?? false };
  }

  /**
   * Encrypts and sends one message. The payload can be a string (sent as UTF-8), bytes, any
   * JSON value (sent as JSON text, e.g. `{ title, body, icon, data }` for the service worker to
   * show), or `undefined` for a message with no payload. At most 3993 bytes once encoded.
   *
   * @param subscription The subscription, as `PushSubscription.toJSON()` gave it; it is
   *   validated first.
   * @param payload What the service worker receives as `event.data`.
   * @param options TTL, urgency, topic and an abort signal.
   * @returns Resolves when the push service has accepted the message (any 2xx, usually 201).
   * @throws {TypeError} An invalid subscription or a payload with no JSON form.
   * @throws {RangeError} A payload too large, or a bad option; nothing has been sent.
   * @throws {WebPushGoneError} 404 or 410: delete the subscription.
   * @throws {WebPushError} Any other refusal (400, 413, 429 with `retryAfter`, 5xx): keep the
   *   subscription.
   *
   * @example Send a notification object
   * Not run by the doc tests: it needs a subscription from a browser and a real push service.
   *
   * ```ts ignore
   * import type { PushSubscriptionJSON, WebPushDispatcher } from "@flume/sse/webpush";
   *
   * declare const dispatcher: WebPushDispatcher;
   * declare const subscription: PushSubscriptionJSON;
   * await dispatcher.send(subscription, { title: "New message", body: "Hi!" }, {
   *   urgency: "high",
   *   topic: "inbox",
   * });
   * ```
   */
  async send(
    subscription: PushSubscriptionJSON,
    payload: unknown,
    options: WebPushSendOptions = {},
  ): Promise<void> {
    const plaintext = encodePayload(payload);
    checkPayloadSize(plaintext);
    await this.#send(subscription, plaintext, this.#headers(options), options.signal);
  }

  /**
   * Sends one payload to many subscriptions, a few at a time, and resolves with the endpoints
   * that are gone (404/410) so you can delete them. Other failures never stop the batch and are
   * never dropped: each is reported as it happens, to `options.onError` or else to
   * `console.error`, and all of them are in the result's `failures`. Only misuse found before any
   * request (a bad option, a payload too large) rejects.
   *
   * @param subscriptions The subscriptions to send to.
   * @param payload As for {@linkcode WebPushDispatcher.send}; encoded and size-checked once,
   *   before any request.
   * @param options Send options for every message, plus `concurrency` and `onError`.
   * @returns The endpoints that are gone, with a `failures` property holding every other failure.
   * @throws {TypeError} A payload with no JSON form, or a bad `urgency` or `topic`.
   * @throws {RangeError} A payload too large, or a bad `ttl` or `concurrency`; nothing has been
   *   sent.
   *
   * @example Notify everyone and prune
   * Not run by the doc tests: it needs subscriptions from browsers and a real push service.
   *
   * ```ts ignore
   * import type { PushSubscriptionJSON, WebPushDispatcher } from "@flume/sse/webpush";
   *
   * declare const dispatcher: WebPushDispatcher;
   * declare const subscriptions: PushSubscriptionJSON[];
   * const gone = await dispatcher.sendMany(subscriptions, { title: "Deploy done" }, {
   *   concurrency: 16,
   *   onError: (error, sub) => console.warn(`push to ${sub.endpoint} failed`, error),
   * });
   * console.log("delete", gone, "keep, but retry later", gone.failures.length);
   * ```
   */
  async sendMany(
    subscriptions: readonly PushSubscriptionJSON[],
    payload: unknown,
    options: WebPushSendManyOptions = {},
  ): Promise<WebPushSendManyResult> {
    const concurrency = options.concurrency ?? 8;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(
        `Cannot send push messages: \`concurrency\` must be a positive integer, got \`${concurrency}\``,
      );
    }
    const plaintext = encodePayload(payload);
    checkPayloadSize(plaintext);
    const headers = this.#headers(options);
    const { signal } = options;
    const report = options.onError ?? reportToConsole;

    const gone: string[] = [];
    const failures: WebPushFailure[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < subscriptions.length) {
        const subscription = subscriptions[next++]!;
        try {
          signal?.throwIfAborted();
          await this.#send(subscription, plaintext, headers, signal);
        } catch (error) {
          if (error instanceof WebPushGoneError) {
            gone.push(error.endpoint);
          } else {
            failures.push({ subscription, error });
            try {
              report(error, subscription);
            } catch (callbackError) {
              // A throwing callback must not stop the other workers, and its error is news too.
              failures.push({ subscription, error: callbackError });
            }
          }
        }
      }
    };
    const workers = Math.min(concurrency, subscriptions.length);
    await Promise.all(Array.from({ length: workers }, worker));
    return Object.assign(gone, { failures });
  }

  #headers(options: WebPushSendOptions): Headers {
    const action = "Cannot send push message";
    const ttl = checkTtl(options.ttl ?? this.#ttl, action);
    // [RFC 8030 §5.2] TTL is required
    const headers = new Headers({ TTL: String(ttl) });
    if (options.urgency !== undefined) {
      if (!URGENCIES.has(options.urgency)) {
        throw new TypeError(
          `${action}: \`urgency\` must be very-low, low, normal or high, got \`${
            shown(String(options.urgency))
          }\``,
        );
      }
      headers.set("Urgency", options.urgency);
    }
    if (options.topic !== undefined) {
      // [RFC 8030 §5.4] at most 32 characters of the URL-safe base64 alphabet
      if (!TOPIC.test(options.topic)) {
        throw new TypeError(
          `${action}: \`topic\` must be 1 to 32 characters of A-Z a-z 0-9 - _, got \`${
            shown(String(options.topic))
          }\``,
        );
      }
      headers.set("Topic", options.topic);
    }
    return headers;
  }

  async #send(
    input: PushSubscriptionJSON,
    plaintext: Uint8Array | undefined,
    baseHeaders: Headers,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const subscription = parsePushSubscription(input, this.#parseOptions);
    const endpoint = new URL(subscription.endpoint);
    const headers = new Headers(baseHeaders);
    // [RFC 8292 §2] aud is the origin of this endpoint's push service, never another's
    headers.set("Authorization", await this.#signer.authorization(endpoint.origin));
    let body: Uint8Array<ArrayBuffer> | null = null;
    if (plaintext !== undefined) {
      body = await encryptPayload(
        plaintext,
        decodeBase64Url(subscription.keys.p256dh)!,
        decodeBase64Url(subscription.keys.auth)!,
      );
      // [RFC 8291 §4] the aes128gcm content coding
      headers.set("Content-Encoding", "aes128gcm");
      headers.set("Content-Type", "application/octet-stream");
    }
    const response = await this.#fetch(subscription.endpoint, {
      method: "POST",
      headers,
      body,
      signal: signal ?? null,
      // A push service does not redirect; following one would resend the message elsewhere.
      redirect: "manual",
    });
    if (response.status >= 200 && response.status < 300) {
      await response.body?.cancel();
      return;
    }
    const text = await readBodyStart(response);
    const options = {
      status: response.status,
      endpoint: subscription.endpoint,
      body: text,
      retryAfter: parseRetryAfter(response.headers.get("Retry-After"), this.#now()),
    };
    // [RFC 8030 §7.3] only 404 and 410 say the subscription is no more
    if (response.status === 404 || response.status === 410) {
      throw new WebPushGoneError(
        `Cannot send push message: \`${endpoint.origin}\` answered ${response.status}, the subscription is gone`,
        options,
      );
    }
    throw new WebPushError(
      `Cannot send push message: \`${endpoint.origin}\` answered ${response.status}` +
        (text === "" ? "" : `: ${text.slice(0, 200)}`),
      options,
    );
  }
}
