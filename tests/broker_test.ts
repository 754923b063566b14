import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  Broker,
  BrokerClosedError,
  BrokerLimitError,
  type BrokerMetrics,
  type BrokerOptions,
  EventParserStream,
  type EventStream,
  formatMetrics,
  type ParsedEvent,
  STREAM_RESET_EVENT,
} from "../mod.ts";
import { delay, reasonOf, runtime, waitFor } from "./_helpers.ts";

/** A stream being read in the background: its events so far, and the end of its body. */
interface Tap {
  events: ParsedEvent[];
  done: Promise<void>;
}

function tap(stream: EventStream): Tap {
  const events: ParsedEvent[] = [];
  const parsed = stream.readable.pipeThrough(new EventParserStream());
  const done = (async () => {
    for await (const event of parsed as unknown as AsyncIterable<ParsedEvent>) events.push(event);
  })();
  return { events, done };
}

/** Ends the stream, once a replay in flight has had its turn, and returns all it carried. */
async function drain(stream: EventStream, reading: Tap = tap(stream)): Promise<ParsedEvent[]> {
  await delay(0);
  stream.close();
  await reading.done;
  return reading.events;
}

/** A broker without timers, so that a unit test leaves nothing behind. */
function quietBroker<E extends Record<string, unknown> = Record<string, unknown>>(
  options: BrokerOptions<E> = {},
): Broker<E> {
  return new Broker<E>({ heartbeat: null, writeTimeout: null, ...options });
}

const data = (events: ParsedEvent[]): string[] => events.map((event) => event.data);

/** The broker's epoch: the part of its generated ids before the dash. */
async function idsOf(broker: Broker, channel: string, count: number): Promise<string[]> {
  const stream = broker.subscribe(channel);
  const reading = tap(stream);
  for (let n = 0; n < count; n++) await broker.publish(channel, `probe ${n}`);
  return (await drain(stream, reading)).map((event) => event.lastEventId);
}

describe("Broker channels", () => {
  it("subscribe registers on every channel at once: a publish right after reaches the stream", async () => {
    const broker = quietBroker();
    const stream = broker.subscribe(["a", "b"]);
    // No await between subscribe() and publish(): nothing to wait for.
    const published = [broker.publish("a", "to a"), broker.publish("b", "to b")];
    await Promise.all(published);
    assert.deepEqual(data(await drain(stream)), ["to a", "to b"]);
    await broker.close();
  });

  it("publish reaches every subscriber of its channel and no other", async () => {
    const broker = quietBroker();
    const a1 = broker.subscribe("a");
    const a2 = broker.subscribe("a");
    const b = broker.subscribe("b");
    const taps = [a1, a2, b].map((stream) => tap(stream));
    await broker.publish("a", "for a", { event: "note" });
    await broker.publish("b", "for b");
    await broker.publish("c", "for nobody");
    assert.deepEqual(await drain(a1, taps[0]), [
      { type: "note", data: "for a", lastEventId: "" },
    ]);
    assert.deepEqual(data(await drain(a2, taps[1])), ["for a"]);
    assert.deepEqual(data(await drain(b, taps[2])), ["for b"]);
    await broker.close();
  });

  it("broadcast reaches every client once, even one on several channels", async () => {
    const broker = quietBroker();
    const streams = [
      broker.subscribe(["a", "b", "c"]),
      broker.subscribe("a"),
      broker.subscribe(["b", "b"]),
    ];
    const taps = streams.map((stream) => tap(stream));
    await broker.broadcast({ text: "to all" }, { event: "announcement" });
    for (const [n, stream] of streams.entries()) {
      assert.deepEqual(await drain(stream, taps[n]), [
        { type: "announcement", data: '{"text":"to all"}', lastEventId: "" },
      ]);
    }
    await broker.close();
  });

  it("clientCount counts clients, not memberships; duplicate channel names count once", async () => {
    const broker = quietBroker();
    const one = broker.subscribe(["a", "b", "c"]);
    const two = broker.subscribe(["a", "a"]);
    assert.equal(broker.clientCount(), 2);
    assert.equal(broker.clientCount("a"), 2);
    assert.equal(broker.clientCount("b"), 1);
    assert.equal(broker.clientCount("nope"), 0);
    assert.equal(broker.metrics().clients, 2);
    one.close();
    two.close();
    await broker.close();
  });

  const leaves: [string, (stream: EventStream, abort: AbortController) => Promise<void>][] = [
    ["its body is cancelled", (stream) => stream.readable.cancel()],
    ["its signal aborts", (_stream, abort) => Promise.resolve(abort.abort())],
    ["it is closed", (stream) => Promise.resolve(stream.close())],
  ];
  for (const [how, leave] of leaves) {
    it(`a client leaves every channel the moment ${how}`, async () => {
      const broker = quietBroker();
      const abort = new AbortController();
      const stream = broker.subscribe(["a", "b"], { signal: abort.signal });
      const stays = broker.subscribe("b");
      const reading = tap(stays);
      await leave(stream, abort);
      assert.ok(stream.signal.aborted);
      assert.equal(broker.clientCount(), 1);
      assert.equal(broker.clientCount("a"), 0);
      assert.equal(broker.clientCount("b"), 1);
      const before = broker.metrics().eventsDelivered;
      await broker.publish("a", "nobody is here");
      await broker.publish("b", "one is here");
      assert.equal(broker.metrics().eventsDelivered, before + 1);
      assert.deepEqual(data(await drain(stays, reading)), ["one is here"]);
      assert.equal(broker.clientCount(), 0);
      assert.equal(broker.clientCount("b"), 0);
      await broker.close();
    });
  }

  it("subscribe with an aborted signal returns an ended stream and registers nothing", async () => {
    const broker = quietBroker();
    const stream = broker.subscribe("a", { signal: AbortSignal.abort() });
    assert.ok(stream.signal.aborted);
    assert.equal(broker.clientCount(), 0);
    assert.equal(broker.clientCount("a"), 0);
    await stream.readable.cancel();
    await broker.close();
  });

  it("response() streams with the SSE headers and resumes from the Last-Event-ID header", async () => {
    const broker = quietBroker({ history: 10 });
    const ids = await idsOf(broker as Broker, "room", 3);
    const request = new Request("http://localhost/events", {
      headers: { "Last-Event-ID": ids[0]! },
    });
    const response = broker.response("room", request, { headers: { "X-Room": "room" } });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
    assert.equal(response.headers.get("x-room"), "room");
    assert.equal(broker.clientCount("room"), 1);
    const events: ParsedEvent[] = [];
    const parsed = response.body!.pipeThrough(new EventParserStream());
    const reader = parsed.getReader();
    while (events.length < 2) events.push((await reader.read()).value!);
    assert.deepEqual(data(events), ["probe 1", "probe 2"]);
    await reader.cancel();
    await waitFor(() => broker.clientCount() === 0, 1_000, "the client to leave");
    await broker.close();
  });
});

