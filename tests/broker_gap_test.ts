import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type Bridge,
  type BridgeEvent,
  type BridgeGap,
  type BridgeReplay,
  Broker,
  type BrokerOptions,
  EventParserStream,
  formatMetrics,
  type HistoryLimits,
  type ParsedEvent,
  STREAM_RESET_EVENT,
} from "../mod.ts";
import { MemoryBridge } from "../src/_memory_bridge.ts";
import { type BridgeStats, bridgeStats } from "../src/_bridge_stats.ts";
import { delay, readEvents, serve, waitFor } from "./_helpers.ts";

/** A broker without timers, so that a unit test leaves nothing behind. */
function quietBroker(
  bridge: Bridge,
  options: BrokerOptions<Record<string, unknown>> = {},
): Broker {
  return new Broker({ heartbeat: null, writeTimeout: null, history: 100, bridge, ...options });
}

/**
 * A real bridge (the broker's own, in memory, for order, ids and history) whose live feed can
 * miss events, and that then tells its broker of the loss through `lost`, in order with
 * `deliver`, as the contract says. Its replays can be held back: read at once and answered on
 * `release()` ("early": the read comes before a loss that happens meanwhile), or read only on
 * `release()` ("late": after it).
 */
class LossyBridge implements Bridge {
  readonly inner = new MemoryBridge();
  /** While true, published events are stored but never reach the broker live. */
  missing = false;
  reads = 0;
  stats: BridgeStats | undefined;
  #deliver: (event: BridgeEvent) => void = () => {};
  #lost: (gap: BridgeGap) => void = () => {};
  #lastDelivered: BridgeEvent | undefined;
  #newest: BridgeEvent | undefined;
  #hold: "early" | "late" | undefined;
  #gate: Promise<void> = Promise.resolve();
  #open: () => void = () => {};

  open(
    deliver: (event: BridgeEvent) => void,
    lost?: (gap: BridgeGap) => void,
    limits?: HistoryLimits,
  ): Promise<void> {
    this.#deliver = deliver;
    this.#lost = lost ?? (() => {});
    return this.inner.open(
      (event) => {
        this.#newest = event;
        if (this.missing) return;
        this.#lastDelivered = event;
        this.#deliver(event);
      },
      undefined,
      limits,
    );
  }

  publish(
    event: { channel: string | null; body: string; id?: string },
    history: number,
  ): Promise<BridgeEvent> {
    return this.inner.publish(event, history);
  }

  /** Tells the broker that what it missed is gone: the gap comes after what it delivered. */
  lose(channels: string[] | null, options: { head?: boolean; id?: string } = {}): BridgeGap {
    this.missing = false;
    const newest = this.#newest!;
    const gap: BridgeGap = {
      channels,
      after: this.#lastDelivered?.id,
      head: options.head === false ? undefined : { seq: newest.seq, id: options.id ?? newest.id! },
    };
    this.#lost(gap);
    return gap;
  }

  hold(mode: "early" | "late"): void {
    this.#hold = mode;
    this.#gate = new Promise((resolve) => this.#open = resolve);
  }

  release(): void {
    this.#hold = undefined;
    this.#open();
  }

