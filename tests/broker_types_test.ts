// Type-level checks of `Broker<Events>`. `deno test` type-checks this file, so every
// `@ts-expect-error` below must meet a real compile error: a mistake the types stop accepting
// makes the Deno run fail with "Unused '@ts-expect-error' directive". Each line also runs, and
// the test asserts what the runtime does with it, so Bun (which does not type-check) tests the
// same rules at run time.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Broker, type BrokerOptions, STREAM_RESET_EVENT } from "../mod.ts";

type Events = {
  notification: { title: string; body?: string };
  unread: number;
};

function typedBroker(): Broker<Events> {
  return new Broker<Events>({ events: ["notification", "unread"], heartbeat: null });
}

describe("Broker<Events> types", () => {
  it("accepts declared names with their data type", async () => {
    const broker = typedBroker();
    await broker.publish("user:1", { title: "Hi" }, { event: "notification" });
    await broker.publish("user:1", 3, { event: "unread" });
    await broker.broadcast({ title: "To all", body: "hello" }, { event: "notification" });
    const declared: readonly string[] | undefined = broker.events;
    assert.deepEqual(declared, ["notification", "unread"]);
    await broker.close();
  });

  it("makes an undeclared event name a compile error and a runtime TypeError", async () => {
    const broker = typedBroker();
    const typo = { event: "notificaton" } as const;
    // @ts-expect-error "notificaton" is not a declared event name
    await assert.rejects(broker.publish("user:1", { title: "x" }, typo), TypeError);
    // @ts-expect-error "deleted" is not a declared event name
    await assert.rejects(broker.broadcast(1, { event: "deleted" }), TypeError);
    // An unnamed event is a "message", which is not declared either.
    // @ts-expect-error the options with an event name are required when "message" is not declared
    await assert.rejects(broker.publish("user:1", 1), TypeError);
    // @ts-expect-error likewise for broadcast
    await assert.rejects(broker.broadcast(1), TypeError);
    await broker.close();
  });

  it("makes the wrong data for a declared name a compile error", async () => {
    const broker = typedBroker();
    // Both go out at run time (the broker does not inspect data); the compiler refuses them.
    // @ts-expect-error `unread` carries a number
    await broker.publish("user:1", "three", { event: "unread" });
    // @ts-expect-error a notification needs a string title
    await broker.broadcast({ title: 42 }, { event: "notification" });
    // @ts-expect-error a notification has no `url`
    await broker.publish("user:1", { title: "x", url: "/" }, { event: "notification" });
    await broker.close();
  });

  it("makes an undeclared name in the `events` option a compile error", () => {
    // @ts-expect-error "unraed" is not a key of Events
    const options: BrokerOptions<Events> = { events: ["notification", "unraed"] };
    assert.deepEqual(options.events, ["notification", "unraed"]);
    // @ts-expect-error the list holds names, not data
    assert.throws(() => new Broker<Events>({ events: [42] }), TypeError);
  });

  it("accepts an interface as Events", async () => {
    interface Chat {
      message: string;
      typing: { user: string };
    }
    const broker = new Broker<Chat>({ events: ["message", "typing"], heartbeat: null });
    await broker.publish("room", "hi");
    await broker.publish("room", { user: "ada" }, { event: "typing" });
    // @ts-expect-error typing carries a user
    await broker.publish("room", "ada", { event: "typing" });
    await broker.close();
  });

  it("declares names once with a vocabulary object: checked both ways, or inferred", async () => {
    const checked = new Broker<Events>({
      events: { notification: true, unread: true },
      heartbeat: null,
    });
    assert.deepEqual(checked.events, ["notification", "unread"]);
    await checked.close();
    // @ts-expect-error "unread" is missing from the vocabulary: names cannot drift from the type
    new Broker<Events>({ events: { notification: true }, heartbeat: null }).close();
    // @ts-expect-error "deleted" is not a key of Events
    new Broker<Events>({ events: { notification: true, unread: true, deleted: true } }).close();

    const inferred = new Broker({ events: { price: true, halt: true }, heartbeat: null });
    await inferred.publish("ticker", 12.5, { event: "price" });
    // @ts-expect-error "volume" is not among the inferred names
    await assert.rejects(inferred.publish("ticker", 1, { event: "volume" }), TypeError);
    await inferred.close();
    // A value other than `true` is refused at run time too.
    assert.throws(
      // @ts-expect-error a vocabulary's values are `true`
      () => new Broker({ events: { price: "yes" } }),
      /set to `true`, got `price: yes`/,
    );
  });

  it("infers the names of an untyped list", async () => {
    const broker = new Broker({ events: ["join", "leave"], heartbeat: null });
    await broker.publish("room", { user: "ada" }, { event: "join" });
    // @ts-expect-error "kick" is not among the inferred names
    await assert.rejects(broker.publish("room", 1, { event: "kick" }), TypeError);
    await broker.close();
  });

  it(`refuses "${STREAM_RESET_EVENT}" at run time, even when declared`, async () => {
    type WithReset = { "stream-reset": string; ok: string };
    const broker = new Broker<WithReset>({ events: ["stream-reset", "ok"], heartbeat: null });
    await assert.rejects(broker.publish("a", "x", { event: STREAM_RESET_EVENT }), TypeError);
    await broker.close();
  });

  it("accepts any name and data without an Events type", async () => {
    const broker = new Broker({ heartbeat: null });
    await broker.publish("a", { anything: [1, 2] }, { event: "whatever" });
    await broker.publish("a", "plain");
    await broker.broadcast(null, { event: "ping", id: "7" });
    await broker.close();
  });

  it("types channels, options and return values", async () => {
    const broker = typedBroker();
    // @ts-expect-error channels are strings
    assert.throws(() => broker.subscribe(42), TypeError);
    // @ts-expect-error publish ids are strings
    await assert.rejects(broker.publish("a", 1, { event: "unread", id: { n: 1 } }), TypeError);
    const stream = broker.subscribe(["a", "b"], { lastEventId: "x" });
    const count: number = broker.clientCount("a");
    assert.equal(count, 1);
    stream.close();
    await broker.close();
  });
});