describe("Broker encodes each event once", () => {
  it("serializes JSON data once for 100 subscribers", async () => {
    const broker = quietBroker();
    const streams = Array.from({ length: 100 }, () => broker.subscribe("news"));
    const taps = streams.map((stream) => tap(stream));
    let calls = 0;
    const payload = {
      toJSON(): unknown {
        calls++;
        return { headline: "once" };
      },
    };
    await broker.publish("news", payload, { event: "story" });
    assert.equal(calls, 1);
    for (const [n, stream] of streams.entries()) {
      assert.deepEqual(await drain(stream, taps[n]), [
        { type: "story", data: '{"headline":"once"}', lastEventId: "" },
      ]);
    }
    await broker.close();
  });

  it("hands the same bytes, the same Uint8Array, to every subscriber", async () => {
    const broker = quietBroker();
    const readers = [broker.subscribe("a"), broker.subscribe(["a", "b"])].map((stream) =>
      stream.readable.getReader()
    );
    for (const reader of readers) await reader.read(); // the opening comment
    const next = readers.map((reader) => reader.read());
    await broker.publish("a", "shared", { event: "x" });
    const [first, second] = await Promise.all(next);
    assert.equal(new TextDecoder().decode(first!.value), "event: x\ndata: shared\n\n");
    assert.equal(first!.value, second!.value, "both subscribers got the very same chunk object");
    for (const reader of readers) await reader.cancel();
    await broker.close();
  });
});

describe("Broker bounded buffers", () => {
  it("a publish never waits for a slow client: 200 readers get everything, the stalled one is disconnected", async () => {
    const broker = quietBroker({ bufferSize: 16 });
    const readers = Array.from({ length: 200 }, () => broker.subscribe("feed"));
    const taps = readers.map((stream) => tap(stream));
    const stalled = broker.subscribe("feed"); // never read
    const total = 1_000;
    for (let n = 0; n < total; n++) {
      const started = performance.now();
      await broker.publish("feed", n);
      assert.ok(performance.now() - started < 1_000, "a publish must not wait for any client");
      // A producer that yields now and then, as a real one does; batches stay below bufferSize.
      if (n % 8 === 7) await delay(0);
    }
    assert.equal(stalled.signal.aborted, true);
    assert.equal(reasonOf(stalled).reason, "overflow");
    assert.equal(broker.metrics().slowConsumers, 1);
    assert.equal(broker.clientCount(), 200);
    const expected = Array.from({ length: total }, (_, n) => String(n));
    for (const [n, stream] of readers.entries()) {
      assert.equal(stream.signal.aborted, false);
      assert.deepEqual(data(await drain(stream, taps[n])), expected);
    }
    await stalled.readable.cancel();
    await broker.close();
  });

  it("bufferBytes bounds a client's buffer whatever the frame count", async () => {
    const broker = quietBroker({ bufferSize: 1_000, bufferBytes: 10_000 });
    const stalled = broker.subscribe("big");
    let sent = 0;
    while (!stalled.signal.aborted && sent < 1_000) {
      await broker.publish("big", "x".repeat(1_000));
      sent++;
    }
    assert.equal(reasonOf(stalled).reason, "overflow");
    assert.ok(sent <= 12, `disconnected after ${sent} events of 1 KB with a 10 KB bound`);
    await stalled.readable.cancel();
    await broker.close();
  });

  it('"drop-oldest" keeps a stalled client with only its newest frames', async () => {
    const broker = quietBroker({ bufferSize: 8, overflow: "drop-oldest" });
    const stalled = broker.subscribe("feed");
    for (let n = 0; n < 500; n++) await broker.publish("feed", n);
    assert.equal(stalled.signal.aborted, false);
    const got = data(await drain(stalled)).map(Number);
    assert.ok(got.length > 0 && got.length <= 8, `kept ${got.length} frames with bufferSize 8`);
    const newest = Array.from({ length: got.length }, (_, i) => 500 - got.length + i);
    assert.deepEqual(got, newest);
    assert.ok(broker.metrics().slowConsumers >= 500 - 8, "dropped frames are counted");
    await broker.close();
  });
});