  async replay(channels: readonly string[], lastEventId: string): Promise<BridgeReplay> {
    this.reads++;
    if (this.#hold === "early") {
      const answer = await this.inner.replay(channels, lastEventId);
      await this.#gate;
      return answer;
    }
    await this.#gate;
    return this.inner.replay(channels, lastEventId);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A bridge that also reports how it healed, under the core's private symbol. */
class ReportingBridge extends LossyBridge {
  [bridgeStats](): BridgeStats {
    return this.stats ?? { eventsHealed: 0, holesHealed: 0, losses: 0, messagesRefused: 0 };
  }
}

/** Lets a replay that was asked for reach the stream. */
async function settled(): Promise<void> {
  for (let n = 0; n < 3; n++) await delay(0);
}

/** Events as `name:data`, the gap signal as `reset:<its data>@<its id>`. */
function show(events: ParsedEvent[]): string[] {
  return events.map((event) =>
    event.type === STREAM_RESET_EVENT
      ? `reset:${event.data}@${event.lastEventId}`
      : `${event.data}@${event.lastEventId}`
  );
}

const reset = (channels: string[], lastEventId: string | null, id: string): string =>
  `reset:${JSON.stringify({ channels, lastEventId })}@${id}`;

async function publishAll(broker: Broker, channel: string, ids: string[]): Promise<void> {
  for (const id of ids) await broker.publish(channel, id, { id });
}

describe("Broker: a loss the bridge cannot heal is a gap signal on the open streams", () => {
  it("tells only the clients of the lost channels, in order, with their own lost channels, and ends no stream", async () => {
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge);
    const a = broker.subscribe("a");
    const ab = broker.subscribe(["a", "b"]);
    const c = broker.subscribe("c");
    await publishAll(broker, "a", ["a1"]);
    bridge.missing = true;
    await broker.publish("a", "a2", { id: "a2" }); // stored, never delivered live
    bridge.lose(["a", "x"]);
    await publishAll(broker, "a", ["a3"]);
    await publishAll(broker, "c", ["c1"]);
    assert.equal(broker.clientCount(), 3, "no stream ended");
    assert.equal(a.closed || ab.closed || c.closed, false);
    const signal = reset(["a"], "a1", "a2");
    assert.deepEqual(show(await readEvents(a.readable, 3)), ["a1@a1", signal, "a3@a3"]);
    assert.deepEqual(show(await readEvents(ab.readable, 3)), ["a1@a1", signal, "a3@a3"]);
    assert.deepEqual(show(await readEvents(c.readable, 1)), ["c1@c1"]);
    const metrics = broker.metrics();
    assert.equal(metrics.gapSignals, 2);
    assert.equal(metrics.slowConsumers, 0);
    assert.match(formatMetrics(metrics), /^flume_gap_signals_total 2$/m);
    await broker.close();
  });

  it("channels null tells every client with all its channels, and its id resumes a later reconnect without a repeat", async () => {
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge);
    const ab = broker.subscribe(["a", "b"]);
    const c = broker.subscribe("c");
    await publishAll(broker, "a", ["a1"]);
    bridge.missing = true;
    await broker.broadcast("lost broadcast", { id: "x1" });
    bridge.lose(null);
    await publishAll(broker, "b", ["b1"]);
    const got = show(await readEvents(ab.readable, 3));
    assert.deepEqual(got, ["a1@a1", reset(["a", "b"], "a1", "x1"), "b1@b1"]);
    assert.deepEqual(show(await readEvents(c.readable, 1)), [reset(["c"], "a1", "x1")]);
    // A client that drops now comes back from the signal's id: it gets b1 and nothing before.
    const again = broker.subscribe(["a", "b"], { lastEventId: "x1" });
    assert.deepEqual(show(await readEvents(again.readable, 1)), ["b1@b1"]);
    assert.equal(broker.metrics().gapSignals, 2);
    assert.equal(broker.metrics().replayHits, 1);
    await broker.close();
  });

  it("without a known head the signal has no id line, and lastEventId is null when nothing came before", async () => {
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge);
    const stream = broker.subscribe("a");
    bridge.missing = true;
    await broker.publish("a", "gone", { id: "g1" });
    bridge.lose(["a"], { head: false });
    await broker.publish("a", "next", { id: "n1" });
    await broker.close();
    const text = await new Response(stream.readable).text();
    assert.equal(
      text,
      `:\n\nevent: ${STREAM_RESET_EVENT}\ndata: {"channels":["a"],"lastEventId":null}\n\n` +
        "id: n1\ndata: next\n\n",
    );
  });

  it("a head id the wire cannot carry is reported, and the signal goes without it", async () => {
    const errors: unknown[] = [];
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge, { onError: (error) => errors.push(error) });
    const stream = broker.subscribe("a");
    await publishAll(broker, "a", ["a1"]);
    bridge.lose(["a"], { id: "bad\nid" });
    await broker.close();
    const text = await new Response(stream.readable).text();
    assert.match(text, /event: stream-reset\ndata: {"channels":\["a"\],"lastEventId":"a1"}\n\n$/);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof TypeError);
  });

  it('is pinned: "drop-oldest" discards live frames around it, never the signal', async () => {
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge, { bufferSize: 2, overflow: "drop-oldest" });
    const stream = broker.subscribe("a");
    await publishAll(broker, "a", ["a1", "a2", "a3"]);
    bridge.missing = true;
    await broker.publish("a", "gone", { id: "g1" });
    bridge.lose(["a"]);
    await publishAll(broker, "a", ["a4", "a5", "a6"]);
    // It counts against the bounds as any pinned frame: with it, the buffer holds one more.
    const got = show(await readEvents(stream.readable, 2));
    assert.deepEqual(got, [reset(["a"], "a3", "g1"), "a6@a6"]);
    assert.equal(broker.metrics().gapSignals, 1);
    assert.equal(broker.metrics().slowConsumers, 6); // the opening comment, a1 to a5
    await broker.close();
  });

  it('is pinned: a full buffer under "disconnect" still takes it and stays open', async () => {
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge, { bufferSize: 2 });
    const stream = broker.subscribe("a");
    await publishAll(broker, "a", ["a1"]); // with the opening comment, the buffer is full
    bridge.missing = true;
    await broker.publish("a", "gone", { id: "g1" });
    bridge.lose(["a"]);
    assert.equal(stream.closed, false);
    assert.equal(broker.metrics().slowConsumers, 0);
    assert.deepEqual(show(await readEvents(stream.readable, 2)), [
      "a1@a1",
      reset(["a"], "a1", "g1"),
    ]);
    await broker.close();
  });
});

