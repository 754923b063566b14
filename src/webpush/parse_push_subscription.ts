import { decodeBase64Url } from "./_base64url.ts";
import { shown, typeOf } from "./_describe.ts";
import { isP256Point } from "./_p256.ts";

/**
 * A push subscription exactly as the browser's `PushSubscription.toJSON()` emits it: store it as
 * JSON and hand it back to {@linkcode WebPushDispatcher.send}.
 */
export interface PushSubscriptionJSON {
  /** The push service URL that messages for this subscription are POSTed to. */
  endpoint: string;
  /** When the subscription expires, in ms since the epoch; `null` (the usual value) if never. */
  expirationTime?: number | null;
  /** The user agent's keys, base64url. */
  keys: {
    /** The user agent's ECDH public key: an uncompressed P-256 point (65 bytes). */
    p256dh: string;
    /** The authentication secret (16 bytes). */
    auth: string;
  };
}

/** Options for {@linkcode parsePushSubscription}. */
export interface ParsePushSubscriptionOptions {
  /**
   * Also accept `http:` endpoints on a loopback host (`localhost`, `127.0.0.1`, `[::1]`), for
   * tests against a local push service. Never turn it on for subscriptions that arrive from
   * browsers: real push services are always `https:`, and a loopback endpoint would let a client
   * make your server POST to itself.
   *
   * @default {false}
   */
  allowInsecureLoopback?: boolean;
}

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

function fail(detail: string): never {
  throw new TypeError(`Cannot parse push subscription: ${detail}`);
}

function parseKey(keys: Record<string, unknown>, name: "p256dh" | "auth"): Uint8Array {
  const text = keys[name];
  if (typeof text !== "string") fail(`\`keys.${name}\` must be a string, got \`${typeOf(text)}\``);
  const bytes = decodeBase64Url(text);
  if (bytes === undefined) {
    // `auth` is the subscription's secret: its messages never show it.
    fail(`\`keys.${name}\` must be base64url${name === "auth" ? "" : `, got \`${shown(text)}\``}`);
  }
  return bytes;
}

/**
 * Validates a push subscription (for example the JSON body a browser POSTed) and returns a
 * normalized copy: `{ endpoint, expirationTime, keys: { p256dh, auth } }`, other fields dropped.
 *
 * It checks everything that can be checked without sending: the endpoint is an `https:` URL,
 * both keys are base64url, `p256dh` is a 65-byte point on the P-256 curve and `auth` is 16
 * bytes.
 *
 * @param value The parsed JSON to check.
 * @param options Whether to accept loopback `http:` endpoints.
 * @returns The subscription, normalized.
 * @throws {TypeError} When the value is not a valid subscription; the message says why.
 *
 * @example Accept a subscription from the browser
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePushSubscription } from "@flume/sse/webpush";
 *
 * async function subscribe(request: Request): Promise<Response> {
 *   try {
 *     const subscription = parsePushSubscription(await request.json());
 *     console.log("store", subscription.endpoint);
 *     return new Response(null, { status: 201 });
 *   } catch (error) {
 *     return new Response(String(error), { status: 400 });
 *   }
 * }
 *
 * const post = (body: unknown) =>
 *   subscribe(new Request("https://app.example/subscribe", {
 *     method: "POST",
 *     body: JSON.stringify(body),
 *   }));
 * const bad = await post({ endpoint: "http://push.example.net/1", keys: {} });
 * assert.equal(bad.status, 400);
 * assert.equal(
 *   await bad.text(),
 *   "TypeError: Cannot parse push subscription: `endpoint` must be an https: URL, got `http://push.example.net/1`",
 * );
 * ```
 */
export function parsePushSubscription(
  value: unknown,
  options: ParsePushSubscriptionOptions = {},
): PushSubscriptionJSON {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(`the subscription must be an object, got \`${typeOf(value)}\``);
  }
  const { endpoint, expirationTime, keys } = value as Record<string, unknown>;

  if (typeof endpoint !== "string") {
    fail(`\`endpoint\` must be a string, got \`${typeOf(endpoint)}\``);
  }
  if (!URL.canParse(endpoint)) fail(`\`endpoint\` must be a URL, got \`${shown(endpoint)}\``);
  const url = new URL(endpoint);
  const loopback = url.protocol === "http:" && LOOPBACK_HOSTS.has(url.hostname) &&
    options.allowInsecureLoopback === true;
  if (url.protocol !== "https:" && !loopback) {
    fail(`\`endpoint\` must be an https: URL, got \`${shown(endpoint)}\``);
  }

  if (
    expirationTime !== undefined && expirationTime !== null &&
    !(typeof expirationTime === "number" && Number.isFinite(expirationTime))
  ) {
    const got = typeof expirationTime === "number"
      ? String(expirationTime)
      : typeOf(expirationTime);
    fail(`\`expirationTime\` must be a finite number or null, got \`${got}\``);
  }

  if (typeof keys !== "object" || keys === null || Array.isArray(keys)) {
    fail(`\`keys\` must be an object, got \`${typeOf(keys)}\``);
  }
  const record = keys as Record<string, unknown>;
  const p256dh = parseKey(record, "p256dh");
  const auth = parseKey(record, "auth");
  if (p256dh.length !== 65) {
    fail(
      `\`keys.p256dh\` must be 65 bytes (an uncompressed P-256 point), got ${p256dh.length} bytes`,
    );
  }
  if (!isP256Point(p256dh)) {
    fail(
      `\`keys.p256dh\` must be a point on the P-256 curve, got \`${shown(String(record.p256dh))}\``,
    );
  }
  if (auth.length !== 16) fail(`\`keys.auth\` must be 16 bytes, got ${auth.length} bytes`);

  return {
    endpoint,
    expirationTime: expirationTime ?? null,
    keys: { p256dh: record.p256dh as string, auth: record.auth as string },
  };
}