describe("Broker declared events", () => {
  it("publishing an undeclared name throws TypeError and sends nothing", async () => {
    const broker = quietBroker<{ note: string; read: string }>({ events: ["note", "read"] });
    const stream = broker.subscribe("a");
    const reading = tap(stream);
    const loose = broker as unknown as Broker;
    await assert.rejects(loose.publish("a", "x", { event: "nope" }), {
      name: "TypeError",
      message: /^Cannot publish event: `nope` is not a declared event name/,
    });
    // An event without a name is a "message", which is not declared here.
    await assert.rejects(loose.publish("a", "x"), { name: "TypeError", message: /`message`/ });
    await assert.rejects(loose.broadcast("x", { event: "nope" }), TypeError);
    await broker.publish("a", "fine", { event: "note" });
    assert.deepEqual(broker.events, ["note", "read"]);
    assert.deepEqual(await drain(stream, reading), [
      { type: "note", data: "fine", lastEventId: "" },
    ]);
    assert.equal(broker.metrics().eventsPublished, 1);
    await broker.close();
  });

  it('an unnamed event is allowed when "message" is declared', async () => {
    const broker = quietBroker({ events: ["message"] });
    const stream = broker.subscribe("a");
    const reading = tap(stream);
    await broker.publish("a", "plain");
    assert.deepEqual(data(await drain(stream, reading)), ["plain"]);
    await broker.close();
  });

  it(`the name "${STREAM_RESET_EVENT}" is reserved, with or without a vocabulary`, async () => {
    const open = quietBroker();
    await assert.rejects(open.publish("a", "x", { event: STREAM_RESET_EVENT }), {
      name: "TypeError",
      message: /reserved/,
    });
    await assert.rejects(open.broadcast("x", { event: STREAM_RESET_EVENT }), TypeError);
    const strict = quietBroker({ events: [STREAM_RESET_EVENT, "ok"] });
    await assert.rejects(strict.publish("a", "x", { event: STREAM_RESET_EVENT }), TypeError);
    await open.close();
    await strict.close();
  });
});

