// VAPID (RFC 8292): the key pair, the ES256 JWT and the per-audience token cache.

import { decodeBase64Url, encodeBase64Url, encodeBase64UrlText } from "./_base64url.ts";
import { shown, typeOf } from "./_describe.ts";
import { isP256Point, isP256Scalar } from "./_p256.ts";

/** [RFC 8292 §2] a push service may refuse `exp` more than 24 hours ahead. */
export const MAX_EXPIRATION = 24 * 60 * 60;
/** Room for a push service whose clock runs ahead of ours. */
export const CLOCK_SKEW = 5 * 60;
/** Audiences whose token is kept; a subscriber list rarely spans more than a few push services. */
const CACHE_LIMIT = 64;

const ECDSA = { name: "ECDSA", namedCurve: "P-256" } as const;
const SHA256 = { name: "ECDSA", hash: "SHA-256" } as const;

/** Validated VAPID inputs. */
export interface VapidConfig {
  publicKey: string;
  privateKey: string;
  subject: string;
  /** Token lifetime in seconds. */
  expiration: number;
  /** Clock in ms since the epoch. */
  now: () => number;
}

/** Checks a VAPID key pair and subject without WebCrypto; throws TypeError/RangeError. */
export function checkVapid(
  vapid: { publicKey: unknown; privateKey: unknown; subject: unknown },
  expiration: number,
): { publicKey: Uint8Array<ArrayBuffer>; privateKey: Uint8Array<ArrayBuffer> } {
  const prefix = "Cannot create WebPushDispatcher";
  if (typeof vapid?.publicKey !== "string") {
    throw new TypeError(
      `${prefix}: \`vapid.publicKey\` must be a string, got \`${typeOf(vapid?.publicKey)}\``,
    );
  }
  if (typeof vapid.privateKey !== "string") {
    throw new TypeError(
      `${prefix}: \`vapid.privateKey\` must be a string, got \`${typeOf(vapid.privateKey)}\``,
    );
  }
  const publicKey = decodeBase64Url(vapid.publicKey);
  if (publicKey === undefined) {
    throw new TypeError(
      `${prefix}: \`vapid.publicKey\` must be base64url, got \`${shown(vapid.publicKey)}\``,
    );
  }
  if (publicKey.length !== 65) {
    throw new TypeError(
      `${prefix}: \`vapid.publicKey\` must be 65 bytes (an uncompressed P-256 point), got ${publicKey.length} bytes`,
    );
  }
  if (!isP256Point(publicKey)) {
    throw new TypeError(
      `${prefix}: \`vapid.publicKey\` must be a point on the P-256 curve, got \`${
        shown(vapid.publicKey)
      }\``,
    );
  }
  // The private key's value is a secret: its messages never show it.
  const privateKey = decodeBase64Url(vapid.privateKey);
  if (privateKey === undefined) {
    throw new TypeError(`${prefix}: \`vapid.privateKey\` must be base64url`);
  }
  if (privateKey.length !== 32) {
    throw new TypeError(
      `${prefix}: \`vapid.privateKey\` must be 32 bytes (a P-256 private key), got ${privateKey.length} bytes`,
    );
  }
  if (!isP256Scalar(privateKey)) {
    throw new TypeError(
      `${prefix}: \`vapid.privateKey\` must be a P-256 private key, from 1 to the curve order less 1`,
    );
  }
  checkSubject(vapid.subject);
  if (!Number.isInteger(expiration) || expiration < 1) {
    throw new RangeError(
      `${prefix}: \`vapidExpiration\` must be a positive integer of seconds, got \`${
        String(expiration)
      }\``,
    );
  }
  if (expiration > MAX_EXPIRATION - CLOCK_SKEW) {
    throw new RangeError(
      `${prefix}: \`vapidExpiration\` must be at most ${
        MAX_EXPIRATION - CLOCK_SKEW
      } seconds (24 hours less ${CLOCK_SKEW} seconds of clock skew), got \`${expiration}\``,
    );
  }
  return { publicKey, privateKey };
}

function checkSubject(subject: unknown): void {
  // [RFC 8292 §2.1] `sub` is a mailto: or https: URI the push service can reach the sender at
  const prefix = "Cannot create WebPushDispatcher";
  if (typeof subject !== "string") {
    throw new TypeError(
      `${prefix}: \`vapid.subject\` must be a string, got \`${typeOf(subject)}\``,
    );
  }
  const url = URL.canParse(subject) ? new URL(subject) : undefined;
  const valid = url !== undefined &&
    ((url.protocol === "mailto:" && url.pathname.includes("@")) ||
      (url.protocol === "https:" && url.hostname !== ""));
  if (!valid) {
    throw new TypeError(
      `${prefix}: \`vapid.subject\` must be a mailto: or https: URL, got \`${shown(subject)}\``,
    );
  }
}

