import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  deriveContentKeys,
  encryptPayload,
  HEADER_LENGTH,
  MAX_PLAINTEXT,
  type SenderKeys,
} from "../../src/webpush/_ece.ts";
import { hmacSha256, importEcdhPrivateKey } from "./_rfc8188.ts";
import { bytes, vectors } from "./_vectors.ts";

const { inputs, intermediates, output } = vectors.rfc8291;

async function rfcSender(): Promise<SenderKeys> {
  return {
    privateKey: await importEcdhPrivateKey(inputs.as_public, inputs.as_private),
    publicKey: bytes(inputs.as_public),
  };
}

describe("RFC 8291 message encryption", () => {
  it("derives every Appendix A intermediate from the RFC's fixed keys and salt", async () => {
    const keys = await deriveContentKeys(
      await rfcSender(),
      bytes(inputs.ua_public),
      bytes(inputs.auth_secret),
      bytes(inputs.salt),
    );
    assert.deepEqual(keys.ecdhSecret, bytes(intermediates.ecdh_secret));
    assert.deepEqual(keys.keyInfo, bytes(intermediates.key_info));
    assert.deepEqual(keys.ikm, bytes(intermediates.ikm));
    assert.deepEqual(keys.cek, bytes(intermediates.cek));
    assert.deepEqual(keys.nonce, bytes(intermediates.nonce));
    // The two HKDF-Extract steps, recomputed by hand from the derived values
    assert.deepEqual(
      await hmacSha256(bytes(inputs.auth_secret), keys.ecdhSecret),
      bytes(intermediates.prk_key),
    );
    assert.deepEqual(await hmacSha256(bytes(inputs.salt), keys.ikm), bytes(intermediates.prk));
  });

  it("produces the RFC's 144-byte body byte for byte", async () => {
    const body = await encryptPayload(
      bytes(inputs.plaintext),
      bytes(inputs.ua_public),
      bytes(inputs.auth_secret),
      { salt: bytes(inputs.salt), sender: await rfcSender() },
    );
    assert.equal(body.length, output.body_length);
    assert.deepEqual(body.subarray(0, HEADER_LENGTH), bytes(intermediates.header));
    assert.deepEqual(body.subarray(HEADER_LENGTH), bytes(intermediates.ciphertext));
    assert.deepEqual(body, bytes(output.body));
  });

  it("lets WebCrypto add the HKDF counter: a hand-added 0x01 gives another key", async () => {
    // The pitfall: RFC 8291's pseudocode shows `key_info || 0x01`; with WebCrypto's HKDF that
    // counter is added twice and browsers drop the message without a word.
    const keys = await deriveContentKeys(
      await rfcSender(),
      bytes(inputs.ua_public),
      bytes(inputs.auth_secret),
      bytes(inputs.salt),
    );
    assert.equal(keys.keyInfo.length, 14 + 65 + 65);
    assert.notEqual(keys.keyInfo.at(-1), 0x01);
    const key = await crypto.subtle.importKey("raw", keys.ecdhSecret, "HKDF", false, [
      "deriveBits",
    ]);
    const doubled = new Uint8Array(keys.keyInfo.length + 1);
    doubled.set(keys.keyInfo);
    doubled[keys.keyInfo.length] = 1;
    const wrong = new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "HKDF", hash: "SHA-256", salt: bytes(inputs.auth_secret), info: doubled },
        key,
        256,
      ),
    );
    assert.notDeepEqual(wrong, keys.ikm);
    assert.deepEqual(keys.ikm, bytes(intermediates.ikm));
  });

  it("uses a fresh salt and ephemeral key for every message", async () => {
    const uaPublic = bytes(inputs.ua_public);
    const auth = bytes(inputs.auth_secret);
    const plaintext = new TextEncoder().encode("same text");
    const a = await encryptPayload(plaintext, uaPublic, auth);
    const b = await encryptPayload(plaintext, uaPublic, auth);
    assert.notDeepEqual(a.subarray(0, 16), b.subarray(0, 16), "salt repeated");
    assert.notDeepEqual(a.subarray(21, 86), b.subarray(21, 86), "sender key repeated");
    assert.equal(a[20], 65);
    assert.equal(new DataView(a.buffer).getUint32(16), 4096);
  });

  it("fits 3993 bytes of plaintext in a 4096-byte body and refuses one more", async () => {
    const uaPublic = bytes(inputs.ua_public);
    const auth = bytes(inputs.auth_secret);
    assert.equal(MAX_PLAINTEXT, 3993);
    const body = await encryptPayload(new Uint8Array(MAX_PLAINTEXT), uaPublic, auth);
    assert.equal(body.length, 4096);
    await assert.rejects(encryptPayload(new Uint8Array(MAX_PLAINTEXT + 1), uaPublic, auth), {
      name: "RangeError",
      message:
        "Cannot encrypt push message: the plaintext must be at most 3993 bytes to fit in one record, got 3994 bytes",
    });
  });

  it("reports a p256dh that is not a curve point the same way on every runtime", async () => {
    // Bun fails at import, Deno at derivation: both must give one TypeError.
    const offCurve = bytes(inputs.ua_public);
    offCurve[64]! ^= 1;
    await assert.rejects(
      encryptPayload(new Uint8Array(1), offCurve, bytes(inputs.auth_secret)),
      {
        name: "TypeError",
        message: "Cannot encrypt push message: `keys.p256dh` is not a usable P-256 key",
      },
    );
  });
});
