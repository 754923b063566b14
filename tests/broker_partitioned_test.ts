import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type Bridge,
  type BridgeEvent,
  type BridgeGap,
  type BridgePartitions,
  type BridgeReplay,
  Broker,
  type BrokerOptions,
  type EventStream,
  type ParsedEvent,
  STREAM_RESET_EVENT,
} from "../mod.ts";
import { MemoryBridge } from "../src/_memory_bridge.ts";
import { offerFrame } from "../src/_stream_control.ts";
import { delay, readEvents } from "./_helpers.ts";

/** A broker without timers, so that a unit test leaves nothing behind. */
function quietBroker(
  bridge: Bridge,
  options: BrokerOptions<Record<string, unknown>> = {},
): Broker {
  return new Broker({ heartbeat: null, writeTimeout: null, history: 100, bridge, ...options });
}

/**
 * A real bridge in process with one order per partition, as the partitioned Redis bridge has:
 * channels map to partitions by a fixed table, the last partition carries broadcasts, each
 * partition has its own seqs and log, and the bridge delivers only the channels the broker has
 * interest in (and every broadcast). Its id is one `<partition>-<seq>` component per partition,
 * joined by `.`, built from its delivered position (`idFor`). A partition can miss its live feed
 * (`missing`) until `lose()` moves past the loss and tells the broker. Replays can be paused:
 * `pause()` holds a read until `read()`, where it takes the position it brings a client to, and
 * its answer until `release()`.
 */
class PartitionedBridge implements Bridge {
  readonly partitions: BridgePartitions;
  /** What the broker told it, in order: `+a`/`-a` for interest, `replay:a,b` for a replay. */
  readonly calls: string[] = [];
  /** Partitions whose live feed misses events: stored, not delivered, position kept. */
  readonly missing = new Set<number>();
  /** How many ids the broker asked for. */
  idCalls = 0;
  readonly #count: number;
  /** The newest seq of each partition, and how far the broker has been given each. */
  readonly #seq: number[];
  readonly #seen: number[];
  readonly #log: BridgeEvent[][];
  readonly #interest = new Set<string>();
  #deliver: (event: BridgeEvent) => void = () => {};
  #lost: (gap: BridgeGap) => void = () => {};
  #gates: { read: Promise<void>; answer: Promise<void> } | undefined;
  #openRead = (): void => {};
  #openAnswer = (): void => {};

  /**
   * @param table The partition of each channel.
   * @param count Partitions, the broadcast one (`count - 1`) included.
   */
  constructor(table: Record<string, number>, count: number) {
    this.#count = count;
    this.#seq = new Array<number>(count).fill(0);
    this.#seen = new Array<number>(count).fill(0);
    this.#log = Array.from({ length: count }, () => []);
    const of = (channel: string | null): number => channel === null ? count - 1 : table[channel]!;
    this.partitions = {
      count,
      of,
      idFor: (parts) => {
        this.idCalls++;
        return parts.map((p) => `${p}-${this.#seen[p]}`).join(".");
      },
    };
  }

  open(deliver: (event: BridgeEvent) => void, lost?: (gap: BridgeGap) => void): Promise<void> {
    this.#deliver = deliver;
    this.#lost = lost ?? (() => {});
    return Promise.resolve();
  }

  interest(channel: string, on: boolean): void {
    this.calls.push(`${on ? "+" : "-"}${channel}`);
    if (on) this.#interest.add(channel);
    else this.#interest.delete(channel);
  }