describe("Broker history and Last-Event-ID replay", () => {
  it("gives events without an id increasing ids from one epoch", async () => {
    const broker = quietBroker({ history: 5 });
    const ids = [...await idsOf(broker, "a", 4), ...await idsOf(broker, "b", 4)];
    const parts = ids.map((id) => /^([0-9a-z]+)-(\d+)$/.exec(id));
    assert.ok(parts.every((match) => match !== null), `ids look like epoch-seq: ${ids}`);
    assert.equal(new Set(parts.map((match) => match![1])).size, 1);
    const seqs = parts.map((match) => Number(match![2]));
    for (let i = 1; i < seqs.length; i++) {
      assert.ok(seqs[i]! > seqs[i - 1]!, `ids increase: ${ids}`);
    }
    await broker.close();
  });

  it("replays exactly the events after Last-Event-ID, in order, before any new one", async () => {
    const broker = quietBroker({ history: 100 });
    const ids = await idsOf(broker, "a", 10);
    await broker.publish("other", "not mine");
    const stream = broker.subscribe("a", { lastEventId: ids[3] });
    const live = [broker.publish("a", "live 1"), broker.publish("a", "live 2")];
    await Promise.all(live);
    const events = await drain(stream);
    assert.deepEqual(data(events), [
      "probe 4",
      "probe 5",
      "probe 6",
      "probe 7",
      "probe 8",
      "probe 9",
      "live 1",
      "live 2",
    ]);
    assert.deepEqual(events.slice(0, 6).map((event) => event.lastEventId), ids.slice(4));
    assert.equal(broker.metrics().replayHits, 1);
    await broker.close();
  });

  it("has no duplicate and no gap at the seam however publishes and resumes interleave", async () => {
    const broker = quietBroker({ history: 10_000 });
    const seen: string[] = [];
    let lastEventId = "";
    let published = 0;
    let connection = new AbortController();
    let stream = broker.subscribe("s", { signal: connection.signal });
    const producing = (async () => {
      for (; published < 600; published++) {
        await broker.publish("s", String(published));
        if (published % 7 === 0) await delay(0);
      }
    })();
    while (published < 600) {
      const reading = tap(stream);
      await delay(Math.floor(Math.random() * 3));
      // Leave mid-stream like a dropped connection: only what was read so far counts.
      connection.abort();
      await reading.done;
      for (const event of reading.events) {
        seen.push(event.data);
        lastEventId = event.lastEventId;
      }
      connection = new AbortController();
      stream = broker.subscribe("s", { signal: connection.signal, lastEventId });
    }
    await producing;
    for (const event of await drain(stream)) seen.push(event.data);
    assert.deepEqual(seen, Array.from({ length: 600 }, (_, n) => String(n)));
    assert.ok(broker.metrics().replayHits >= 5, `${broker.metrics().replayHits} resumes`);
    assert.equal(broker.metrics().replayMisses, 0);
    await broker.close();
  });

  it("sends the gap signal for an id that fell out of history, with the newest id", async () => {
    const broker = quietBroker({ history: 3 });
    const ids = await idsOf(broker, "a", 10);
    const stream = broker.subscribe(["a", "b"], { lastEventId: ids[1] });
    const events = await drain(stream);
    const reset = events.at(-1)!;
    assert.equal(reset.type, STREAM_RESET_EVENT);
    assert.deepEqual(JSON.parse(reset.data), { channels: ["a"], lastEventId: ids[1] });
    assert.equal(reset.lastEventId, ids[9]);
    assert.equal(events.filter((event) => event.type === STREAM_RESET_EVENT).length, 1);
    assert.equal(broker.metrics().replayMisses, 1);
    // Resuming from the gap signal's id is a clean resume.
    const again = broker.subscribe(["a", "b"], { lastEventId: reset.lastEventId });
    await broker.publish("b", "after");
    assert.deepEqual(data(await drain(again)), ["after"]);
    await broker.close();
  });

  it("treats unknown, forged and garbage ids as a gap: never an error, never another channel's events", async () => {
    const broker = quietBroker({ history: 50 });
    const ours = await idsOf(broker, "mine", 3);
    const epoch = ours[0]!.split("-")[0];
    await broker.publish("theirs", "secret", { id: "their-1" });
    await broker.publish("theirs", "secret 2");
    const newest = (await idsOf(broker, "mine", 1))[0];
    const garbage = [
      "x".repeat(100_000),
      "\u0000\u0001\u00ff\ufffd binary",
      "../../../etc/passwd",
      "999999999999999999999",
      `${epoch}-999999999999999`,
      `${epoch}-9999999999999999999`,
      `${epoch}-1e3`,
      `${epoch}--1`,
      `${epoch}-`,
      "zzzzzz-1",
      "their-1", // a real id, but of a channel this client is not on
      "-1",
      "NaN",
      "🙂",
    ];
    for (const lastEventId of garbage) {
      const stream = broker.subscribe("mine", { lastEventId });
      const events = await drain(stream);
      assert.equal(events.length, 1, `one event for ${JSON.stringify(lastEventId.slice(0, 40))}`);
      assert.equal(events[0]!.type, STREAM_RESET_EVENT);
      assert.equal(events[0]!.lastEventId, newest);
      const body = JSON.parse(events[0]!.data);
      assert.deepEqual(body.channels, ["mine"]);
      assert.equal(body.lastEventId, lastEventId.slice(0, 256));
    }
    assert.equal(broker.metrics().replayMisses, garbage.length);
    await broker.close();
  });

  it("answers 200 with the gap signal for a garbage Last-Event-ID header", async () => {
    const broker = quietBroker({ history: 5 });
    await broker.publish("a", "one");
    for (const header of ["\u00ff\u00fe", "../x", "999999999999999999999", "y".repeat(8_000)]) {
      const request = new Request("http://localhost/", { headers: { "Last-Event-ID": header } });
      const response = broker.response("a", request);
      assert.equal(response.status, 200);
      const reader = response.body!.pipeThrough(new EventParserStream()).getReader();
      const { value } = await reader.read();
      assert.equal(value!.type, STREAM_RESET_EVENT);
      await reader.cancel();
    }
    await waitFor(() => broker.clientCount() === 0, 1_000, "the clients to leave");
    await broker.close();
  });

  for (const overflow of ["disconnect", "drop-oldest"] as const) {
    it(`delivers a replay longer than bufferSize whole (overflow "${overflow}")`, async () => {
      const broker = quietBroker({ history: 500, bufferSize: 4, overflow });
      const [first] = await idsOf(broker as Broker, "a", 1);
      for (let n = 1; n < 300; n++) await broker.publish("a", `probe ${n}`);
      const stream = broker.subscribe("a", { lastEventId: first });
      const reading = tap(stream);
      await broker.publish("a", "live");
      await waitFor(() => reading.events.length === 300, 2_000, "the replay and the live event");
      assert.equal(stream.signal.aborted, false);
      assert.equal(broker.metrics().slowConsumers, 0);
      const expected = Array.from({ length: 299 }, (_, n) => `probe ${n + 1}`);
      assert.deepEqual(data(await drain(stream, reading)), [...expected, "live"]);
      await broker.close();
    });
  }

  it("resumes a client on several channels, broadcasts included, from one Last-Event-ID", async () => {
    const broker = quietBroker({ history: 100 });
    const first = broker.subscribe(["a", "b"]);
    const reading = tap(first);
    await broker.publish("a", "a1");
    await broker.publish("b", "b1");
    const before = await drain(first, reading);
    const lastEventId = before.at(-1)!.lastEventId;
    await broker.publish("b", "b2");
    await broker.publish("c", "c1");
    await broker.broadcast("all1");
    await broker.publish("a", "a2");
    const resumed = broker.subscribe(["b", "a"], { lastEventId });
    assert.deepEqual(data(await drain(resumed)), ["b2", "all1", "a2"]);
    assert.equal(broker.metrics().replayHits, 1);
    await broker.close();
  });

  it("honours ids given by the publisher and resumes from them", async () => {
    const broker = quietBroker({ history: 100 });
    const live = broker.subscribe("orders");
    const reading = tap(live);
    for (let n = 1; n <= 5; n++) await broker.publish("orders", `order ${n}`, { id: `order-${n}` });
    const events = await drain(live, reading);
    assert.deepEqual(events.map((event) => event.lastEventId), [
      "order-1",
      "order-2",
      "order-3",
      "order-4",
      "order-5",
    ]);
    const resumed = broker.subscribe("orders", { lastEventId: "order-2" });
    assert.deepEqual(data(await drain(resumed)), ["order 3", "order 4", "order 5"]);
    await broker.close();
  });

  it("keeps history per channel: a busy channel does not push a quiet one out", async () => {
    const broker = quietBroker({ history: 2 });
    const ids = await idsOf(broker, "quiet", 1);
    await broker.publish("quiet", "kept");
    for (let n = 0; n < 50; n++) await broker.publish("busy", n);
    const stream = broker.subscribe("quiet", { lastEventId: ids[0] });
    assert.deepEqual(data(await drain(stream)), ["kept"]);
    await broker.close();
  });

  it("without history a Last-Event-ID is ignored", async () => {
    const broker = quietBroker();
    await broker.publish("a", "old");
    const stream = broker.subscribe("a", { lastEventId: "whatever" });
    await broker.publish("a", "new");
    assert.deepEqual(await drain(stream), [{ type: "message", data: "new", lastEventId: "" }]);
    assert.equal(broker.metrics().replayMisses, 0);
    await broker.close();
  });
});