async function importSigningKey(
  publicKey: Uint8Array<ArrayBuffer>,
  privateKey: Uint8Array<ArrayBuffer>,
): Promise<CryptoKey> {
  const mismatch = "Cannot use VAPID keys: `vapid.privateKey` does not belong to `vapid.publicKey`";
  let key: CryptoKey;
  let verifyKey: CryptoKey;
  try {
    // WebCrypto cannot import a bare scalar: the JWK carries the public x and y with it.
    key = await crypto.subtle.importKey(
      "jwk",
      {
        kty: "EC",
        crv: "P-256",
        x: encodeBase64Url(publicKey.subarray(1, 33)),
        y: encodeBase64Url(publicKey.subarray(33, 65)),
        d: encodeBase64Url(privateKey),
      },
      ECDSA,
      false,
      ["sign"],
    );
    verifyKey = await crypto.subtle.importKey("raw", publicKey, ECDSA, false, ["verify"]);
  } catch (cause) {
    // Bun checks that the halves match at import.
    throw new TypeError(mismatch, { cause });
  }
  // Deno imports a JWK whose halves do not match and then signs tokens nobody can verify: sign
  // and verify once so a bad pair fails here rather than at every push service.
  const probe = crypto.getRandomValues(new Uint8Array(32));
  const signature = await crypto.subtle.sign(SHA256, key, probe);
  if (!await crypto.subtle.verify(SHA256, verifyKey, signature, probe)) {
    throw new TypeError(mismatch);
  }
  return key;
}

/** Makes and caches the `Authorization: vapid` header value for each audience. */
export class VapidSigner {
  #config: VapidConfig;
  #publicKey: Uint8Array<ArrayBuffer>;
  #privateKey: Uint8Array<ArrayBuffer>;
  #key: Promise<CryptoKey> | undefined;
  #cache = new Map<string, { exp: number; header: Promise<string> }>();

  constructor(config: VapidConfig) {
    const { publicKey, privateKey } = checkVapid(config, config.expiration);
    this.#config = config;
    this.#publicKey = publicKey;
    this.#privateKey = privateKey;
  }

  /** Imports and checks the key pair once; a bad pair rejects every later call the same way. */
  key(): Promise<CryptoKey> {
    this.#key ??= importSigningKey(this.#publicKey, this.#privateKey);
    return this.#key;
  }

  /**
   * The header value for `audience` (an endpoint's origin), reused until it is close to expiry:
   * within 10 minutes, or half its lifetime if that is shorter.
   */
  authorization(audience: string): Promise<string> {
    const now = Math.floor(this.#config.now() / 1000);
    const margin = Math.min(600, this.#config.expiration / 2);
    const cached = this.#cache.get(audience);
    if (cached !== undefined && cached.exp - now > margin) return cached.header;

    const exp = now + this.#config.expiration;
    const header = this.#sign(audience, exp);
    this.#cache.delete(audience);
    if (this.#cache.size >= CACHE_LIMIT) {
      this.#cache.delete(this.#cache.keys().next().value as string);
    }
    const entry = { exp, header };
    this.#cache.set(audience, entry);
    // A failed signature is not cached.
    header.catch(() => {
      if (this.#cache.get(audience) === entry) this.#cache.delete(audience);
    });
    return header;
  }

  async #sign(aud: string, exp: number): Promise<string> {
    const key = await this.key();
    // [RFC 8292 §2] an ES256 JWT with `aud`, `exp` and `sub`
    const unsigned = `${encodeBase64UrlText(JSON.stringify({ typ: "JWT", alg: "ES256" }))}.${
      encodeBase64UrlText(JSON.stringify({ aud, exp, sub: this.#config.subject }))
    }`;
    // [RFC 7518 §3.4] the signature is the 64-byte r || s, which is what WebCrypto returns
    // (never DER)
    const signature = new Uint8Array(
      await crypto.subtle.sign(SHA256, key, new TextEncoder().encode(unsigned)),
    );
    // [RFC 8292 §3] t = the JWT, k = the public key
    return `vapid t=${unsigned}.${encodeBase64Url(signature)}, k=${
      encodeBase64Url(this.#publicKey)
    }`;
  }
}
