/**
 * One event as a broker stores it and fans it out: encoded once, delivered in `seq` order.
 *
 * @example The shape a bridge hands to the broker
 * ```ts
 * import type { BridgeEvent } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const event: BridgeEvent = {
 *   channel: "user:42",
 *   seq: 7,
 *   id: "k9x2-7",
 *   body: 'event: note\ndata: {"text":"hi"}\n\n',
 * };
 * // The body is a whole frame without its id line; the broker puts the id in place.
 * assert.ok(event.body.endsWith("\n\n") && !event.body.includes("id:"));
 * ```
 */
export interface BridgeEvent {
  /** The channel it was published to, or `null` for a broadcast to every client. */
  channel: string | null;
  /**
   * Its place in the order of all events of all channels: strictly increasing. With
   * {@linkcode Bridge.partitions}, its place in the order of its partition instead.
   */
  seq: number;
  /**
   * Its partition, with {@linkcode Bridge.partitions} (`partitions.of(channel)`); read as 0 when
   * absent. A bridge without partitions leaves it out.
   */
  partition?: number | undefined;
  /** The id sent on the wire (and so the `Last-Event-ID` a client comes back with), if any. */
  id: string | undefined;
  /** The rest of the frame, without an id: its `event:` and `data:` lines, ending with the blank line. */
  body: string;
}

/** What a client that reconnects with a `Last-Event-ID` has missed. */
export interface BridgeReplay {
  /** The events after the client's position on its channels (broadcasts included), in order. */
  events: BridgeEvent[];
  /**
   * The channels on which events after that position are gone from history, or all of them when
   * the position is unknown (a forged id, an id from before a restart).
   */
  gaps: string[];
  /**
   * The newest position at the time of the replay: live events after it follow the replay. With
   * {@linkcode Bridge.partitions}, `seqs` gives it per partition (index = partition; an entry
   * left out keeps every live event of that partition) and `seq` is not read.
   */
  head: { seq: number; id: string; seqs?: readonly (number | undefined)[] | undefined };
}

/**
 * Events a bridge missed and cannot deliver any more, as it tells its broker (see
 * {@linkcode Bridge.open}): everything delivered before it came before the loss, everything
 * delivered after it comes after.
 *
 * @example A Redis restart without persistence: every channel, and a new position
 * ```ts
 * import type { BridgeGap } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const gap: BridgeGap = { channels: null, after: "k9x2-7", head: { seq: 0, id: "p3q1-0" } };
 * assert.equal(gap.channels, null); // unknown: every channel, broadcasts included
 * ```
 */
export interface BridgeGap {
  /**
   * The channels whose events were lost, or `null` when that is not known (then every one; with
   * `partition`, every one of that partition).
   */
  channels: string[] | null;
  /** The id of the last position delivered before the loss, when there was one. */
  after: string | undefined;
  /**
   * The position the bridge goes on from: the gap signal carries its id, so that a client that
   * reconnects later resumes from there. Undefined when the bridge cannot tell yet. With
   * `partition`, `seq` is in that partition's order, and the signal carries
   * {@linkcode BridgePartitions.idFor} of each client's partitions instead of `id`.
   */
  head: { seq: number; id: string } | undefined;
  /**
   * With {@linkcode Bridge.partitions}: the loss is in this partition only. Only the clients with
   * a channel in it get the gap signal (every client for the broadcast partition), naming their
   * channels in it. Absent: the loss may be in every partition.
   */
  partition?: number | undefined;
}

/**
 * How a bridge that orders events per partition maps channels to partitions and positions to
 * ids (see {@linkcode Bridge.partitions}). Each client's stream carries the id of the bridge's
 * position on the partitions of its channels and the broadcast partition, so clients with the
 * same partitions share one encoded frame.
 *
 * @example Two partitions of channels and the broadcast one
 * ```ts
 * import type { BridgePartitions } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const seen = [4, 9, 2]; // this worker's position in each partition
 * const partitions: BridgePartitions = {
 *   count: 3,
 *   of: (channel) => channel === null ? 2 : channel.length % 2,
 *   idFor: (parts) => parts.map((p) => `${p}-${seen[p]}`).join("."),
 * };
 * assert.equal(partitions.of(null), partitions.count - 1); // broadcasts
 * assert.equal(partitions.idFor([partitions.of("user:42"), 2]), "1-9.2-2");
 * ```
 */
