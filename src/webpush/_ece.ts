// Web Push message encryption: RFC 8291 on top of the aes128gcm content coding of RFC 8188.
// Private: the dispatcher is the public way in. Tests reach `encryptPayload` and
// `deriveContentKeys` directly to check the RFC 8291 Appendix A vector with its fixed keys.

/** The record size written in the header; RFC 8291's example uses it too. */
export const RECORD_SIZE = 4096;
/** Header bytes: salt (16) + rs (4) + idlen (1) + keyid, the 65-byte sender key. */
export const HEADER_LENGTH = 86;
/** AES-GCM tag bytes. */
const TAG_LENGTH = 16;
/**
 * [RFC 8291 §4] A push message is at most 4096 bytes of body, one record: what is left after the
 * header, the tag and the padding delimiter is 3993 bytes of plaintext.
 */
export const MAX_PLAINTEXT = 4096 - HEADER_LENGTH - TAG_LENGTH - 1;

const encoder = new TextEncoder();

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

async function hkdf(
  salt: Uint8Array<ArrayBuffer>,
  ikm: Uint8Array<ArrayBuffer>,
  info: Uint8Array<ArrayBuffer>,
  length: number,
): Promise<Uint8Array<ArrayBuffer>> {
  // WebCrypto runs HKDF-Extract and HKDF-Expand and appends the 0x01 block counter to `info`
  // itself. Adding it by hand, as RFC 8291's pseudocode shows, derives keys no browser accepts.
  const key = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt, info },
    key,
    length * 8,
  );
  return new Uint8Array(bits);
}

/** The sender's ephemeral ECDH key pair: a private key and its raw 65-byte public point. */
export interface SenderKeys {
  privateKey: CryptoKey;
  publicKey: Uint8Array<ArrayBuffer>;
}

/** What the RFC 8291 key schedule produces; tests compare each value with Appendix A. */
export interface ContentKeys {
  ecdhSecret: Uint8Array<ArrayBuffer>;
  keyInfo: Uint8Array<ArrayBuffer>;
  ikm: Uint8Array<ArrayBuffer>;
  cek: Uint8Array<ArrayBuffer>;
  nonce: Uint8Array<ArrayBuffer>;
}

/** Creates a fresh ephemeral ECDH key pair; never the VAPID key, which only signs. */
export async function generateSenderKeys(): Promise<SenderKeys> {
  const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, [
    "deriveBits",
  ]);
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { privateKey: pair.privateKey, publicKey };
}

/**
 * Runs the RFC 8291 key schedule for one message.
 *
 * @param sender The ephemeral sender (application server) key pair.
 * @param receiverKey The user agent's public key (`p256dh`), 65 bytes, already validated.
 * @param authSecret The user agent's authentication secret (`auth`), 16 bytes.
 * @param salt The message's 16-byte salt.
 */
export async function deriveContentKeys(
  sender: SenderKeys,
  receiverKey: Uint8Array<ArrayBuffer>,
  authSecret: Uint8Array<ArrayBuffer>,
  salt: Uint8Array<ArrayBuffer>,
): Promise<ContentKeys> {
  let receiver: CryptoKey;
  let ecdhSecret: Uint8Array<ArrayBuffer>;
  try {
    receiver = await crypto.subtle.importKey(
      "raw",
      receiverKey,
      { name: "ECDH", namedCurve: "P-256" },
      false,
      [],
    );
    // [RFC 8291 §3.1] ecdh_secret = ECDH(as_private, ua_public)
    ecdhSecret = new Uint8Array(
      await crypto.subtle.deriveBits({ name: "ECDH", public: receiver }, sender.privateKey, 256),
    );
  } catch (cause) {
    // Bun refuses a bad point at import and Deno at derivation: report both the same way.
    throw new TypeError("Cannot encrypt push message: `keys.p256dh` is not a usable P-256 key", {
      cause,
    });
  }
  // [RFC 8291 §3.4] key_info = "WebPush: info" || 0x00 || ua_public || as_public
  const keyInfo = concat(encoder.encode("WebPush: info\0"), receiverKey, sender.publicKey);
  // [RFC 8291 §3.4] IKM = HKDF(auth_secret, ecdh_secret, key_info, 32)
  const ikm = await hkdf(authSecret, ecdhSecret, keyInfo, 32);
  // [RFC 8188 §2.2, §2.3] CEK and NONCE from PRK = HKDF-Extract(salt, IKM)
  const cek = await hkdf(salt, ikm, encoder.encode("Content-Encoding: aes128gcm\0"), 16);
  const nonce = await hkdf(salt, ikm, encoder.encode("Content-Encoding: nonce\0"), 12);
  return { ecdhSecret, keyInfo, ikm, cek, nonce };
}

/** Fixed inputs for a reproducible message; only tests pass them. */
export interface EncryptOptions {
  salt?: Uint8Array<ArrayBuffer>;
  sender?: SenderKeys;
}

/**
 * Encrypts one Web Push message body (`Content-Encoding: aes128gcm`): header, then a single
 * record. A fresh salt and sender key pair are made per call unless fixed ones are passed.
 *
 * @param plaintext At most {@linkcode MAX_PLAINTEXT} bytes; the caller checks.
 * @param receiverKey The subscription's `p256dh`, decoded and validated.
 * @param authSecret The subscription's `auth`, decoded and validated.
 */
export async function encryptPayload(
  plaintext: Uint8Array,
  receiverKey: Uint8Array<ArrayBuffer>,
  authSecret: Uint8Array<ArrayBuffer>,
  options: EncryptOptions = {},
): Promise<Uint8Array<ArrayBuffer>> {
  if (plaintext.length > MAX_PLAINTEXT) {
    throw new RangeError(
      `Cannot encrypt push message: the plaintext must be at most ${MAX_PLAINTEXT} bytes to fit in one record, got ${plaintext.length} bytes`,
    );
  }
  // [RFC 8291 §3.4] a new salt and a new ephemeral key pair for every message
  const salt = options.salt ?? crypto.getRandomValues(new Uint8Array(16));
  const sender = options.sender ?? await generateSenderKeys();
  const { cek, nonce } = await deriveContentKeys(sender, receiverKey, authSecret, salt);

  // [RFC 8188 §2] the last (here the only) record ends with the delimiter 0x02; no extra padding
  const record = concat(plaintext, Uint8Array.of(2));
  const key = await crypto.subtle.importKey("raw", cek, "AES-GCM", false, ["encrypt"]);
  const ciphertext = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce, tagLength: 128 }, key, record),
  );

  // [RFC 8188 §2.1] header = salt || rs (uint32 BE) || idlen || keyid;
  // [RFC 8291 §4] keyid is the sender's public key
  const header = new Uint8Array(21);
  header.set(salt);
  new DataView(header.buffer).setUint32(16, RECORD_SIZE);
  header[20] = sender.publicKey.length;
  return concat(header, sender.publicKey, ciphertext);
}
