import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { generateVapidKeys, WebPushDispatcher } from "../../src/webpush/mod.ts";
import { verifyVapid } from "./_push_service.ts";
import { fromBase64Url, toBase64Url } from "./_rfc8188.ts";
import { claimsOf, fakeSubscription, recordingFetch } from "./_helpers.ts";
import { vectors } from "./_vectors.ts";

const keys = await generateVapidKeys();
const vapid = { ...keys, subject: "mailto:ops@example.com" };
const T0 = Date.UTC(2030, 0, 1);

describe("VAPID", () => {
  it("the test verifier accepts the RFC 8292 example token with its k key", async () => {
    const v = vectors.rfc8292;
    const result = await verifyVapid(`vapid t=${v.authorization_t}, k=${v.authorization_k}`, {
      audience: "https://push.example.net",
      checkTime: false,
    });
    assert.ok("claims" in result, JSON.stringify(result));
    assert.deepEqual(result.claims, v.jwt_claims);
    const [header, , signature] = v.authorization_t.split(".");
    const claims = { ...v.jwt_claims, aud: "https://push.example.org" };
    const tampered = `${header}.${
      toBase64Url(new TextEncoder().encode(JSON.stringify(claims)))
    }.${signature}`;
    const bad = await verifyVapid(`vapid t=${tampered}, k=${v.authorization_k}`, {
      checkTime: false,
    });
    assert.deepEqual(bad, { reason: "JWT signature does not verify with k" });
  });

  it("generateVapidKeys returns a 65-byte point and a 32-byte scalar, base64url", async () => {
    const { publicKey, privateKey } = await generateVapidKeys();
    assert.match(publicKey, /^[A-Za-z0-9_-]{87}$/);
    assert.match(privateKey, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(fromBase64Url(publicKey).length, 65);
    assert.equal(fromBase64Url(publicKey)[0], 4);
    assert.equal(fromBase64Url(privateKey).length, 32);
    await WebPushDispatcher.create({ publicKey, privateKey, subject: "https://example.com" });
  });

  it("signs an ES256 JWT with a raw 64-byte r||s signature that verifies with k", async () => {
    const spy = recordingFetch();
    const dispatcher = new WebPushDispatcher(vapid, { fetch: spy.fetch });
    await dispatcher.send(await fakeSubscription(), "hi");
    const authorization = spy.requests[0]!.headers.get("Authorization");
    const result = await verifyVapid(authorization, { audience: "https://push.example.net" });
    assert.ok("claims" in result, JSON.stringify(result));
    assert.equal(result.k, keys.publicKey);
    const signature = fromBase64Url(/t=[^.]+\.[^.]+\.([^,]+)/.exec(authorization!)![1]!);
    // DER would start with 0x30 and be 70 to 72 bytes long
    assert.equal(signature.length, 64);
    const header = /t=([^.]+)\./.exec(authorization!)![1]!;
    assert.deepEqual(JSON.parse(atob(header)), { typ: "JWT", alg: "ES256" });
  });

  it("sets aud to each endpoint's own origin, exp 12 h ahead and sub to the subject", async () => {
    const spy = recordingFetch();
    const dispatcher = new WebPushDispatcher(vapid, { fetch: spy.fetch, now: () => T0 + 999 });
    await dispatcher.send(await fakeSubscription("https://fcm.googleapis.com"), "a");
    await dispatcher.send(await fakeSubscription("https://updates.push.services.mozilla.com"), "b");
    await dispatcher.send(await fakeSubscription("https://web.push.apple.com:443"), "c");
    const claims = spy.requests.map((r) => claimsOf(r.headers.get("Authorization")));
    assert.deepEqual(claims.map((c) => c.aud), [
      "https://fcm.googleapis.com",
      "https://updates.push.services.mozilla.com",
      "https://web.push.apple.com",
    ]);
    for (const c of claims) {
      assert.equal(c.exp, T0 / 1000 + 12 * 3600);
      assert.equal(c.sub, "mailto:ops@example.com");
    }
  });

  it("reuses a token per audience until 10 minutes before it expires", async () => {
    let now = T0;
    const spy = recordingFetch();
    const dispatcher = new WebPushDispatcher(vapid, {
      fetch: spy.fetch,
      now: () => now,
      vapidExpiration: 3600,
    });
    const a = await fakeSubscription("https://a.example");
    const b = await fakeSubscription("https://b.example");
    const auth = (): string => spy.requests.at(-1)!.headers.get("Authorization")!;
    await dispatcher.send(a, "1");
    const first = auth();
    await dispatcher.send(b, "1");
    assert.notEqual(auth(), first, "another audience must get its own token");
    now = T0 + 49 * 60_000;
    await dispatcher.send(a, "2");
    assert.equal(auth(), first);
    now = T0 + 51 * 60_000;
    await dispatcher.send(a, "3");
    assert.notEqual(auth(), first);
    assert.equal(claimsOf(auth()).exp, (T0 + 51 * 60_000) / 1000 + 3600);
  });

  it("refuses an expiration beyond 24 hours less clock skew", () => {
    assert.throws(() => new WebPushDispatcher(vapid, { vapidExpiration: 86_400 }), {
      name: "RangeError",
      message:
        "Cannot create WebPushDispatcher: `vapidExpiration` must be at most 86100 seconds (24 hours less 300 seconds of clock skew), got `86400`",
    });
    assert.throws(() => new WebPushDispatcher(vapid, { vapidExpiration: 0 }), {
      name: "RangeError",
      message:
        "Cannot create WebPushDispatcher: `vapidExpiration` must be a positive integer of seconds, got `0`",
    });
    new WebPushDispatcher(vapid, { vapidExpiration: 86_100 });
  });

  for (
    const subject of ["ops@example.com", "http://example.com", "mailto:", "", "urn:x", "https:/"]
  ) {
    it(`refuses the subject \`${subject}\` up front`, () => {
      assert.throws(() => new WebPushDispatcher({ ...keys, subject }), {
        name: "TypeError",
        message:
          `Cannot create WebPushDispatcher: \`vapid.subject\` must be a mailto: or https: URL, got \`${subject}\``,
      });
    });
  }

  const shortPublic = toBase64Url(fromBase64Url(keys.publicKey).subarray(1));
  const offCurve = toBase64Url(fromBase64Url(keys.publicKey).map((b, i) => i === 64 ? b ^ 1 : b));
  const zero = toBase64Url(new Uint8Array(32));
  const badKeys: [string, { publicKey: unknown; privateKey: unknown }, string][] = [
    [
      "a public key that is not a string",
      { ...keys, publicKey: 7 },
      "`vapid.publicKey` must be a string, got `number`",
    ],
    [
      "a private key that is not a string",
      { ...keys, privateKey: null },
      "`vapid.privateKey` must be a string, got `null`",
    ],
    [
      "a public key that is not base64url",
      { ...keys, publicKey: "abc+/" },
      "`vapid.publicKey` must be base64url, got `abc+/`",
    ],
    [
      "a 64-byte public key",
      { ...keys, publicKey: shortPublic },
      "`vapid.publicKey` must be 65 bytes (an uncompressed P-256 point), got 64 bytes",
    ],
    [
      "a public key off the curve",
      { ...keys, publicKey: offCurve },
      `\`vapid.publicKey\` must be a point on the P-256 curve, got \`${offCurve}\``,
    ],
    // The private key is a secret: no message shows it.
    [
      "a private key that is not base64url",
      { ...keys, privateKey: "secret+/" },
      "`vapid.privateKey` must be base64url",
    ],
    ["a 31-byte private key", {
      ...keys,
      privateKey: toBase64Url(fromBase64Url(keys.privateKey).subarray(1)),
    }, "`vapid.privateKey` must be 32 bytes (a P-256 private key), got 31 bytes"],
    [
      "a zero private key",
      { ...keys, privateKey: zero },
      "`vapid.privateKey` must be a P-256 private key, from 1 to the curve order less 1",
    ],
  ];
  for (const [name, pair, detail] of badKeys) {
    it(`refuses ${name}`, () => {
      assert.throws(
        // @ts-expect-error: some pairs are not strings on purpose
        () => new WebPushDispatcher({ ...pair, subject: "mailto:a@b.c" }),
        { name: "TypeError", message: `Cannot create WebPushDispatcher: ${detail}` },
      );
    });
  }

  it("rejects a private key that does not belong to the public key, before any request", async () => {
    const other = await generateVapidKeys();
    const mismatched = {
      publicKey: keys.publicKey,
      privateKey: other.privateKey,
      subject: "mailto:a@b.c",
    };
    const expected = {
      name: "TypeError",
      message: "Cannot use VAPID keys: `vapid.privateKey` does not belong to `vapid.publicKey`",
    };
    await assert.rejects(WebPushDispatcher.create(mismatched), expected);

    const spy = recordingFetch();
    const lazy = new WebPushDispatcher(mismatched, { fetch: spy.fetch });
    const subscription = await fakeSubscription();
    await assert.rejects(lazy.send(subscription, "x"), expected);
    await assert.rejects(lazy.send(subscription, "y"), expected);
    assert.equal(spy.requests.length, 0);
  });
});
