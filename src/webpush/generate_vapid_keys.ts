import { encodeBase64Url } from "./_base64url.ts";

/** A VAPID key pair, base64url without padding. */
export interface VapidKeys {
  /** The uncompressed P-256 public point (65 bytes): give it to `pushManager.subscribe()`. */
  publicKey: string;
  /** The private scalar (32 bytes): keep it secret, on the server. */
  privateKey: string;
}

/**
 * Generates a VAPID key pair (ECDSA P-256) for {@linkcode WebPushDispatcher}. Generate it once
 * and keep it: every subscription is bound to the public key it was made with.
 *
 * @returns The public and private key, base64url.
 *
 * @example Generate and print a key pair
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateVapidKeys } from "@flume/sse/webpush";
 *
 * const { publicKey, privateKey } = await generateVapidKeys();
 * // base64url without padding: a 65-byte public point and a 32-byte private scalar
 * assert.match(publicKey, /^[A-Za-z0-9_-]{87}$/);
 * assert.match(privateKey, /^[A-Za-z0-9_-]{43}$/);
 * console.log(`VAPID_PUBLIC_KEY=${publicKey}\nVAPID_PRIVATE_KEY=${privateKey}`);
 * ```
 */
export async function generateVapidKeys(): Promise<VapidKeys> {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  // The JWK's `d` is already the base64url scalar; re-encode to be sure it has no padding.
  return { publicKey: encodeBase64Url(publicKey), privateKey: (jwk.d ?? "").replace(/=+$/, "") };
}