describe("Broker limits and shutdown", () => {
  it("maxClients: beyond it subscribe throws BrokerLimitError and response() answers 503", async () => {
    const broker = quietBroker({ maxClients: 2, retryAfter: 7 });
    const one = broker.subscribe("a");
    const two = broker.subscribe("b");
    assert.throws(() => broker.subscribe("c"), (error: unknown) => {
      assert.ok(error instanceof BrokerLimitError);
      assert.ok(error instanceof RangeError);
      assert.equal(error.limit, 2);
      assert.equal(error.channel, undefined);
      assert.match(error.message, /^Cannot subscribe: the broker has its maximum of 2 clients/);
      return true;
    });
    const refused = broker.response("c", new Request("http://localhost/"));
    assert.equal(refused.status, 503);
    assert.match(refused.headers.get("retry-after")!, /^([7-9]|1[0-4])$/); // 7 to 14 s, jittered
    assert.match(await refused.text(), /maximum of 2 clients/);
    assert.equal(broker.metrics().connectionsRejected, 2);
    one.close();
    const three = broker.subscribe("c");
    assert.equal(broker.clientCount(), 2);
    two.close();
    three.close();
    await broker.close();
  });

  it("response() answers 503 with Retry-After once the broker is closed, subscribe() throws", async () => {
    const broker = quietBroker({ retryAfter: 3 });
    await broker.close();
    const refused = broker.response("a", new Request("http://localhost/"));
    assert.equal(refused.status, 503);
    assert.match(refused.headers.get("retry-after")!, /^[3-6]$/); // 3 to 6 s, jittered
    assert.match(await refused.text(), /closed/);
    assert.throws(() => broker.subscribe("a"), BrokerClosedError);
  });

  it("maxClientsPerChannel: a full channel refuses, the others still accept", async () => {
    const broker = quietBroker({ maxClientsPerChannel: 1 });
    const a = broker.subscribe("a");
    assert.throws(() => broker.subscribe(["b", "a"]), (error: unknown) => {
      assert.ok(error instanceof BrokerLimitError);
      assert.equal(error.channel, "a");
      assert.equal(error.limit, 1);
      assert.match(error.message, /channel `a` has its maximum of 1 clients/);
      return true;
    });
    assert.equal(broker.clientCount("b"), 0, "a refused client is on no channel");
    const b = broker.subscribe("b");
    const refused = broker.response("a", new Request("http://localhost/"));
    assert.equal(refused.status, 503);
    assert.match(refused.headers.get("retry-after")!, /^([5-9]|10)$/); // 5 to 10 s, jittered
    await refused.body?.cancel();
    a.close();
    b.close();
    await broker.close();
  });

  it("close() ends every stream, aborts their signals, and later calls fail with BrokerClosedError", async () => {
    const broker = quietBroker();
    const streams = Array.from({ length: 20 }, (_, n) => broker.subscribe(`c${n % 3}`));
    const taps = streams.map((stream) => tap(stream));
    await broker.publish("c0", "before");
    await broker.close();
    for (const [n, stream] of streams.entries()) {
      assert.equal(reasonOf(stream).reason, "closed");
      await taps[n]!.done; // the body ends
    }
    assert.deepEqual(data(taps[0]!.events), ["before"]);
    assert.equal(broker.clientCount(), 0);
    await assert.rejects(broker.publish("c0", "late"), BrokerClosedError);
    await assert.rejects(broker.broadcast("late"), (error: unknown) => {
      assert.ok(error instanceof BrokerClosedError);
      assert.equal(error.message, "Cannot publish: the broker is closed");
      return true;
    });
    assert.throws(() => broker.subscribe("c0"), BrokerClosedError);
    await broker.close(); // twice is fine
  });

  it("close({ event, retry: [min, max] }) sends each client a final event and its own retry", async () => {
    const broker = quietBroker();
    const retries: number[] = [];
    const streams = Array.from({ length: 40 }, () => broker.subscribe("a"));
    const done = streams.map(async (stream) => {
      const events: ParsedEvent[] = [];
      const parser = new EventParserStream({ onRetry: (ms) => retries.push(ms) });
      for await (
        const event of stream.readable.pipeThrough(parser) as unknown as AsyncIterable<
          ParsedEvent
        >
      ) {
        events.push(event);
      }
      return events;
    });
    await broker.close({ event: { event: "bye", data: "restarting" }, retry: [1_000, 10_000] });
    for (const events of await Promise.all(done)) {
      assert.deepEqual(events, [{ type: "bye", data: "restarting", lastEventId: "" }]);
    }
    assert.equal(retries.length, 40);
    assert.ok(retries.every((ms) => Number.isInteger(ms) && ms >= 1_000 && ms <= 10_000));
    assert.ok(new Set(retries).size > 1, `retries are spread out: ${retries}`);
  });

  it("close() with a bad retry or event throws first and leaves the broker open", async () => {
    const broker = quietBroker();
    const stream = broker.subscribe("a");
    await assert.rejects(broker.close({ retry: [10, 1] }), RangeError);
    await assert.rejects(broker.close({ retry: -1 }), RangeError);
    await assert.rejects(broker.close({ event: { event: "a\nb" } }), TypeError);
    assert.equal(stream.signal.aborted, false);
    await broker.publish("a", "still open");
    assert.deepEqual(data(await drain(stream)), ["still open"]);
    await broker.close();
  });
});

