import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  generateVapidKeys,
  type LiveChannels,
  type PushEnvelope,
  PushFallback,
  type PushSubscriptionJSON,
  WebPushDispatcher,
  type WebPushError,
} from "../../src/webpush/mod.ts";
import { Broker } from "../../mod.ts";
import { LocalPushService } from "./_push_service.ts";

const keys = await generateVapidKeys();
const text = new TextDecoder();

/** The smallest broker: a set of live channels and a log of what was published. */
class FakeBroker implements LiveChannels {
  live = new Map<string, number>();
  published: { channel: string; data: unknown; options: unknown }[] = [];
  clientCount(channel: string): number {
    return this.live.get(channel) ?? 0;
  }
  publish(
    channel: string,
    data: unknown,
    options?: { event?: string; id?: string },
  ): Promise<void> {
    this.published.push({ channel, data, options });
    return Promise.resolve();
  }
}

describe("PushFallback", () => {
  let service: LocalPushService;
  let dispatcher: WebPushDispatcher;
  before(async () => {
    service = await LocalPushService.start();
    dispatcher = await WebPushDispatcher.create({ ...keys, subject: "mailto:a@example.com" }, {
      allowInsecureLoopback: true,
    });
  });
  after(() => service.close());

  function envelopesFor(subscriptions: PushSubscriptionJSON[]): PushEnvelope[] {
    return subscriptions.map((s) => {
      const message = service.received.findLast((m) => m.endpoint === s.endpoint);
      assert.ok(message, `nothing pushed to ${s.endpoint}`);
      return JSON.parse(text.decode(message.plaintext!));
    });
  }

  it("publishes over SSE and pushes nothing when the channel has a live client", async () => {
    const broker = new FakeBroker();
    broker.live.set("user:1", 2);
    const subscription = await service.subscribe();
    const before = service.requests;
    const result = await new PushFallback(broker, dispatcher).deliver("user:1", { n: 1 }, {
      subscriptions: [subscription],
      event: "reply",
      id: "7",
    });
    assert.deepEqual(result, { via: "sse", clients: 2 });
    assert.deepEqual(broker.published, [
      { channel: "user:1", data: { n: 1 }, options: { event: "reply", id: "7" } },
    ]);
    assert.equal(service.requests, before);
  });

  it("pushes the same event name, id and data to every subscription when nobody listens", async () => {
    const broker = new FakeBroker();
    broker.live.set("user:2", 1);
    const subs = [await service.subscribe(), await service.subscribe()];
    const data = { title: "New reply", body: "…", data: { url: "/t/1" } };
    const result = await new PushFallback(broker, dispatcher).deliver("user:1", data, {
      subscriptions: subs,
      event: "reply",
      id: "8",
      urgency: "high",
    });
    assert.deepEqual(result, { via: "push", delivered: 2, gone: [] });
    assert.deepEqual(broker.published, []);
    assert.deepEqual(envelopesFor(subs), [
      { event: "reply", data, id: "8" },
      { event: "reply", data, id: "8" },
    ]);
    assert.equal(service.received.at(-1)!.headers.get("Urgency"), "high");
  });

  it("names the event `message` when none is given and returns gone endpoints", async () => {
    const live = await service.subscribe();
    const gone = await service.subscribe();
    const failing = await service.subscribe();
    service.refuse(gone.endpoint, 410);
    service.refuse(failing.endpoint, 503);
    const errors: unknown[] = [];
    const result = await new PushFallback(new FakeBroker(), dispatcher).deliver("u", "hi", {
      subscriptions: [live, gone, failing],
      onError: (error) => errors.push(error),
    });
    assert.deepEqual(result, { via: "push", delivered: 1, gone: [gone.endpoint] });
    assert.equal(errors.length, 1);
    assert.deepEqual(envelopesFor([live]), [{ event: "message", data: "hi" }]);
  });

  it("logs a failed push to console.error when no onError is given, and resolves", async () => {
    const live = await service.subscribe();
    const gone = await service.subscribe();
    const failing = await service.subscribe();
    service.refuse(gone.endpoint, 404);
    service.refuse(failing.endpoint, 500, { body: "oops" });
    const logged: unknown[][] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => {
      logged.push(args);
    };
    let result;
    try {
      result = await new PushFallback(new FakeBroker(), dispatcher).deliver("u", "hi", {
        subscriptions: [failing, live, gone],
      });
    } finally {
      console.error = original;
    }
    assert.deepEqual(result, { via: "push", delivered: 1, gone: [gone.endpoint] });
    assert.equal(logged.length, 1);
    assert.equal(logged[0]![0], `WebPushDispatcher.sendMany: push to ${failing.endpoint} failed:`);
    assert.equal((logged[0]![1] as WebPushError).status, 500);
  });

  it("counts a failed push once when onError throws", async () => {
    const live = await service.subscribe();
    const failing = await service.subscribe();
    service.refuse(failing.endpoint, 429);
    const result = await new PushFallback(new FakeBroker(), dispatcher).deliver("u", "hi", {
      subscriptions: [live, failing],
      onError: () => {
        throw new Error("logger down");
      },
    });
    assert.deepEqual(result, { via: "push", delivered: 1, gone: [] });
  });

  it("pushes nothing and reports nothing for a user without subscriptions", async () => {
    const result = await new PushFallback(new FakeBroker(), dispatcher).deliver("u", 1, {
      subscriptions: [],
    });
    assert.deepEqual(result, { via: "push", delivered: 0, gone: [] });
  });

  it("works with the real Broker: SSE while the page is open, push once it closed", async () => {
    const broker = new Broker();
    try {
      const notify = new PushFallback(broker, dispatcher);
      const subscription = await service.subscribe();
      const stream = broker.subscribe("user:9");
      const reader = stream.readable.getReader();
      const sse = await notify.deliver("user:9", { text: "hello" }, {
        subscriptions: [subscription],
        event: "chat",
      });
      assert.deepEqual(sse, { via: "sse", clients: 1 });
      let frame = "";
      while (!frame.includes("\n\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        frame += text.decode(value);
      }
      assert.match(frame, /event: chat\ndata: \{"text":"hello"\}\n\n/);
      await reader.cancel();
      stream.close();
      assert.equal(broker.clientCount("user:9"), 0);

      const push = await notify.deliver("user:9", { text: "are you there?" }, {
        subscriptions: [subscription],
        event: "chat",
      });
      assert.deepEqual(push, { via: "push", delivered: 1, gone: [] });
      assert.deepEqual(envelopesFor([subscription]), [
        { event: "chat", data: { text: "are you there?" } },
      ]);
    } finally {
      await broker.close();
    }
  });
});
