import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  generateVapidKeys,
  parsePushSubscription,
  WebPushDispatcher,
} from "../../src/webpush/mod.ts";
import { fromBase64Url, toBase64Url } from "./_rfc8188.ts";
import { fakeSubscription, recordingFetch } from "./_helpers.ts";
import { vectors } from "./_vectors.ts";

const good = {
  endpoint: "https://fcm.googleapis.com/fcm/send/abc:def",
  expirationTime: null,
  keys: { p256dh: vectors.rfc8291.inputs.ua_public, auth: vectors.rfc8291.inputs.auth_secret },
};
const offCurve = toBase64Url(
  fromBase64Url(good.keys.p256dh).map((byte, i) => i === 64 ? byte ^ 1 : byte),
);

describe("parsePushSubscription", () => {
  it("accepts what PushSubscription.toJSON() emits and returns a normalized copy", () => {
    const parsed = parsePushSubscription(JSON.parse(JSON.stringify(good)));
    assert.deepEqual(parsed, good);
    assert.notEqual(parsed, good);
    assert.deepEqual(parsePushSubscription({ ...good, expirationTime: 1_900_000_000_000 }), {
      ...good,
      expirationTime: 1_900_000_000_000,
    });
  });

  it("accepts a missing expirationTime, padded base64url, and drops unknown fields", () => {
    const parsed = parsePushSubscription({
      endpoint: good.endpoint,
      keys: { p256dh: good.keys.p256dh + "=", auth: good.keys.auth + "==", extra: 1 },
      userId: 7,
    });
    assert.equal(parsed.expirationTime, null);
    assert.equal(parsed.keys.auth, good.keys.auth + "==");
    assert.equal("userId" in parsed, false);
  });

  const cases: [string, unknown, string][] = [
    ["null", null, "the subscription must be an object, got `null`"],
    ["an array", [], "the subscription must be an object, got `array`"],
    ["a string", JSON.stringify(good), "the subscription must be an object, got `string`"],
    [
      "no endpoint",
      { ...good, endpoint: undefined },
      "`endpoint` must be a string, got `undefined`",
    ],
    [
      "a relative endpoint",
      { ...good, endpoint: "/push/1" },
      "`endpoint` must be a URL, got `/push/1`",
    ],
    [
      "an http: endpoint",
      { ...good, endpoint: "http://push.example.net/1" },
      "`endpoint` must be an https: URL, got `http://push.example.net/1`",
    ],
    [
      "an http: loopback endpoint without the option",
      { ...good, endpoint: "http://127.0.0.1:8080/1" },
      "`endpoint` must be an https: URL, got `http://127.0.0.1:8080/1`",
    ],
    [
      "a string expirationTime",
      { ...good, expirationTime: "soon" },
      "`expirationTime` must be a finite number or null, got `string`",
    ],
    [
      "an infinite expirationTime",
      { ...good, expirationTime: Infinity },
      "`expirationTime` must be a finite number or null, got `Infinity`",
    ],
    [
      "an endpoint too long to show whole",
      { ...good, endpoint: "http://push.example.net/" + "a".repeat(200) },
      `\`endpoint\` must be an https: URL, got \`${
        ("http://push.example.net/" + "a".repeat(200)).slice(0, 100)
      }…\``,
    ],
    ["no keys", { endpoint: good.endpoint }, "`keys` must be an object, got `undefined`"],
    ["keys as an array", { ...good, keys: [] }, "`keys` must be an object, got `array`"],
    [
      "no p256dh",
      { ...good, keys: { auth: good.keys.auth } },
      "`keys.p256dh` must be a string, got `undefined`",
    ],
    [
      "no auth",
      { ...good, keys: { p256dh: good.keys.p256dh } },
      "`keys.auth` must be a string, got `undefined`",
    ],
    [
      "standard base64 in p256dh",
      { ...good, keys: { ...good.keys, p256dh: good.keys.p256dh.replace(/_/g, "/") } },
      `\`keys.p256dh\` must be base64url, got \`${good.keys.p256dh.replace(/_/g, "/")}\``,
    ],
    [
      "a stray character in auth",
      { ...good, keys: { ...good.keys, auth: good.keys.auth.slice(0, -1) + "!" } },
      // the secret is not shown
      "`keys.auth` must be base64url",
    ],
    [
      "a compressed p256dh",
      { ...good, keys: { ...good.keys, p256dh: toBase64Url(new Uint8Array(33).fill(2)) } },
      "`keys.p256dh` must be 65 bytes (an uncompressed P-256 point), got 33 bytes",
    ],
    [
      "a p256dh off the curve",
      { ...good, keys: { ...good.keys, p256dh: offCurve } },
      `\`keys.p256dh\` must be a point on the P-256 curve, got \`${offCurve}\``,
    ],
    [
      "a 65-byte p256dh that does not start with 0x04",
      {
        ...good,
        keys: { ...good.keys, p256dh: toBase64Url(new Uint8Array(65).fill(3)) },
      },
      `\`keys.p256dh\` must be a point on the P-256 curve, got \`${
        toBase64Url(new Uint8Array(65).fill(3))
      }\``,
    ],
    [
      "a 12-byte auth",
      { ...good, keys: { ...good.keys, auth: toBase64Url(new Uint8Array(12)) } },
      "`keys.auth` must be 16 bytes, got 12 bytes",
    ],
  ];
  for (const [name, value, detail] of cases) {
    it(`rejects ${name}`, () => {
      assert.throws(() => parsePushSubscription(value), {
        name: "TypeError",
        message: `Cannot parse push subscription: ${detail}`,
      });
    });
  }

  it("accepts http: on a loopback host only with allowInsecureLoopback", () => {
    const options = { allowInsecureLoopback: true };
    for (const host of ["127.0.0.1:9", "localhost", "[::1]:8000"]) {
      parsePushSubscription({ ...good, endpoint: `http://${host}/push/1` }, options);
    }
    assert.throws(
      () => parsePushSubscription({ ...good, endpoint: "http://10.0.0.1/push/1" }, options),
      TypeError,
    );
  });

  it("makes send reject an invalid subscription with the same TypeError, before any request", async () => {
    const spy = recordingFetch();
    const keys = await generateVapidKeys();
    const dispatcher = new WebPushDispatcher({ ...keys, subject: "mailto:a@b.c" }, {
      fetch: spy.fetch,
    });
    const subscription = await fakeSubscription();
    await assert.rejects(
      dispatcher.send({ ...subscription, keys: { ...subscription.keys, p256dh: offCurve } }, "x"),
      {
        name: "TypeError",
        message:
          `Cannot parse push subscription: \`keys.p256dh\` must be a point on the P-256 curve, got \`${offCurve}\``,
      },
    );
    assert.equal(spy.requests.length, 0);
  });
});