describe("Broker metrics", () => {
  it("counts connections, rejections, events, deliveries, bytes, slow consumers and replays", async () => {
    const broker = quietBroker({ history: 10, bufferSize: 2, maxClients: 3 });
    const zero: BrokerMetrics = {
      clients: 0,
      connectionsTotal: 0,
      connectionsRejected: 0,
      eventsPublished: 0,
      eventsDelivered: 0,
      bytesQueued: 0,
      slowConsumers: 0,
      replayHits: 0,
      replayMisses: 0,
      replaysShared: 0,
      replaysInProgress: 0,
      gapSignals: 0,
      eventsHealed: 0,
      holesHealed: 0,
      bridgeLosses: 0,
      messagesRefused: 0,
      historyEvictions: 0,
      historyExpirations: 0,
      historyBytes: 0,
    };
    assert.deepEqual(broker.metrics(), zero);
    const reader = broker.subscribe(["a", "b"]);
    const reading = tap(reader);
    const stalled = broker.subscribe("a");
    await broker.publish("a", "1", { id: "1" }); // "id: 1\ndata: 1\n\n": 15 bytes
    await delay(0);
    await broker.publish("a", "2", { id: "2" }); // the stalled client overflows here
    await broker.publish("b", "3", { id: "3" });
    await delay(0);
    const hit = broker.subscribe("a", { lastEventId: "1" });
    const miss = broker.subscribe("b", { lastEventId: "nope" });
    assert.throws(() => broker.subscribe("a"), BrokerLimitError);
    await delay(0);
    const metrics = broker.metrics();
    assert.ok(metrics.historyBytes > 0, `historyBytes ${metrics.historyBytes}`);
    assert.deepEqual({ ...metrics, bytesQueued: 0, historyBytes: 0 }, {
      ...zero,
      clients: 3,
      connectionsTotal: 4,
      connectionsRejected: 1,
      eventsPublished: 3,
      eventsDelivered: 5, // reader 3, stalled 1, replay of "2" 1
      slowConsumers: 1,
      replayHits: 1,
      replayMisses: 1,
      // hit and miss are unread: the live events they may get wait for their buffers to empty.
      replaysInProgress: 2,
    });
    // 4 live frames of 15 bytes, the replayed one, and the gap signal.
    assert.ok(metrics.bytesQueued > 5 * 15, `bytesQueued ${metrics.bytesQueued}`);
    assert.deepEqual(data(await drain(reader, reading)), ["1", "2", "3"]);
    await stalled.readable.cancel();
    hit.close();
    miss.close();
    await broker.close();
  });

  it("formatMetrics renders valid Prometheus text exposition", () => {
    const metrics: BrokerMetrics = {
      clients: 3,
      connectionsTotal: 10,
      connectionsRejected: 1,
      eventsPublished: 42,
      eventsDelivered: 120,
      bytesQueued: 98_765,
      slowConsumers: 2,
      replayHits: 4,
      replayMisses: 5,
      replaysShared: 3,
      replaysInProgress: 1,
      gapSignals: 9,
      eventsHealed: 10,
      holesHealed: 11,
      bridgeLosses: 12,
      messagesRefused: 13,
      historyEvictions: 6,
      historyExpirations: 7,
      historyBytes: 8_192,
    };
    for (const prefix of [undefined, "app_sse_"]) {
      const text = formatMetrics(metrics, prefix);
      assert.ok(text.endsWith("\n"));
      const samples = new Map<string, number>();
      const help = new Set<string>();
      const types = new Map<string, string>();
      for (const line of text.slice(0, -1).split("\n")) {
        let match = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$/.exec(line);
        if (match) {
          assert.ok(!help.has(match[1]!), `one HELP per metric: ${line}`);
          help.add(match[1]!);
          continue;
        }
        match = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$/.exec(line);
        if (match) {
          assert.ok(help.has(match[1]!) && !samples.has(match[1]!), `TYPE before sample: ${line}`);
          types.set(match[1]!, match[2]!);
          continue;
        }
        match = /^([a-zA-Z_:][a-zA-Z0-9_:]*) (\d+)$/.exec(line);
        assert.ok(match, `a valid exposition line: ${JSON.stringify(line)}`);
        assert.ok(types.has(match[1]!), `TYPE declared before ${match[1]}`);
        samples.set(match[1]!, Number(match[2]));
      }
      const p = prefix ?? "flume_";
      assert.equal(samples.size, 19);
      assert.equal(samples.get(`${p}clients`), 3);
      assert.equal(types.get(`${p}clients`), "gauge");
      assert.equal(samples.get(`${p}connections_total`), 10);
      assert.equal(samples.get(`${p}connections_rejected_total`), 1);
      assert.equal(samples.get(`${p}events_published_total`), 42);
      assert.equal(samples.get(`${p}events_delivered_total`), 120);
      assert.equal(samples.get(`${p}bytes_queued_total`), 98_765);
      assert.equal(samples.get(`${p}slow_consumers_total`), 2);
      assert.equal(samples.get(`${p}replay_hits_total`), 4);
      assert.equal(samples.get(`${p}replay_misses_total`), 5);
      assert.equal(samples.get(`${p}history_evictions_total`), 6);
      assert.equal(samples.get(`${p}history_expirations_total`), 7);
      assert.equal(samples.get(`${p}history_bytes`), 8_192);
      assert.equal(types.get(`${p}history_bytes`), "gauge");
      assert.equal(samples.get(`${p}gap_signals_total`), 9);
      assert.equal(samples.get(`${p}bridge_events_healed_total`), 10);
      assert.equal(samples.get(`${p}bridge_holes_healed_total`), 11);
      assert.equal(samples.get(`${p}bridge_losses_total`), 12);
      assert.equal(samples.get(`${p}bridge_messages_refused_total`), 13);
      for (const [name, type] of types) {
        if (type === "counter") assert.ok(name.endsWith("_total"), `${name} ends with _total`);
      }
    }
  });
});

