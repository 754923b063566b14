/**
 * The `Last-Event-ID` of the partitioned mode of the Redis bridge: one component per partition,
 * `<partition>-<epoch>-<seq>`, joined by `.` in increasing partition order, at most
 * `MAX_ID_LENGTH` (256) characters.
 *
 * ```
 * id        = component *( "." component )
 * component = part "-" epoch "-" seq   ; part: the partition in base 36, 1-2 characters;
 *                                      ; epoch: 6 of [0-9a-z]; seq: base 36, 1-10 characters
 * ```
 *
 * Part and seq are written without leading zeros, so one position has one spelling. An id names
 * only the partitions a client's channels touch (plus the broadcast partition); a partition it
 * does not name is unknown, and its channels get a gap signal on resume, never a hole. When a
 * client's partitions do not fit in 256 characters, the components of its highest-numbered
 * partitions other than the broadcast one are left out (see {@linkcode joinComponents}).
 *
 * A single-order id (`<epoch>-<seq>`, two fields) never parses here, nor an id of this mode there.
 * @module
 */

import { MAX_ID_LENGTH } from "../_wire.ts";
import { MAX_PARTITIONS } from "./_partition.ts";

/** Characters of an epoch in the partitioned mode: 6 base-36 characters (31 random bits). */
export const EPOCH_LENGTH = 6;
/** The largest seq a component can carry: 10 base-36 digits (above any 15-digit decimal seq). */
export const MAX_COMPONENT_SEQ = 36 ** 10 - 1;

const EPOCH = /^[0-9a-z]{6}$/;
/** One component, canonical: no leading zeros in part or seq. */
const COMPONENT = /^(0|[1-9a-z][0-9a-z]?)-([0-9a-z]{6})-(0|[1-9a-z][0-9a-z]{0,9})$/;

/** Where a client (or a worker) is in one partition: the epoch and the seq of its last event. */
export interface PartitionPosition {
  /** The partition, `0` to `n` (`n`: the broadcast partition). */
  partition: number;
  /** The partition's epoch, 6 of `[0-9a-z]`. */
  epoch: string;
  /** The seq of the last event in that epoch (`0`: none yet). */
  seq: number;
}

/**
 * Whether `text` is an epoch of the partitioned mode (6 of `[0-9a-z]`).
 * @param text Anything, e.g. a script's reply.
 * @returns `true` when it is.
 */
export function isEpoch(text: unknown): text is string {
  return typeof text === "string" && EPOCH.test(text);
}

/**
 * A random epoch: 31 bits in base 36, padded to {@linkcode EPOCH_LENGTH} characters.
 * @returns The epoch.
 */
export function newEpoch(): string {
  const [random] = crypto.getRandomValues(new Uint32Array(1));
  return ((random ?? 0) >>> 1).toString(36).padStart(EPOCH_LENGTH, "0");
}

/**
 * The text of one component, `<partition>-<epoch>-<seq>` in base 36.
 * @param partition The partition, `0` to {@linkcode MAX_PARTITIONS} (the broadcast one at most).
 * @param epoch The partition's epoch (see {@linkcode isEpoch}).
 * @param seq The seq, `0` to {@linkcode MAX_COMPONENT_SEQ}.
 * @returns The component.
 * @throws {RangeError} When a value cannot be written (a bug of the caller: validate epochs where
 * they come from Redis).
 */
export function encodeComponent(partition: number, epoch: string, seq: number): string {
  if (!Number.isInteger(partition) || partition < 0 || partition > MAX_PARTITIONS) {
    throw new RangeError(
      `Cannot encode position: the partition is out of range, got \`${partition}\``,
    );
  }
  if (!EPOCH.test(epoch)) {
    throw new RangeError(`Cannot encode position: the epoch is malformed, got \`${epoch}\``);
  }
  if (!Number.isInteger(seq) || seq < 0 || seq > MAX_COMPONENT_SEQ) {
    throw new RangeError(`Cannot encode position: the seq is out of range, got \`${seq}\``);
  }
  return `${partition.toString(36)}-${epoch}-${seq.toString(36)}`;
}

/**
 * Joins components into an id of at most `MAX_ID_LENGTH` characters. When they do not fit, the
 * highest-numbered ones are left out, but never the broadcast partition's (the last component
 * when it is partition `n`): a resume gives the channels of a left-out partition a gap signal.
 * @param components Texts of {@linkcode encodeComponent}, sorted by partition, distinct.
 * @param n Partitions of channels: partition `n` is the broadcast one.
 * @returns The id (`""` for no components).
 */
export function joinComponents(components: readonly string[], n: number): string {
  let length = components.length - 1;
  for (const component of components) length += component.length;
  if (length <= MAX_ID_LENGTH) return components.join(".");
  const last = components[components.length - 1] ?? "";
  const keepLast = last.startsWith(`${n.toString(36)}-`);
  const kept = keepLast ? components.slice(0, -1) : components.slice();
  while (length > MAX_ID_LENGTH && kept.length > 0) length -= kept.pop()!.length + 1;
  if (keepLast) kept.push(last);
  return kept.join(".");
}

/**
 * The id of positions in some partitions: {@linkcode encodeComponent} of each, in partition
 * order, through {@linkcode joinComponents}.
 * @param positions One per partition, in any order.
 * @param n Partitions of channels: partition `n` is the broadcast one.
 * @returns The id, at most `MAX_ID_LENGTH` characters.
 * @throws {RangeError} For a value {@linkcode encodeComponent} refuses, or a partition twice.
 */
export function encodePosition(positions: readonly PartitionPosition[], n: number): string {
  const sorted = [...positions].sort((a, b) => a.partition - b.partition);
  const components = sorted.map((p, i) => {
    if (i > 0 && sorted[i - 1]!.partition === p.partition) {
      throw new RangeError(
        `Cannot encode position: partition ${p.partition} is given twice, got \`${p.epoch}\` and \`${
          sorted[i - 1]!.epoch
        }\``,
      );
    }
    return encodeComponent(p.partition, p.epoch, p.seq);
  });
  return joinComponents(components, n);
}

/**
 * Reads a client's `Last-Event-ID`. Never throws, never reads Redis: anything but a well-formed
 * id of this mode (canonical components, partitions increasing and at most `n`, at most
 * `MAX_ID_LENGTH` characters) is unknown.
 * @param id The client's id, as it came (any value).
 * @param n Partitions of channels: partition `n` is the broadcast one.
 * @returns The positions in increasing partition order, or `undefined` when the id is unusable
 * (then every partition is unknown).
 */
export function parsePosition(id: unknown, n: number): PartitionPosition[] | undefined {
  if (typeof id !== "string" || id.length === 0 || id.length > MAX_ID_LENGTH) return undefined;
  const positions: PartitionPosition[] = [];
  let previous = -1;
  for (const text of id.split(".")) {
    const match = COMPONENT.exec(text);
    if (match === null) return undefined;
    const partition = parseInt(match[1]!, 36);
    if (partition <= previous || !(partition <= n)) return undefined;
    previous = partition;
    positions.push({ partition, epoch: match[2]!, seq: parseInt(match[3]!, 36) });
  }
  return positions;
}