describe("Broker: a loss during a client's resume reaches it in order", () => {
  it("a replay read before the loss: the signal follows the replay and what was held before it, and precedes what came after", async () => {
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge);
    await publishAll(broker, "a", ["e1", "e2", "e3"]);
    bridge.hold("early");
    const stream = broker.subscribe("a", { lastEventId: "e1" });
    await settled();
    await publishAll(broker, "a", ["e4"]); // held: the replay is not answered yet
    bridge.missing = true;
    await broker.publish("a", "e5", { id: "e5" });
    bridge.lose(["a"]);
    await publishAll(broker, "a", ["e6"]);
    assert.equal(broker.metrics().gapSignals, 0, "held, not sent yet");
    bridge.release();
    assert.deepEqual(show(await readEvents(stream.readable, 5)), [
      "e2@e2",
      "e3@e3",
      "e4@e4",
      reset(["a"], "e4", "e5"),
      "e6@e6",
    ]);
    assert.equal(broker.metrics().gapSignals, 1);
    assert.equal(broker.metrics().replaysInProgress, 0);
    await broker.close();
  });

  it("a replay read after the loss tells the truth itself: the held signal is dropped, nothing repeats", async () => {
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge);
    await publishAll(broker, "a", ["e1", "e2", "e3"]);
    bridge.hold("late");
    const stream = broker.subscribe("a", { lastEventId: "e1" });
    await settled();
    await publishAll(broker, "a", ["e4"]);
    bridge.missing = true;
    await broker.publish("a", "e5", { id: "e5" }); // still in this bridge's history
    bridge.lose(["a"]);
    await publishAll(broker, "a", ["e6", "e7"]);
    bridge.release();
    await settled();
    await publishAll(broker, "a", ["e8"]);
    assert.deepEqual(show(await readEvents(stream.readable, 7)), [
      "e2@e2",
      "e3@e3",
      "e4@e4",
      "e5@e5",
      "e6@e6",
      "e7@e7",
      "e8@e8",
    ]);
    assert.equal(broker.metrics().gapSignals, 0);
    await broker.close();
  });

  it("a loss with no known head during a resume is kept, after the replay, without a repeat", async () => {
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge);
    await publishAll(broker, "a", ["e1", "e2"]);
    bridge.hold("late");
    const stream = broker.subscribe("a", { lastEventId: "e1" });
    await settled();
    bridge.missing = true;
    await broker.publish("a", "e3", { id: "e3" });
    bridge.lose(["a"], { head: false });
    await publishAll(broker, "a", ["e4"]);
    bridge.release();
    const events = await readEvents(stream.readable, 4);
    assert.deepEqual(show(events), [
      "e2@e2",
      "e3@e3",
      "e4@e4",
      `reset:${JSON.stringify({ channels: ["a"], lastEventId: "e2" })}@e4`,
    ]);
    assert.equal(broker.metrics().gapSignals, 1);
    await broker.close();
  });

  it("a loss while the replay's pieces are still being fed comes after the last piece", async () => {
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge, { bufferBytes: 65_536 });
    const pad = "x".repeat(10_000);
    for (let n = 0; n < 30; n++) await broker.publish("a", `${n}:${pad}`, { id: `e${n}` });
    const stream = broker.subscribe("a", { lastEventId: "e0" });
    await settled();
    assert.equal(broker.metrics().replaysInProgress, 1, "300 KB do not fit one buffer");
    bridge.missing = true;
    await broker.publish("a", "gone", { id: "g1" });
    bridge.lose(["a"]);
    await broker.publish("a", "live", { id: "live" });
    const events = await readEvents(stream.readable, 31);
    const got = events.map((e) => e.type === STREAM_RESET_EVENT ? "reset" : e.data.split(":")[0]);
    assert.deepEqual(got, [
      ...Array.from({ length: 29 }, (_, n) => String(n + 1)),
      "reset",
      "live",
    ]);
    assert.equal(events[29]!.lastEventId, "g1");
    assert.equal(broker.metrics().gapSignals, 1);
    await broker.close();
  });

  it('a held signal survives "drop-oldest" among the held events', async () => {
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge, { bufferSize: 2, overflow: "drop-oldest" });
    await publishAll(broker, "a", ["e1", "e2"]);
    bridge.hold("early");
    const stream = broker.subscribe("a", { lastEventId: "e1" });
    await settled();
    bridge.missing = true;
    await broker.publish("a", "gone", { id: "g1" });
    bridge.lose(["a"]);
    await publishAll(broker, "a", ["l1", "l2", "l3", "l4"]);
    bridge.release();
    assert.deepEqual(show(await readEvents(stream.readable, 3)), [
      "e2@e2",
      reset(["a"], "e2", "g1"),
      "l4@l4",
    ]);
    assert.equal(broker.metrics().slowConsumers, 3);
    await broker.close();
  });

  it("a client that resumes after the loss does not join a read begun before it", async () => {
    const bridge = new LossyBridge();
    const broker = quietBroker(bridge);
    await publishAll(broker, "a", ["e1", "e2"]);
    bridge.hold("early");
    const first = broker.subscribe("a", { lastEventId: "e1" });
    await settled();
    bridge.missing = true;
    await broker.publish("a", "gone", { id: "g1" });
    bridge.lose(["a"]);
    const second = broker.subscribe("a", { lastEventId: "e1" });
    await settled();
    bridge.release();
    assert.equal(bridge.reads, 2);
    assert.equal(broker.metrics().replaysShared, 0);
    assert.deepEqual(show(await readEvents(first.readable, 2)), [
      "e2@e2",
      reset(["a"], "e2", "g1"),
    ]);
    // Its own read came after the loss: this bridge still has the event, so it gets it instead.
    assert.deepEqual(show(await readEvents(second.readable, 2)), ["e2@e2", "gone@g1"]);
    await broker.close();
  });
});

