/**
 * The sequence decision of the Redis bridge, as a pure function: given where a worker is in the
 * order of events and what one message on the channel claims, what to do with it. Everything
 * that talks to Redis or to the broker stays in `redis_bridge.ts`; this file only decides, so
 * that every case can be read in one table and tested as one.
 *
 * The order has two parts: an epoch, which Redis hands out once and changes only when it lost
 * its data (a restart without persistence, a failover), and a seq that grows by one per event.
 * A checkpoint (`head`) says "the newest seq is this", and is the only message that may bring a
 * new epoch: the scripts always announce one with a checkpoint before its first event.
 *
 * The partitioned mode orders events per partition, and a worker sees only the channels it
 * subscribed to, so "the next seq" no longer finds holes: {@linkcode nextChannelStep} decides
 * per channel, from the `prev` every message carries (the seq of its channel's previous event).
 * Its broadcast partition has every event, and keeps {@linkcode nextStep}.
 * @module
 */

/** Where a worker is: the epoch it follows and the seq of the last event it delivered. */
export interface Position {
  epoch: string;
  seq: number;
}

/** What one message claims: an event at `seq`, or a checkpoint saying the head is `seq`. */
export interface Claim {
  kind: "event" | "head";
  epoch: string;
  seq: number;
}

/**
 * What to do with a message:
 * - `deliver`: the next event (or the first message this worker sees): deliver it, move there.
 * - `checkpoint`: a checkpoint at the worker's position (or the first message): move there.
 * - `duplicate`: an event at or before the position: skip it, it was delivered.
 * - `foreign`: an event of an epoch that no checkpoint announced: a stray, or a new epoch whose
 *   checkpoint this worker missed (it was resubscribing); Redis tells which.
 * - `hole`: events `first` to `last` never arrived; the message itself is fine to act on.
 * - `rewind`: a checkpoint behind the position in the same epoch: Redis went back.
 * - `new-epoch`: a checkpoint of another epoch: Redis lost its data, ids from before are void.
 *
 * `foreign` and the last three mean this worker's clients may have missed events. They are claims of a
 * message anyone can publish, so the bridge confirms them with Redis before acting on them.
 */
export type Step =
  | { action: "deliver" }
  | { action: "checkpoint" }
  | { action: "duplicate" }
  | { action: "foreign" }
  | { action: "hole"; first: number; last: number }
  | { action: "rewind" }
  | { action: "new-epoch" };

/** Decides what to do with a message that claims `claim`, for a worker at `position`. */
export function nextStep(position: Position | undefined, claim: Claim): Step {
  const event = claim.kind === "event";
  if (position === undefined) return { action: event ? "deliver" : "checkpoint" };
  if (claim.epoch !== position.epoch) return { action: event ? "foreign" : "new-epoch" };
  if (event) {
    if (claim.seq <= position.seq) return { action: "duplicate" };
    if (claim.seq === position.seq + 1) return { action: "deliver" };
    return { action: "hole", first: position.seq + 1, last: claim.seq - 1 };
  }
  if (claim.seq < position.seq) return { action: "rewind" };
  if (claim.seq === position.seq) return { action: "checkpoint" };
  return { action: "hole", first: position.seq + 1, last: claim.seq };
}

/** What one message of the partitioned mode claims: {@linkcode Claim} and its channel's `prev`. */
export interface ChannelClaim extends Claim {
  /** For an event: the seq of its channel's previous event in the partition, `0` when unknown. Not read for a checkpoint. */
  prev: number;
}

/**
 * What to do with a message of the partitioned mode:
 * - `deliver`: deliver the event, move the channel (and the partition) there.
 * - `duplicate`: an event of the channel at or before its last delivered one: skip it.
 * - `foreign`: an event of an epoch this worker does not follow in the partition: a stray or a
 *   new epoch; Redis tells which (a confirmed new epoch is a loss in this partition).
 * - `hole`: events `first` to `last` of the partition may include the channel's missed ones:
 *   heal them (for this channel) from the partition's log, then deliver the event.
 * - `new-epoch`: a checkpoint of another epoch: confirm, then a loss in this partition.
 * - `rewind`: a checkpoint behind the partition's position: confirm, then a loss.
 * - `audit`: a checkpoint at or past the position (or the partition's first): the audit of the
 *   partition it answers heals what the markers show, then the partition moves to it.
 */
export type ChannelStep =
  | { action: "deliver" }
  | { action: "duplicate" }
  | { action: "foreign" }
  | { action: "hole"; first: number; last: number }
  | { action: "new-epoch" }
  | { action: "rewind" }
  | { action: "audit" };

/**
 * Decides what to do with a message of the partitioned mode (design §4.3, one row per case).
 * @param partition Where the worker is in the message's partition (`undefined`: no live position).
 * @param last The partition seq of the channel's last delivered event, or `"start"` when none
 * since its subscription was confirmed. Not read for a checkpoint.
 * @param claim What the message claims.
 * @returns The step.
 */
export function nextChannelStep(
  partition: Position | undefined,
  last: number | "start",
  claim: ChannelClaim,
): ChannelStep {
  if (claim.kind === "head") {
    if (partition === undefined) return { action: "audit" };
    if (claim.epoch !== partition.epoch) return { action: "new-epoch" };
    return { action: claim.seq < partition.seq ? "rewind" : "audit" };
  }
  if (partition === undefined) return { action: "deliver" };
  if (claim.epoch !== partition.epoch) return { action: "foreign" };
  if (last === "start") return { action: "deliver" };
  if (claim.seq <= last) return { action: "duplicate" };
  if (claim.prev > 0 && claim.prev <= last) return { action: "deliver" };
  // `prev` above `last`: the channel's events after `last` up to `prev` are missing. `prev` 0
  // (the marker expired): any event up to the one before may be, usually none. A `prev` at or
  // past the seq is no event of this channel: the same bound.
  const end = claim.prev > 0 && claim.prev < claim.seq ? claim.prev : claim.seq - 1;
  if (end <= last) return { action: "deliver" };
  return { action: "hole", first: last + 1, last: end };
}
