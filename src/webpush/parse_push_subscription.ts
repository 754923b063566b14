import { decodeBase64Url } from "./_base64url.ts";
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
  if (typeof text !== "string") fail(`\`keys.${name}\` is not a string`);
  const bytes = decodeBase64Url(text);
  if (bytes === undefined) fail(`\`keys.${name}\` is not base64url`);
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
 * import { parsePushSubscription } from "@flume/sse/webpush";
 *
 * export async function subscribe(request: Request): Promise<Response> {
 *   try {
 *     const subscription = parsePushSubscription(await request.json());
 *     console.log("store", subscription.endpoint);
 *     return new Response(null, { status: 201 });
 *   } catch (error) {
 *     return new Response(String(error), { status: 400 });
 *   }
 * }
 * ```
 */
export function parsePushSubscription(
  value: unknown,
  options: ParsePushSubscriptionOptions = {},
): PushSubscriptionJSON {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail("value is not an object");
  }
  const { endpoint, expirationTime, keys } = value as Record<string, unknown>;

  if (typeof endpoint !== "string") fail("`endpoint` is not a string");
  if (!URL.canParse(endpoint)) fail(`\`endpoint\` is not a URL: \`${endpoint}\``);
  const url = new URL(endpoint);
  const loopback = url.protocol === "http:" && LOOPBACK_HOSTS.has(url.hostname) &&
    options.allowInsecureLoopback === true;
  if (url.protocol !== "https:" && !loopback) {
    fail(`\`endpoint\` is not an https: URL: \`${endpoint}\``);
  }

  if (
    expirationTime !== undefined && expirationTime !== null &&
    !(typeof expirationTime === "number" && Number.isFinite(expirationTime))
  ) {
    fail("`expirationTime` is neither a number nor null");
  }

  if (typeof keys !== "object" || keys === null) fail("`keys` is not an object");
  const record = keys as Record<string, unknown>;
  const p256dh = parseKey(record, "p256dh");
  const auth = parseKey(record, "auth");
  if (p256dh.length !== 65) {
    fail(`\`keys.p256dh\` is ${p256dh.length} bytes, not a 65-byte uncompressed P-256 point`);
  }
  if (!isP256Point(p256dh)) fail("`keys.p256dh` is not a point on the P-256 curve");
  if (auth.length !== 16) fail(`\`keys.auth\` is ${auth.length} bytes, not 16`);

  return {
    endpoint,
    expirationTime: expirationTime ?? null,
    keys: { p256dh: record.p256dh as string, auth: record.auth as string },
  };
}