describe("Broker metrics show how the bridge healed", () => {
  it("reports a bridge's healing counters, and zeros for one that reports none", async () => {
    const bridge = new ReportingBridge();
    bridge.stats = { eventsHealed: 12, holesHealed: 3, losses: 1, messagesRefused: 7 };
    const broker = quietBroker(bridge);
    const metrics = broker.metrics();
    assert.equal(metrics.eventsHealed, 12);
    assert.equal(metrics.holesHealed, 3);
    assert.equal(metrics.bridgeLosses, 1);
    assert.equal(metrics.messagesRefused, 7);
    const text = formatMetrics(metrics);
    assert.match(text, /^flume_bridge_events_healed_total 12$/m);
    assert.match(text, /^flume_bridge_holes_healed_total 3$/m);
    assert.match(text, /^flume_bridge_losses_total 1$/m);
    assert.match(text, /^flume_bridge_messages_refused_total 7$/m);
    await broker.close();
    const plain = quietBroker(new LossyBridge());
    assert.equal(plain.metrics().eventsHealed, 0);
    assert.equal(plain.metrics().messagesRefused, 0);
    await plain.close();
  });
});

describe("Broker gap signal over HTTP", () => {
  it("a client on a real server reads the gap signal on its open stream, which then carries later events", async () => {
    const bridge = new LossyBridge();
    const broker = new Broker({ history: 100, bridge });
    const server = await serve((request) => broker.response(["a", "b"], request));
    const controller = new AbortController();
    try {
      const response = await fetch(`${server.origin}/events`, { signal: controller.signal });
      assert.equal(response.status, 200);
      const reader = response.body!.pipeThrough(new EventParserStream()).getReader();
      await waitFor(() => broker.clientCount() === 1, 5_000, "the client");
      await publishAll(broker, "a", ["a1"]);
      assert.equal((await reader.read()).value?.data, "a1");
      bridge.missing = true;
      await broker.publish("b", "gone", { id: "g1" });
      bridge.lose(["b"]);
      const signal = (await reader.read()).value!;
      assert.equal(signal.type, STREAM_RESET_EVENT);
      assert.deepEqual(JSON.parse(signal.data), { channels: ["b"], lastEventId: "a1" });
      assert.equal(signal.lastEventId, "g1");
      await delay(50);
      assert.equal(broker.clientCount(), 1, "the stream stays open");
      await publishAll(broker, "b", ["b2"]);
      const next = (await reader.read()).value!;
      assert.deepEqual([next.type, next.data, next.lastEventId], ["message", "b2", "b2"]);
      assert.equal(broker.metrics().gapSignals, 1);
      await reader.cancel();
    } finally {
      controller.abort();
      await broker.close();
      await server.close();
    }
  });
});
