import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  generateVapidKeys,
  type PushSubscriptionJSON,
  WebPushDispatcher,
  type WebPushDispatcherOptions,
  WebPushError,
  WebPushGoneError,
} from "../../src/webpush/mod.ts";
import { LocalPushService } from "./_push_service.ts";
import { fakeSubscription, recordingFetch } from "./_helpers.ts";
import { freePort } from "../_helpers.ts";
import { toBase64Url } from "./_rfc8188.ts";

const keys = await generateVapidKeys();
const vapid = { ...keys, subject: "mailto:ops@example.com" };
const text = new TextDecoder();

/** A subscription whose push service is not listening: sending to it fails with a network error. */
async function unreachableSubscription(): Promise<PushSubscriptionJSON> {
  return fakeSubscription(`http://127.0.0.1:${await freePort()}`);
}

/** Runs `body` with `console.error` replaced by a recorder, and returns what was logged. */
async function capturingConsoleError<T>(body: () => Promise<T>): Promise<[T, unknown[][]]> {
  const logged: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => {
    logged.push(args);
  };
  try {
    return [await body(), logged];
  } finally {
    console.error = original;
  }
}

describe("WebPushDispatcher with a local push service", () => {
  let service: LocalPushService;
  let dispatcher: WebPushDispatcher;
  const make = (options: WebPushDispatcherOptions = {}): Promise<WebPushDispatcher> =>
    WebPushDispatcher.create(vapid, { allowInsecureLoopback: true, ...options });

  before(async () => {
    service = await LocalPushService.start();
    dispatcher = await make();
  });
  after(() => service.close());

  async function sendAndReceive(payload: unknown): Promise<Uint8Array | null> {
    const subscription = await service.subscribe();
    await dispatcher.send(subscription, payload);
    const message = service.received.find((m) => m.endpoint === subscription.endpoint);
    assert.ok(message, JSON.stringify(service.rejected.at(-1)));
    return message.plaintext;
  }

  it("delivers a string as UTF-8", async () => {
    const plaintext = await sendAndReceive("Grüße 👋");
    assert.equal(text.decode(plaintext!), "Grüße 👋");
  });

  it("delivers bytes as they are, from a Uint8Array or an ArrayBuffer", async () => {
    const bytes = crypto.getRandomValues(new Uint8Array(300));
    assert.deepEqual(await sendAndReceive(bytes), bytes);
    assert.deepEqual(await sendAndReceive(bytes.slice().buffer), bytes);
    // A view into a larger buffer sends only its own bytes
    assert.deepEqual(await sendAndReceive(bytes.subarray(10, 20)), bytes.subarray(10, 20));
  });

  it("delivers a notification object as JSON", async () => {
    const notification = { title: "Hi", body: "There", icon: "/icon.png", data: { url: "/x" } };
    const plaintext = await sendAndReceive(notification);
    assert.deepEqual(JSON.parse(text.decode(plaintext!)), notification);
    assert.equal(text.decode((await sendAndReceive(null))!), "null");
  });

  it("delivers every size from 1 byte to the 3993-byte maximum", async () => {
    for (const size of [1, 2, 15, 16, 17, 1000, 3992, 3993]) {
      const bytes = crypto.getRandomValues(new Uint8Array(size));
      assert.deepEqual(await sendAndReceive(bytes), bytes, `size ${size}`);
    }
    const last = service.received.at(-1)!;
    assert.equal(last.body.length, 4096);
  });

  it("sends a message without payload for undefined, with no Content-Encoding", async () => {
    assert.equal(await sendAndReceive(undefined), null);
    const last = service.received.at(-1)!;
    assert.equal(last.headers.get("Content-Encoding"), null);
    assert.equal(last.body.length, 0);
  });

  it("refuses 3994 bytes before any request", async () => {
    const subscription = await service.subscribe();
    const before = service.requests;
    const expected = {
      name: "RangeError",
      message:
        "Cannot send push message: `payload` must be at most 3993 bytes to fit in one record, got 3994 bytes",
    };
    await assert.rejects(dispatcher.send(subscription, new Uint8Array(3994)), expected);
    await assert.rejects(dispatcher.send(subscription, "é".repeat(1997)), {
      name: "RangeError",
    });
    await assert.rejects(dispatcher.sendMany([subscription], new Uint8Array(3994)), expected);
    assert.equal(service.requests, before);
  });

  it("refuses a payload with no JSON form", async () => {
    await assert.rejects(dispatcher.send(await service.subscribe(), () => {}), {
      name: "TypeError",
      message:
        "Cannot send push message: `payload` must be bytes, a string or a JSON value, got `function`",
    });
  });

  it("sends TTL, Urgency, Topic, Content-Encoding and a VAPID token for this service", async () => {
    const subscription = await service.subscribe();
    await dispatcher.send(subscription, "x");
    let headers = service.received.at(-1)!.headers;
    assert.equal(headers.get("TTL"), "86400");
    assert.equal(headers.get("Urgency"), null);
    assert.equal(headers.get("Topic"), null);
    assert.equal(headers.get("Content-Encoding"), "aes128gcm");
    assert.equal(headers.get("Content-Type"), "application/octet-stream");
    assert.equal(service.received.at(-1)!.claims.aud, service.origin);
    assert.equal(service.received.at(-1)!.k, keys.publicKey);

    await dispatcher.send(subscription, "y", { ttl: 0, urgency: "high", topic: "inbox-42_A" });
    headers = service.received.at(-1)!.headers;
    assert.equal(headers.get("TTL"), "0");
    assert.equal(headers.get("Urgency"), "high");
    assert.equal(headers.get("Topic"), "inbox-42_A");

    const custom = await make({ ttl: 60 });
    await custom.send(subscription, "z");
    assert.equal(service.received.at(-1)!.headers.get("TTL"), "60");
  });

  it("encrypts each message with a fresh ephemeral key, never the VAPID key", async () => {
    const subscription = await service.subscribe();
    await dispatcher.send(subscription, "one");
    await dispatcher.send(subscription, "two");
    const [a, b] = service.received.slice(-2).map((m) => toBase64Url(m.body.subarray(21, 86)));
    assert.notEqual(a, b);
    assert.notEqual(a, keys.publicKey);
    assert.notEqual(b, keys.publicKey);
  });

  it("refuses a bad ttl, urgency or topic before any request", async () => {
    const subscription = await service.subscribe();
    const before = service.requests;
    await assert.rejects(dispatcher.send(subscription, "x", { ttl: -1 }), {
      name: "RangeError",
      message:
        "Cannot send push message: `ttl` must be a non-negative integer of seconds, got `-1`",
    });
    await assert.rejects(dispatcher.send(subscription, "x", { ttl: 1.5 }), RangeError);
    await assert.rejects(
      // @ts-expect-error: not an urgency
      dispatcher.send(subscription, "x", { urgency: "urgent" }),
      {
        name: "TypeError",
        message:
          "Cannot send push message: `urgency` must be very-low, low, normal or high, got `urgent`",
      },
    );
    for (const topic of ["", "a".repeat(33), "has space", "dot.ted"]) {
      await assert.rejects(dispatcher.send(subscription, "x", { topic }), {
        name: "TypeError",
        message:
          `Cannot send push message: \`topic\` must be 1 to 32 characters of A-Z a-z 0-9 - _, got \`${topic}\``,
      });
    }
    assert.throws(() => new WebPushDispatcher(vapid, { ttl: -5 }), {
      name: "RangeError",
      message:
        "Cannot create WebPushDispatcher: `ttl` must be a non-negative integer of seconds, got `-5`",
    });
    assert.equal(service.requests, before);
  });

  for (const status of [404, 410]) {
    it(`throws WebPushGoneError for ${status}`, async () => {
      const subscription = await service.subscribe();
      service.refuse(subscription.endpoint, status, { body: "unsubscribed" });
      const error = await dispatcher.send(subscription, "x").catch((e) => e);
      assert.ok(error instanceof WebPushGoneError);
      assert.ok(error instanceof WebPushError);
      assert.equal(error.name, "WebPushGoneError");
      assert.equal(error.status, status);
      assert.equal(error.endpoint, subscription.endpoint);
      assert.equal(error.body, "unsubscribed");
      assert.equal(
        error.message,
        `Cannot send push message: \`${service.origin}\` answered ${status}, the subscription is gone`,
      );
    });
  }

  for (const status of [400, 401, 403, 413, 429, 500, 502, 503]) {
    it(`throws a WebPushError that is not gone for ${status}`, async () => {
      const subscription = await service.subscribe();
      service.refuse(subscription.endpoint, status, { body: `no (${status})` });
      const error = await dispatcher.send(subscription, "x").catch((e) => e);
      assert.ok(error instanceof WebPushError);
      assert.ok(!(error instanceof WebPushGoneError), "must never say to delete");
      assert.equal(error.name, "WebPushError");
      assert.equal(error.status, status);
      assert.equal(error.body, `no (${status})`);
      assert.equal(error.retryAfter, undefined);
      assert.equal(
        error.message,
        `Cannot send push message: \`${service.origin}\` answered ${status}: no (${status})`,
      );
    });
  }

  it("exposes Retry-After of a 429 in seconds, as a delay or an HTTP date", async () => {
    const now = Date.UTC(2031, 5, 1, 12, 0, 0);
    const clocked = await make({ now: () => now });
    const a = await service.subscribe();
    service.refuse(a.endpoint, 429, { headers: { "Retry-After": "120" } });
    assert.equal((await clocked.send(a, "x").catch((e) => e)).retryAfter, 120);
    const b = await service.subscribe();
    service.refuse(b.endpoint, 503, {
      headers: { "Retry-After": new Date(now + 90_000).toUTCString() },
    });
    const error = await clocked.send(b, "x").catch((e) => e);
    assert.equal(error.status, 503);
    assert.equal(error.retryAfter, 90);
  });

  it("does not follow a redirect", async () => {
    const subscription = await service.subscribe();
    const target = await service.subscribe();
    service.refuse(subscription.endpoint, 307, { headers: { Location: target.endpoint } });
    const error = await dispatcher.send(subscription, "x").catch((e) => e);
    assert.ok(error instanceof WebPushError);
    assert.equal(error.status, 307);
    assert.equal(service.received.some((m) => m.endpoint === target.endpoint), false);
  });

  it("sendMany resolves with the gone endpoints and reports each other failure to onError", async () => {
    service.delay = 20;
    service.maxInFlight = 0;
    try {
      const good = await Promise.all(Array.from({ length: 7 }, () => service.subscribe()));
      const gone404 = await service.subscribe();
      const gone410 = await service.subscribe();
      const busy = await service.subscribe();
      const broken = await service.subscribe();
      service.refuse(gone404.endpoint, 404);
      service.refuse(gone410.endpoint, 410);
      service.refuse(busy.endpoint, 429, { headers: { "Retry-After": "5" } });
      service.refuse(broken.endpoint, 500);
      const invalid: PushSubscriptionJSON = { ...good[0]!, keys: { ...good[0]!.keys, auth: "x" } };
      const dead = await unreachableSubscription();
      const all = [
        gone404,
        ...good.slice(0, 3),
        busy,
        invalid,
        gone410,
        dead,
        broken,
        ...good.slice(3),
      ];

      const errors: [unknown, PushSubscriptionJSON][] = [];
      const before = service.received.length;
      const [gone, logged] = await capturingConsoleError(() =>
        dispatcher.sendMany(all, { title: "batch" }, {
          concurrency: 3,
          onError: (error, subscription) => errors.push([error, subscription]),
        })
      );
      assert.ok(Array.isArray(gone));
      assert.deepEqual([...gone].sort(), [gone404.endpoint, gone410.endpoint].sort());
      assert.equal(service.received.length - before, 7);
      assert.equal(errors.length, 4);
      assert.deepEqual(
        gone.failures,
        errors.map(([error, subscription]) => ({ subscription, error })),
        "failures holds what onError was given, in the same order",
      );
      const byEndpoint = new Map(errors.map(([e, s]) => [s, e]));
      assert.equal((byEndpoint.get(busy) as WebPushError).retryAfter, 5);
      assert.equal((byEndpoint.get(busy) as WebPushError).status, 429);
      assert.equal((byEndpoint.get(broken) as WebPushError).status, 500);
      assert.ok(byEndpoint.get(invalid) instanceof TypeError);
      assert.ok(byEndpoint.get(dead) instanceof Error);
      assert.ok(!(byEndpoint.get(dead) instanceof WebPushError), "a network error, no answer");
      assert.deepEqual(logged, [], "onError replaces console.error");
      assert.equal(service.maxInFlight, 3, "concurrency is bounded and used");
    } finally {
      service.delay = 0;
    }
  });

  it("sendMany without onError resolves with the gone endpoints and logs each failure", async () => {
    const good = await service.subscribe();
    const gone = await service.subscribe();
    const busy = await service.subscribe();
    const broken = await service.subscribe();
    const dead = await unreachableSubscription();
    service.refuse(gone.endpoint, 410);
    service.refuse(busy.endpoint, 429, { headers: { "Retry-After": "30" } });
    service.refuse(broken.endpoint, 502, { body: "bad gateway" });
    const before = service.received.length;
    const [result, logged] = await capturingConsoleError(() =>
      dispatcher.sendMany([good, gone, busy, broken, dead], "x", { concurrency: 1 })
    );
    assert.deepEqual([...result], [gone.endpoint]);
    assert.equal(service.received.length - before, 1);
    assert.deepEqual(result.failures.map((f) => f.subscription), [busy, broken, dead]);
    const [busyError, brokenError, deadError] = result.failures.map((f) => f.error);
    assert.equal((busyError as WebPushError).status, 429);
    assert.equal((busyError as WebPushError).retryAfter, 30);
    assert.equal((brokenError as WebPushError).status, 502);
    assert.equal((brokenError as WebPushError).body, "bad gateway");
    assert.ok(deadError instanceof Error && !(deadError instanceof WebPushError));
    assert.deepEqual(
      logged,
      result.failures.map((f) => [
        `WebPushDispatcher.sendMany: push to ${f.subscription.endpoint} failed:`,
        f.error,
      ]),
    );

    const [clean, quiet] = await capturingConsoleError(async () => [
      await dispatcher.sendMany([good], "x"),
      await dispatcher.sendMany([], "x"),
    ]);
    for (const each of clean) {
      assert.deepEqual([...each], []);
      assert.deepEqual(each.failures, []);
    }
    assert.deepEqual(quiet, []);
  });

  it("sendMany goes on and keeps both errors when onError itself throws", async () => {
    const broken = await service.subscribe();
    const good = await service.subscribe();
    service.refuse(broken.endpoint, 500);
    const before = service.received.length;
    const [result, logged] = await capturingConsoleError(() =>
      dispatcher.sendMany([broken, good], "x", {
        concurrency: 1,
        onError: () => {
          throw new Error("logger down");
        },
      })
    );
    assert.deepEqual([...result], []);
    assert.equal(service.received.length - before, 1, "the next subscription was still sent to");
    assert.equal(result.failures.length, 2);
    assert.equal(result.failures[0]!.subscription, broken);
    assert.equal((result.failures[0]!.error as WebPushError).status, 500);
    assert.equal(result.failures[1]!.subscription, broken);
    assert.equal((result.failures[1]!.error as Error).message, "logger down");
    assert.deepEqual(logged, []);
  });

  it("sendMany reports the subscriptions it could not reach once the signal aborts", async () => {
    const subs = await Promise.all(Array.from({ length: 4 }, () => service.subscribe()));
    const controller = new AbortController();
    const reasons: unknown[] = [];
    const before = service.requests;
    controller.abort(new Error("shutting down"));
    const gone = await dispatcher.sendMany(subs, "x", {
      signal: controller.signal,
      onError: (error) => reasons.push(error),
    });
    assert.deepEqual([...gone], []);
    assert.equal(reasons.length, 4);
    assert.equal((reasons[0] as Error).message, "shutting down");
    assert.deepEqual(gone.failures.map((f) => f.subscription), subs);
    assert.equal(service.requests, before);
    await assert.rejects(
      dispatcher.sendMany(subs, "x", { concurrency: 0 }),
      {
        name: "RangeError",
        message: "Cannot send push messages: `concurrency` must be a positive integer, got `0`",
      },
    );
  });

  it("refuses an http: endpoint unless allowInsecureLoopback is set", async () => {
    const strict = new WebPushDispatcher(vapid);
    await assert.rejects(strict.send(await service.subscribe(), "x"), {
      name: "TypeError",
      message: /`endpoint` must be an https: URL, got `http:\/\/127\.0\.0\.1:/,
    });
  });

  it("verifies the push service accepted the token for the right audience only", async () => {
    // The service checks aud against its own origin: a token cached for another origin must
    // never be sent to it.
    const spy = recordingFetch();
    const other = new WebPushDispatcher(vapid, { fetch: spy.fetch });
    const sub = await service.subscribe();
    await other.send({ ...sub, endpoint: "https://elsewhere.example/push/1" }, "x");
    await dispatcher.send(sub, "x");
    assert.equal(service.received.at(-1)!.claims.aud, service.origin);
    assert.deepEqual(service.rejected, []);
  });
});

describe("WebPushDispatcher response handling", () => {
  function trackedBody(size: number): { body: ReadableStream<Uint8Array>; state: string[] } {
    const state: string[] = [];
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= size) {
          state.push("read to the end");
          controller.close();
          return;
        }
        const chunk = new Uint8Array(Math.min(1024, size - sent)).fill(0x61);
        sent += chunk.length;
        controller.enqueue(chunk);
      },
      cancel() {
        state.push("cancelled");
      },
    });
    return { body, state };
  }

  const subscription: PushSubscriptionJSON = {
    endpoint: "https://push.example.net/x",
    expirationTime: null,
    keys: {
      p256dh:
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
      auth: toBase64Url(new Uint8Array(16)),
    },
  };

  it("releases the body of a success response", async () => {
    const tracked = trackedBody(100);
    const spy = recordingFetch(() => new Response(tracked.body, { status: 201 }));
    await new WebPushDispatcher(vapid, { fetch: spy.fetch }).send(subscription, "x");
    assert.deepEqual(tracked.state, ["cancelled"]);
  });

  it("reads at most 4 KiB of an error body and cancels the rest", async () => {
    const tracked = trackedBody(1_000_000);
    const spy = recordingFetch(() => new Response(tracked.body, { status: 400 }));
    const error = await new WebPushDispatcher(vapid, { fetch: spy.fetch })
      .send(subscription, "x")
      .catch((e) => e);
    assert.equal(error.status, 400);
    assert.equal(error.body.length, 4096);
    assert.deepEqual(tracked.state, ["cancelled"]);
  });

  it("reads a short error body to the end", async () => {
    const tracked = trackedBody(10);
    const spy = recordingFetch(() => new Response(tracked.body, { status: 500 }));
    const error = await new WebPushDispatcher(vapid, { fetch: spy.fetch })
      .send(subscription, "x")
      .catch((e) => e);
    assert.equal(error.body, "aaaaaaaaaa");
    assert.equal(tracked.state[0], "read to the end");
  });

  it("accepts 200, 201 and 202 alike", async () => {
    for (const status of [200, 201, 202]) {
      const spy = recordingFetch(() => new Response(null, { status }));
      await new WebPushDispatcher(vapid, { fetch: spy.fetch }).send(subscription, "x");
    }
  });
});