  publish(
    event: { channel: string | null; body: string; id?: string },
    history: number,
  ): Promise<BridgeEvent> {
    const p = this.partitions.of(event.channel);
    const seq = ++this.#seq[p]!;
    const stored: BridgeEvent = {
      channel: event.channel,
      seq,
      partition: p,
      id: history > 0 ? `${p}-${seq}` : undefined,
      body: event.body,
    };
    if (history > 0) this.#log[p]!.push(stored);
    if (this.missing.has(p)) return Promise.resolve(stored);
    // The position moves before `deliver`: the frame's id includes the event.
    this.#seen[p] = seq;
    if (event.channel === null || this.#interest.has(event.channel)) this.#deliver(stored);
    return Promise.resolve(stored);
  }

  /** The loss of partition `p`: its position moves to its newest seq, then the broker is told. */
  lose(p: number, channels?: string[] | null): BridgeGap {
    this.missing.delete(p);
    const after = `${p}-${this.#seen[p]}`;
    this.#seen[p] = this.#seq[p]!;
    const gap: BridgeGap = {
      partition: p,
      channels: channels === undefined
        ? [...this.#interest].filter((name) => this.partitions.of(name) === p)
        : channels,
      after,
      head: { seq: this.#seq[p]!, id: "" },
    };
    this.#lost(gap);
    return gap;
  }

  pause(): void {
    this.#gates = {
      read: new Promise((resolve) => this.#openRead = resolve),
      answer: new Promise((resolve) => this.#openAnswer = resolve),
    };
  }

  /** Lets a paused replay take its position now. */
  async read(): Promise<void> {
    this.#openRead();
    await settled();
  }

  release(): void {
    this.#gates = undefined;
    this.#openRead();
    this.#openAnswer();
  }

  async replay(channels: readonly string[], lastEventId: string): Promise<BridgeReplay> {
    this.calls.push(`replay:${channels.join(",")}`);
    const gates = this.#gates;
    if (gates) await gates.read;
    const answer = this.#read(channels, lastEventId);
    if (gates) await gates.answer;
    return answer;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** What a client at `lastEventId` missed, up to this bridge's delivered position. */
  #read(channels: readonly string[], lastEventId: string): BridgeReplay {
    const of = this.partitions.of;
    const parts = [...new Set([...channels.map(of), this.#count - 1])].sort((a, b) => a - b);
    const from = new Map<number, number>();
    for (const component of lastEventId.split(".")) {
      const [p, seq] = component.split("-").map(Number);
      if (Number.isInteger(p) && Number.isInteger(seq)) from.set(p!, seq!);
    }
    const upTo = [...this.#seen];
    const events: BridgeEvent[] = [];
    const gaps: string[] = [];
    for (const p of parts) {
      const after = from.get(p);
      if (after === undefined || after > upTo[p]!) {
        for (const name of channels) if (p === this.#count - 1 || of(name) === p) gaps.push(name);
        continue;
      }
      for (const event of this.#log[p]!) {
        if (event.seq <= after || event.seq > upTo[p]!) continue;
        if (event.channel !== null && !channels.includes(event.channel)) continue;
        // Finished partitions at the replay's end, this one at the event, later ones unchanged.
        const id = parts.flatMap((q) => {
          const seq = q < p ? upTo[q] : q === p ? event.seq : from.get(q);
          return seq === undefined ? [] : [`${q}-${seq}`];
        }).join(".");
        events.push({ ...event, id });
      }
    }
    const id = parts.map((p) => `${p}-${upTo[p]}`).join(".");
    return { events, gaps: [...new Set(gaps)], head: { seq: 0, id, seqs: upTo } };
  }
}

/** Channels `a`, `b` in partition 0, `c`, `d` in partition 1; broadcasts in partition 2. */
const TABLE = { a: 0, b: 0, c: 1, d: 1 };

/** Lets a replay that was asked for reach the stream. */
async function settled(): Promise<void> {
  for (let n = 0; n < 3; n++) await delay(0);
}

/** Every frame the broker offers to `stream` from now on, as the very objects it offers. */
function recordFrames(stream: EventStream): Uint8Array[] {
  const frames: Uint8Array[] = [];
  const offer = stream[offerFrame].bind(stream);
  stream[offerFrame] = (frame, policy) => {
    frames.push(frame);
    return offer(frame, policy);
  };
  return frames;
}

/** Events as `data@id`, the gap signal as `reset:<channels>@<id>`. */
function show(events: ParsedEvent[]): string[] {
  return events.map((event) =>
    event.type === STREAM_RESET_EVENT
      ? `reset:${(JSON.parse(event.data) as { channels: string[] }).channels}@${event.lastEventId}`
      : `${event.data}@${event.lastEventId}`
  );
}

describe("Broker with a partitioned bridge: frames per partition set", () => {
  it("encodes one frame per distinct partition set, each with the bridge's position on that set", async () => {
    const bridge = new PartitionedBridge(TABLE, 3);
    const broker = quietBroker(bridge);
    const x = broker.subscribe("a"); // partitions 0 and 2
    const y = broker.subscribe(["a", "b"]); // the same set
    const z = broker.subscribe(["a", "c"]); // 0, 1 and 2
    const v = broker.subscribe("b"); // 0 and 2 again, after z
    const [fx, fy, fz, fv] = [recordFrames(x), recordFrames(y), recordFrames(z), recordFrames(v)];
    await broker.publish("c", "c1");
    await broker.publish("a", "a1");
    assert.equal(bridge.idCalls, 3, "c1: one set; a1: two");
    assert.equal(fx[0], fy[0], "x and y share one frame");
    assert.notEqual(fx[0], fz[1]);
    await broker.broadcast("all");
    assert.equal(bridge.idCalls, 5, "x, y and v share one frame, z has its own");
    assert.equal(fx[1], fy[1]);
    assert.equal(fx[1], fv[0]);
    assert.notEqual(fx[1], fz[2]);
    assert.deepEqual(show(await readEvents(x.readable, 2)), ["a1@0-1.2-0", "all@0-1.2-1"]);
    assert.deepEqual(show(await readEvents(y.readable, 2)), ["a1@0-1.2-0", "all@0-1.2-1"]);
    assert.deepEqual(show(await readEvents(z.readable, 3)), [
      "c1@0-0.1-1.2-0",
      "a1@0-1.1-1.2-0",
      "all@0-1.1-1.2-1",
    ]);
    await broker.close();
  });

  it("clients of one channel share one frame however many they are", async () => {
    const bridge = new PartitionedBridge(TABLE, 3);
    const broker = quietBroker(bridge);
    const streams = Array.from({ length: 50 }, () => broker.subscribe("c"));
    const frames = streams.map(recordFrames);
    await broker.publish("c", "c1");
    assert.equal(bridge.idCalls, 1);
    assert.equal(new Set(frames.map((f) => f[0])).size, 1);
    assert.equal(broker.metrics().eventsDelivered, 50);
    await broker.close();
  });

  it("without history the events carry no id: one frame, and the bridge is asked for none", async () => {
    const bridge = new PartitionedBridge(TABLE, 3);
    const broker = quietBroker(bridge, { history: 0 });
    const x = broker.subscribe("a");
    const z = broker.subscribe(["a", "c"]);
    const [fx, fz] = [recordFrames(x), recordFrames(z)];
    await broker.publish("a", "a1");
    assert.equal(fx[0], fz[0]);
    assert.equal(bridge.idCalls, 0);
    await broker.close();
    assert.equal(await new Response(z.readable).text(), ":\n\ndata: a1\n\n");
  });

  it("a bridge without partitions: one frame for every client, with the event's own id, as before", async () => {
    const broker = quietBroker(new MemoryBridge());
    const x = broker.subscribe("a");
    const y = broker.subscribe(["a", "b"]);
    const z = broker.subscribe(["a", "c"]);
    const frames = [x, y, z].map(recordFrames);
    await broker.publish("a", "a1", { id: "e1" });
    await broker.broadcast("all", { id: "e2" });
    for (const n of [0, 1]) assert.equal(new Set(frames.map((f) => f[n])).size, 1);
    await broker.close();
    for (const stream of [x, y, z]) {
      assert.equal(
        await new Response(stream.readable).text(),
        ":\n\nid: e1\ndata: a1\n\nid: e2\ndata: all\n\n",
      );
    }
  });
});

describe("Broker with a partitioned bridge: interest", () => {
  it("is declared on a channel's first local client and withdrawn at its last, synchronously", async () => {
    const bridge = new PartitionedBridge(TABLE, 3);
    const broker = quietBroker(bridge);
    const x = broker.subscribe("a");
    assert.deepEqual(bridge.calls, ["+a"]);
    const y = broker.subscribe(["a", "b"]);
    assert.deepEqual(bridge.calls, ["+a", "+b"], "not again for a second client of a");
    x.close();
    assert.deepEqual(bridge.calls, ["+a", "+b"]);
    y.close();
    assert.deepEqual(bridge.calls, ["+a", "+b", "-a", "-b"]);
    const again = broker.subscribe("a");
    assert.deepEqual(bridge.calls.slice(4), ["+a"]);
    await broker.close();
    assert.equal(again.closed, true);
    assert.deepEqual(bridge.calls.slice(4), ["+a", "-a"], "close() ends every stream");
  });

  it("comes before the resuming client's replay, and a refused client declares none", async () => {
    const bridge = new PartitionedBridge(TABLE, 3);
    const broker = quietBroker(bridge, { maxClientsPerChannel: 1 });
    broker.subscribe(["a", "c"], { lastEventId: "0-0.1-0.2-0" });
    assert.deepEqual(bridge.calls, ["+a", "+c", "replay:a,c"]);
    assert.throws(() => broker.subscribe(["d", "a"]));
    const aborted = broker.subscribe("d", { signal: AbortSignal.abort() });
    assert.equal(aborted.closed, true);
    assert.deepEqual(bridge.calls, ["+a", "+c", "replay:a,c"]);
    await broker.close();
  });

  it("a live event reaches only a broker with interest, and a throwing interest is reported without losing the client", async () => {
    const errors: unknown[] = [];
    const bridge = new PartitionedBridge(TABLE, 3);
    const interest = bridge.interest.bind(bridge);
    let fail = true;
    bridge.interest = (channel, on) => {
      interest(channel, on);
      if (fail) throw new Error("interest failed");
    };
    const broker = quietBroker(bridge, { onError: (error) => errors.push(error) });
    const stream = broker.subscribe(["a", "c"]);
    fail = false;
    assert.equal(errors.length, 2);
    assert.equal(broker.clientCount(), 1);
    await broker.publish("d", "nobody"); // no interest: not delivered here
    await broker.publish("c", "c1");
    assert.equal(broker.metrics().eventsPublished, 1);
    assert.deepEqual(show(await readEvents(stream.readable, 1)), ["c1@0-0.1-2.2-0"]);
    await broker.close();
  });
});

describe("Broker with a partitioned bridge: the replay seam per partition", () => {
  it("keeps the held events past the replay on their own partition and drops those in it", async () => {
    const bridge = new PartitionedBridge(TABLE, 3);
    const broker = quietBroker(bridge);
    for (let n = 1; n <= 5; n++) await broker.publish("a", `a${n}`); // partition 0: seqs 1 to 5
    await broker.publish("c", "c1"); // partition 1: seq 1
    bridge.pause();
    const stream = broker.subscribe(["a", "c"], { lastEventId: "0-2.1-0.2-0" });
    await settled();
    await broker.publish("a", "a6"); // held, and in the replay: dropped
    await broker.publish("c", "c2"); // held, and in the replay: dropped
    await bridge.read(); // the replay brings the client to 0-6, 1-2, 2-0
    await broker.publish("c", "c3"); // held, after the replay on partition 1 (3 > 2, though < 6)
    await broker.publish("a", "a7");
    await broker.broadcast("all");
    assert.equal(broker.metrics().eventsDelivered, 0, "all held");
    bridge.release();
    assert.deepEqual(show(await readEvents(stream.readable, 9)), [
      "a3@0-3.1-0.2-0",
      "a4@0-4.1-0.2-0",
      "a5@0-5.1-0.2-0",
      "a6@0-6.1-0.2-0",
      "c1@0-6.1-1.2-0",
      "c2@0-6.1-2.2-0",
      "c3@0-6.1-3.2-0",
      "a7@0-7.1-3.2-0",
      "all@0-7.1-3.2-1",
    ]);
    assert.equal(broker.metrics().replayHits, 1);
    assert.equal(broker.metrics().replaysInProgress, 0);
    await broker.close();
  });

  it("a partition the id does not cover is a gap on its channels only, and the held events still go by partition", async () => {
    const bridge = new PartitionedBridge(TABLE, 3);
    const broker = quietBroker(bridge);
    await broker.publish("a", "a1");
    await broker.publish("c", "c1");
    bridge.pause();
    const stream = broker.subscribe(["a", "c"], { lastEventId: "0-0.2-0" }); // no partition 1
    await settled();
    await bridge.read();
    await broker.publish("c", "c2");
    bridge.release();
    assert.deepEqual(show(await readEvents(stream.readable, 3)), [
      "a1@0-1.2-0",
      "reset:c@0-1.1-1.2-0",
      "c2@0-1.1-2.2-0",
    ]);
    assert.equal(broker.metrics().replayMisses, 1);
    await broker.close();
  });
});

describe("Broker with a partitioned bridge: a loss reaches only its partition's clients", () => {
  it("tells the clients with a channel in the partition, naming their channels in it, with their own ids", async () => {
    const bridge = new PartitionedBridge(TABLE, 3);
    const broker = quietBroker(bridge);
    const x = broker.subscribe("a");
    const y = broker.subscribe(["a", "b"]);
    const z = broker.subscribe(["a", "c"]);
    const w = broker.subscribe(["c", "d"]);
    await broker.publish("c", "c1");
    bridge.missing.add(1);
    await broker.publish("c", "c2"); // missed live
    await broker.publish("a", "a1"); // partition 0 goes on
    bridge.lose(1, ["c"]);
    await broker.publish("d", "d1");
    await broker.publish("b", "b1");
    assert.equal(broker.metrics().gapSignals, 2);
    assert.deepEqual(show(await readEvents(z.readable, 3)), [
      "c1@0-0.1-1.2-0",
      "a1@0-1.1-1.2-0",
      "reset:c@0-1.1-2.2-0",
    ]);
    assert.deepEqual(show(await readEvents(w.readable, 3)), [
      "c1@1-1.2-0",
      "reset:c,d@1-2.2-0", // every channel of the partition: its position moved past the loss
      "d1@1-3.2-0",
    ]);
    await broker.close();
    // No signal for x and y: they have no channel in the lost partition.
    assert.deepEqual(show(await readEvents(x.readable)), ["a1@0-1.2-0"]);
    assert.deepEqual(show(await readEvents(y.readable)), ["a1@0-1.2-0", "b1@0-2.2-0"]);
  });

  it("channels null means every channel of that partition; the broadcast partition reaches every client", async () => {
    const bridge = new PartitionedBridge(TABLE, 3);
    const broker = quietBroker(bridge);
    const x = broker.subscribe("a");
    const w = broker.subscribe(["c", "d"]);
    const frames = [x, w].map(recordFrames);
    bridge.lose(1, null);
    assert.deepEqual(frames.map((f) => f.length), [0, 1]);
    bridge.lose(2, null);
    assert.deepEqual(frames.map((f) => f.length), [1, 2]);
    await broker.close();
    assert.deepEqual(show(await readEvents(x.readable)), ["reset:a@0-0.2-0"]);
    assert.deepEqual(show(await readEvents(w.readable)), [
      "reset:c,d@1-0.2-0",
      "reset:c,d@1-0.2-0",
    ]);
  });

  it("during a resume, a loss is held and goes by its own partition's position", async () => {
    const bridge = new PartitionedBridge(TABLE, 3);
    const broker = quietBroker(bridge);
    for (let n = 1; n <= 5; n++) await broker.publish("a", `a${n}`);
    // Read before the loss: partition 1 at 0, partition 0 at 5.
    bridge.pause();
    const early = broker.subscribe(["a", "c"], { lastEventId: "0-4.1-0.2-0" });
    await settled();
    await bridge.read();
    bridge.missing.add(1);
    await broker.publish("c", "c1");
    bridge.lose(1); // partition 1 at 1: after the replay's 0 there, though below its 5 on 0
    await broker.publish("c", "c2");
    bridge.release();
    assert.deepEqual(show(await readEvents(early.readable, 3)), [
      "a5@0-5.1-0.2-0",
      "reset:c@0-5.1-1.2-0",
      "c2@0-5.1-2.2-0",
    ]);
    // Read after the loss: the replay carries the event itself and the held signal is dropped.
    bridge.pause();
    const late = broker.subscribe(["a", "c"], { lastEventId: "0-5.1-2.2-0" });
    await settled();
    bridge.missing.add(1);
    await broker.publish("c", "c3");
    bridge.lose(1);
    await broker.publish("c", "c4");
    await bridge.read();
    bridge.release();
    await broker.publish("a", "a6");
    assert.deepEqual(show(await readEvents(late.readable, 3)), [
      "c3@0-5.1-3.2-0",
      "c4@0-5.1-4.2-0",
      "a6@0-6.1-4.2-0",
    ]);
    assert.equal(broker.metrics().gapSignals, 1, "early's only: late's held signal was dropped");
    await broker.close();
  });
});