export interface BridgePartitions {
  /** Partitions, the broadcast one included: it is `count - 1`. */
  readonly count: number;
  /**
   * The partition of a channel: the same for a channel forever, below `count - 1`.
   * @param channel A channel, or `null` for broadcasts (which gives `count - 1`).
   * @returns The partition.
   */
  of(channel: string | null): number;
  /**
   * The `Last-Event-ID` of the bridge's current position on some partitions: what a client that
   * has every event delivered so far on them would come back with. During `deliver(event)` that
   * position includes `event`; during `lost(gap)`, the position after the loss. The broker calls
   * it once per distinct set per event: keep it synchronous and cheap (cached text).
   * @param partitions Sorted, distinct; the broadcast partition is always among them.
   * @returns The id, at most 256 characters.
   */
  idFor(partitions: readonly number[]): string;
}

/**
 * How long and how much history a bridge keeps, beyond the `history` events per channel that
 * `publish()` is given: the broker passes its `historyTtl` and `historyBytes` options.
 *
 * @example The broker's defaults
 * ```ts
 * import type { HistoryLimits } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const limits: HistoryLimits = { ttl: 3_600_000, bytes: 33_554_432 };
 * assert.equal(limits.ttl, 60 * 60 * 1000); // an hour after a channel's last publish
 * ```
 */
export interface HistoryLimits {
  /**
   * Milliseconds after a channel's last publish (or last replay) at which its history is freed.
   * A client that resumes from a position inside freed history gets the gap signal.
   */
  ttl: number;
  /**
   * Bytes of history the bridge holds across all channels at most; beyond it, the channels used
   * least recently are freed first. A bridge whose store has its own memory bound (Redis's
   * `maxmemory`) documents how it maps this.
   */
  bytes: number;
}

/**
 * Carries a broker's events: assigns their order and ids, keeps their history, and fans them
 * out to every broker that shares it. The broker has one in memory by default; `redisBridge()`
 * from `@flume/sse/redis` shares one between workers and hosts.
 *
 * The contract: `publish()` resolves after the event went through `deliver` on this broker,
 * and every broker sees every event through `deliver` in the same `seq` order, its own included,
 * exactly once. That is what lets one `Last-Event-ID` resume on any worker without duplicates.
 *
 * A bridge may order events per partition instead (it then has {@linkcode Bridge.partitions}
 * and {@linkcode Bridge.interest}): every broker sees every event of the channels it has
 * interest in (and every broadcast) through `deliver`, in `seq` order per partition, exactly
 * once; `publish()` resolves after `deliver` when this broker has interest in the channel, else
 * once the event is ordered and stored; `replay()` resolves once `deliver` has reached `head` on
 * every partition of `head.seqs`; and the ids on the wire are {@linkcode BridgePartitions.idFor}
 * of each client's partitions.
 *
 * @example A broker shared by workers over Redis
 * ```ts ignore
 * import { Broker } from "@flume/sse";
 * import { redisBridge } from "@flume/sse/redis";
 *
 * const broker = new Broker({ history: 100, bridge: redisBridge({ publisher, subscriber }) });
 * ```
 */
export interface Bridge {
  /**
   * Starts delivering events; called once by the broker that owns the bridge. A bridge that
   * missed events should fetch them and deliver them in order (heal in-band); when they are gone
   * for good (its store lost its data, or they were trimmed) it calls `lost`, in order with
   * `deliver`: the broker then sends the affected clients the gap signal on their open streams,
   * and they go on from the new position.
   */
  open(
    deliver: (event: BridgeEvent) => void,
    lost?: (gap: BridgeGap) => void,
    limits?: HistoryLimits,
  ): Promise<void>;
  /**
   * Orders, stores (when `history` > 0, keeping the last `history` per channel) and fans out one
   * event. An event without an id gets one when history is kept.
   */
  publish(
    event: { channel: string | null; body: string; id?: string },
    history: number,
  ): Promise<BridgeEvent>;
  /**
   * What a client at `lastEventId` missed on `channels`. Never throws for a bad id. Resolves only
   * once `deliver` has reached `head`: the broker holds a reconnecting client's live events until
   * then and drops those at or before `head`, so a bridge whose live feed lags behind its history
   * would otherwise deliver some twice. With `head.seqs`: once `deliver` has reached it on every
   * partition, and the held events are dropped per partition.
   */
  replay(channels: readonly string[], lastEventId: string): Promise<BridgeReplay>;
  /** Stops delivering; the broker calls it from its own `close()`. */
  close(): Promise<void>;
  /**
   * Tells the bridge that this broker's first client joined `channel` (`on`), or that its last
   * one left: a bridge that delivers only the channels a broker has interest in subscribes and
   * unsubscribes by it. Called synchronously from `subscribe()` (before `replay()`) and when a
   * stream ends; it must not throw. Absent: the bridge delivers every channel.
   * @param channel The channel.
   * @param on Whether the broker now has a client on it.
   */
  interest?(channel: string, on: boolean): void;
  /**
   * Present when the order is per partition (see {@linkcode BridgePartitions}); absent: one
   * order. The broker reads it once, when it is created.
   */
  readonly partitions?: BridgePartitions | undefined;
}
