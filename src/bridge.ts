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
  /** Its place in the order of all events of all channels: strictly increasing. */
  seq: number;
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
  /** The newest position at the time of the replay: live events after it follow the replay. */
  head: { seq: number; id: string };
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
  /** The channels whose events were lost, or `null` when that is not known (then every one). */
  channels: string[] | null;
  /** The id of the last position delivered before the loss, when there was one. */
  after: string | undefined;
  /**
   * The position the bridge goes on from: the gap signal carries its id, so that a client that
   * reconnects later resumes from there. Undefined when the bridge cannot tell yet.
   */
  head: { seq: number; id: string } | undefined;
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
   * would otherwise deliver some twice.
   */
  replay(channels: readonly string[], lastEventId: string): Promise<BridgeReplay>;
  /** Stops delivering; the broker calls it from its own `close()`. */
  close(): Promise<void>;
}
