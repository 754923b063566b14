// An RFC 8188 (aes128gcm) decoder and RFC 8291 key schedule for the local push service, written
// apart from src/ on purpose: HKDF is done by hand with HMAC, so a mistake in the code under test
// cannot be mirrored here.

const encoder = new TextEncoder();

export function fromBase64Url(text: string): Uint8Array<ArrayBuffer> {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

export function toBase64Url(bytes: Uint8Array): string {
  return btoa(Array.from(bytes, (byte) => String.fromCharCode(byte)).join(""))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export async function hmacSha256(
  key: Uint8Array<ArrayBuffer>,
  data: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const hmacKey = await crypto.subtle.importKey(
    "raw",
    key,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", hmacKey, data));
}

/** RFC 5869 HKDF for outputs of at most 32 bytes: one HMAC block, counter 0x01 added here. */
export async function hkdfByHand(
  salt: Uint8Array<ArrayBuffer>,
  ikm: Uint8Array<ArrayBuffer>,
  info: Uint8Array<ArrayBuffer>,
  length: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const prk = await hmacSha256(salt, ikm);
  const block = await hmacSha256(prk, concatBytes(info, Uint8Array.of(1)));
  return block.slice(0, length);
}

/** The RFC 8291 §3.4 IKM, as the user agent computes it. */
export async function webPushIkm(
  senderPublic: Uint8Array<ArrayBuffer>,
  receiver: { privateKey: CryptoKey; publicKey: Uint8Array<ArrayBuffer> },
  authSecret: Uint8Array<ArrayBuffer>,
): Promise<Uint8Array<ArrayBuffer>> {
  const sender = await crypto.subtle.importKey(
    "raw",
    senderPublic,
    { name: "ECDH", namedCurve: "P-256" },
    false,
    [],
  );
  const ecdh = new Uint8Array(
    await crypto.subtle.deriveBits({ name: "ECDH", public: sender }, receiver.privateKey, 256),
  );
  const info = concatBytes(encoder.encode("WebPush: info\0"), receiver.publicKey, senderPublic);
  return await hkdfByHand(authSecret, ecdh, info, 32);
}

export interface Decoded {
  salt: Uint8Array;
  recordSize: number;
  keyId: Uint8Array;
  records: number;
  plaintext: Uint8Array;
}

/** Decodes an aes128gcm body; `ikmFor` supplies the input keying material for the key id. */
export async function decodeAes128gcm(
  body: Uint8Array,
  ikmFor: (keyId: Uint8Array<ArrayBuffer>) => Promise<Uint8Array<ArrayBuffer>>,
): Promise<Decoded> {
  if (body.length < 21) throw new Error("body shorter than the header");
  const salt = body.slice(0, 16);
  const recordSize = new DataView(body.buffer, body.byteOffset + 16, 4).getUint32(0);
  const idLength = body[20]!;
  const keyId = body.slice(21, 21 + idLength);
  if (recordSize < 18) throw new Error(`record size ${recordSize} is below 18`);
  const ikm = await ikmFor(keyId);
  const cekBytes = await hkdfByHand(salt, ikm, encoder.encode("Content-Encoding: aes128gcm\0"), 16);
  const nonceBase = await hkdfByHand(salt, ikm, encoder.encode("Content-Encoding: nonce\0"), 12);
  const cek = await crypto.subtle.importKey("raw", cekBytes, "AES-GCM", false, ["decrypt"]);

  const payload = body.subarray(21 + idLength);
  const parts: Uint8Array[] = [];
  let records = 0;
  for (let offset = 0; offset < payload.length; offset += recordSize, records++) {
    const record = payload.slice(offset, offset + recordSize);
    const last = offset + recordSize >= payload.length;
    const nonce = nonceBase.slice();
    // NONCE XOR SEQ, SEQ a 96-bit big-endian counter; a few records fit in the last byte
    nonce[11] = nonce[11]! ^ records;
    const plain = new Uint8Array(
      await crypto.subtle.decrypt({ name: "AES-GCM", iv: nonce, tagLength: 128 }, cek, record),
    );
    let end = plain.length - 1;
    while (end >= 0 && plain[end] === 0) end--;
    if (end < 0) throw new Error(`record ${records} has no delimiter`);
    const delimiter = plain[end];
    if (delimiter !== (last ? 2 : 1)) {
      throw new Error(`record ${records} ends with delimiter ${delimiter}`);
    }
    parts.push(plain.subarray(0, end));
  }
  if (records === 0) throw new Error("body has no record");
  return { salt, recordSize, keyId, records, plaintext: concatBytes(...parts) };
}

/** Imports a P-256 ECDH private key from its base64url public point and scalar. */
export function importEcdhPrivateKey(publicKey: string, privateKey: string): Promise<CryptoKey> {
  const point = fromBase64Url(publicKey);
  return crypto.subtle.importKey(
    "jwk",
    {
      kty: "EC",
      crv: "P-256",
      x: toBase64Url(point.subarray(1, 33)),
      y: toBase64Url(point.subarray(33, 65)),
      d: privateKey,
    },
    { name: "ECDH", namedCurve: "P-256" },
    false,
    ["deriveBits"],
  );
}
