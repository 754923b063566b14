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