describe("Broker bad input", () => {
  const badOptions: [string, BrokerOptions<Record<string, unknown>>, RegExp, typeof Error][] = [
    [
      "history -1",
      { history: -1 },
      /`history` must be a non-negative integer, got `-1`/,
      RangeError,
    ],
    ["history 1.5", { history: 1.5 }, /`history`/, RangeError],
    ["history NaN", { history: NaN }, /`history`/, RangeError],
    ["bufferSize 0", { bufferSize: 0 }, /`bufferSize` must be a positive integer/, RangeError],
    ["bufferSize 2.5", { bufferSize: 2.5 }, /`bufferSize`/, RangeError],
    ["bufferBytes 0", { bufferBytes: 0 }, /`bufferBytes`/, RangeError],
    ["maxClients 0", { maxClients: 0 }, /`maxClients` must be a positive integer/, RangeError],
    ["maxClients 1.5", { maxClients: 1.5 }, /`maxClients`/, RangeError],
    ["maxClientsPerChannel -3", { maxClientsPerChannel: -3 }, /`maxClientsPerChannel`/, RangeError],
    ["retryAfter 0", { retryAfter: 0 }, /`retryAfter`/, RangeError],
    ["heartbeat -1", { heartbeat: -1 }, /`heartbeat`/, RangeError],
    ["heartbeat 0", { heartbeat: 0 }, /`heartbeat`/, RangeError],
    ["writeTimeout -1", { writeTimeout: -1 }, /`writeTimeout`/, RangeError],
    [
      'overflow "bogus"',
      { overflow: "bogus" as "disconnect" },
      /`overflow` must be "disconnect" or "drop-oldest", got `bogus`/,
      TypeError,
    ],
    [
      "an event name that is not a string",
      { events: [1 as unknown as string] },
      /`events`/,
      TypeError,
    ],
    ["an event name with a line break", { events: ["a\nb"] }, /`event`/, TypeError],
  ];
  for (const [what, options, message, type] of badOptions) {
    it(`new Broker() throws a clear error for ${what}`, () => {
      assert.throws(() => new Broker(options), (error: unknown) => {
        assert.ok(error instanceof type, `${error} is a ${type.name}`);
        assert.match((error as Error).message, /^Cannot (create|encode) \w+: /);
        assert.match((error as Error).message, message);
        return true;
      });
    });
  }

  const badChannels: [string, unknown][] = [
    ["an empty name", ""],
    ["a number", 42],
    ["null", null],
    ["an empty array", []],
    ["an array with an empty name", ["a", ""]],
    ["an array with a non-string", ["a", 7]],
  ];
  for (const [what, channels] of badChannels) {
    it(`subscribe() and response() throw TypeError for ${what} as channels`, async () => {
      const broker = quietBroker();
      assert.throws(() => broker.subscribe(channels as string), {
        name: "TypeError",
        message: /^Cannot (subscribe|use channel): /,
      });
      assert.throws(
        () => broker.response(channels as string, new Request("http://localhost/")),
        TypeError,
      );
      assert.equal(broker.clientCount(), 0);
      await broker.close();
    });
  }

  it("publish() rejects, never throws, for an empty or non-string channel", async () => {
    const broker = quietBroker();
    for (const channel of ["", 1, undefined, null, ["a"]]) {
      const result = broker.publish(channel as string, "x");
      assert.ok(result instanceof Promise);
      await assert.rejects(result, {
        name: "TypeError",
        message: /^Cannot use channel: a channel name must be a non-empty string/,
      });
    }
    assert.equal(broker.metrics().eventsPublished, 0);
    await broker.close();
  });

  it("publish() rejects what the wire cannot carry, sends nothing, and the broker carries on", async () => {
    const broker = quietBroker({ history: 5 });
    const stream = broker.subscribe("a");
    const reading = tap(stream);
    await assert.rejects(broker.publish("a", "x", { id: "a\nb" }), TypeError);
    await assert.rejects(broker.publish("a", "x", { event: "a\rb" }), TypeError);
    await assert.rejects(broker.publish("a", "\ud800 lone surrogate"), TypeError);
    await assert.rejects(broker.publish("a", { big: 1n }), TypeError);
    await broker.publish("a", "fine", { id: "ok" });
    assert.deepEqual(await drain(stream, reading), [
      { type: "message", data: "fine", lastEventId: "ok" },
    ]);
    assert.equal(broker.metrics().eventsPublished, 1);
    await broker.close();
  });
});

