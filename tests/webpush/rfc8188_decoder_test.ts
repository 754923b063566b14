// Proves the local push service's decoder on the RFCs' own bytes before it judges our encoder.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  decodeAes128gcm,
  fromBase64Url,
  hkdfByHand,
  importEcdhPrivateKey,
  webPushIkm,
} from "./_rfc8188.ts";
import { bytes, vectors } from "./_vectors.ts";

const text = new TextDecoder();

describe("test decoder for aes128gcm", () => {
  it("decodes the RFC 8188 §3.1 single-record example", async () => {
    const v = vectors.rfc8188.section_3_1;
    const body = bytes(v.body);
    assert.equal(body.length, v.body_length);
    const decoded = await decodeAes128gcm(body, () => Promise.resolve(bytes(v.ikm)));
    assert.equal(text.decode(decoded.plaintext), v.plaintext_ascii);
    assert.deepEqual(decoded.salt, bytes(v.salt));
    assert.equal(decoded.recordSize, 4096);
    assert.equal(decoded.keyId.length, 0);
    assert.equal(decoded.records, 1);
  });

  it("decodes the RFC 8188 §3.2 two-record example with its key id", async () => {
    const v = vectors.rfc8188.section_3_2;
    const body = bytes(v.body);
    assert.equal(body.length, v.body_length);
    const decoded = await decodeAes128gcm(body, (keyId) => {
      assert.equal(text.decode(keyId), v.keyid_utf8);
      return Promise.resolve(bytes(v.ikm));
    });
    assert.equal(text.decode(decoded.plaintext), v.plaintext_ascii);
    assert.equal(decoded.recordSize, v.record_size);
    assert.equal(decoded.records, 2);
  });

  it("refuses a body whose last byte was changed", async () => {
    const v = vectors.rfc8188.section_3_2;
    const body = bytes(v.body);
    body[body.length - 1]! ^= 1;
    await assert.rejects(decodeAes128gcm(body, () => Promise.resolve(bytes(v.ikm))));
  });

  it("derives the RFC 8188 §3.1 CEK and nonce with HKDF done by hand", async () => {
    const v = vectors.rfc8188.section_3_1;
    const enc = new TextEncoder();
    const cek = await hkdfByHand(
      bytes(v.salt),
      bytes(v.ikm),
      enc.encode("Content-Encoding: aes128gcm\0"),
      16,
    );
    const nonce = await hkdfByHand(
      bytes(v.salt),
      bytes(v.ikm),
      enc.encode("Content-Encoding: nonce\0"),
      12,
    );
    assert.deepEqual(cek, bytes(v.cek));
    assert.deepEqual(nonce, bytes(v.nonce));
  });

  it("decrypts the RFC 8291 example message as the user agent", async () => {
    const v = vectors.rfc8291;
    const uaPublic = fromBase64Url(v.inputs.ua_public);
    const privateKey = await importEcdhPrivateKey(v.inputs.ua_public, v.inputs.ua_private);
    const decoded = await decodeAes128gcm(
      bytes(v.output.body),
      (keyId) =>
        webPushIkm(keyId, { privateKey, publicKey: uaPublic }, bytes(v.inputs.auth_secret)),
    );
    assert.equal(text.decode(decoded.plaintext), v.inputs.plaintext_ascii);
    assert.deepEqual(decoded.keyId, bytes(v.inputs.as_public));
  });
});