describe("Broker leaves nothing behind", () => {
  it("10,000 subscribe/leave cycles end with no client and no timer: the process exits by itself", {
    timeout: 30_000,
  }, async () => {
    const mod = new URL("../mod.ts", import.meta.url).href;
    // Default heartbeat and writeTimeout: any timer left armed would keep the process alive.
    const script = `
      const { Broker } = await import(${JSON.stringify(mod)});
      const broker = new Broker({ history: 20 });
      for (let n = 0; n < 10000; n++) {
        const abort = new AbortController();
        const stream = broker.subscribe(["a", "b", "c" + (n % 50)], {
          signal: abort.signal,
          ...(n % 4 === 0 ? { lastEventId: "unknown-" + n } : {}),
        });
        if (n % 3 === 0) abort.abort();
        else if (n % 3 === 1) stream.close();
        else await stream.readable.cancel();
        if (n % 100 === 0) await broker.publish("a", n);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
      const counts = [broker.clientCount(), broker.clientCount("a"), broker.clientCount("c1")];
      console.log(JSON.stringify({ counts, total: broker.metrics().connectionsTotal }));
    `;
    const bin = runtime === "deno"
      ? (globalThis as unknown as { Deno: { execPath(): string } }).Deno.execPath()
      : process.execPath;
    const args = runtime === "deno" ? ["eval", "--quiet", script] : ["-e", script];
    const child = spawn(bin, args, { env: { ...process.env, NO_COLOR: "1" } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => stdout += chunk);
    child.stderr.on("data", (chunk) => stderr += chunk);
    let printedAt = 0;
    child.stdout.once("data", () => printedAt = performance.now());
    const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    clearTimeout(killer);
    const exitedAfter = performance.now() - printedAt;
    assert.equal(code, 0, `exit code ${code}; stderr: ${stderr}`);
    assert.deepEqual(JSON.parse(stdout), { counts: [0, 0, 0], total: 10_000 });
    assert.ok(exitedAfter < 2_000, `exited ${Math.round(exitedAfter)} ms after its last line`);
  });
});
