/**
 * The text format of one event on the Redis channel and in a channel's stream.
 *
 * A publisher sends the payload `<clen> <ilen> <channel><id><body>`; the publish script puts
 * `f1 <epoch> <seq> ` in front of it, so the position comes from Redis and no script has to
 * parse or re-encode the body. `clen` is `-1` for a broadcast, `ilen` is `-1` for no id and `-2`
 * for the id `<epoch>-<seq>` that only Redis can name. Lengths count UTF-16 code units: both
 * ends are JavaScript, Redis only copies the bytes. A checkpoint is `f1 <epoch> <seq> head`.
 *
 * The partitioned mode writes `f2 <k> <epoch> <seq> <prev> <payload>` instead: `k` is the
 * event's partition and `prev` the seq (in that partition) of its channel's previous event, `0`
 * when unknown; a checkpoint is `f2 <k> <epoch> <seq> head`. Its payloads carry no caller ids
 * (`ilen` is `-1`, or `-2` for "the bridge makes its id"), and each message is checked against
 * its channel's partition, so it needs no channel name from the adapter. All numbers are decimal.
 *
 * A framed format rather than JSON: the body is already an encoded frame, so decoding is a few
 * `indexOf` and `slice` calls however large it is.
 * @module
 */

import type { BridgeEvent } from "../bridge.ts";
import { bodyProblem, checkId } from "../_wire.ts";
import { partitionOf } from "./_partition.ts";
import { encodeComponent, isEpoch, MAX_COMPONENT_SEQ } from "./_position.ts";

const MAGIC = "f1";
const EPOCH = /^[0-9a-z]{1,16}$/;
const SEQ = /^[0-9]{1,15}$/;
const LENGTH = /^(?:-[12]|0|[1-9][0-9]{0,9})$/;
/** A generated id: Redis assigns it inside the publish script. */
const GENERATED = -2;

/** One message from the Redis channel, decoded. */
export type Message =
  | { kind: "event"; epoch: string; event: BridgeEvent }
  | { kind: "head"; epoch: string; seq: number };

/**
 * The payload of one event, as the publish script receives it.
 * @param channel The channel, `null` for a broadcast.
 * @param id The caller's id, or `true` for one made of the epoch and seq.
 * @param body The encoded frame without its id line.
 */
export function encodePayload(
  channel: string | null,
  id: string | true | undefined,
  body: string,
): string {
  const clen = channel === null ? -1 : channel.length;
  const ilen = id === true ? GENERATED : id === undefined ? -1 : id.length;
  return `${clen} ${ilen} ${channel ?? ""}${typeof id === "string" ? id : ""}${body}`;
}

/**
 * Decodes what the publish script wrote, refusing anything else.
 * @returns The message, or a reason to skip it.
 */
export function decodeMessage(text: unknown): Message | string {
  if (typeof text !== "string") return "it is not text";
  const a = text.indexOf(" ");
  const b = text.indexOf(" ", a + 1);
  if (a < 0 || b < 0 || text.slice(0, a) !== MAGIC) return "it does not start with `f1`";
  const epoch = text.slice(a + 1, b);
  const c = text.indexOf(" ", b + 1);
  const seqText = text.slice(b + 1, c < 0 ? undefined : c);
  if (!EPOCH.test(epoch) || !SEQ.test(seqText)) return "its epoch or seq is malformed";
  const seq = Number(seqText);
  if (c < 0) return "it has no payload";
  if (text.length === c + 5 && text.endsWith("head")) return { kind: "head", epoch, seq };
  if (seq === 0) return "an event's seq must be positive";
  const event = decodePayload(text, c + 1, epoch, seq);
  return typeof event === "string" ? event : { kind: "event", epoch, event };
}

/**
 * Decodes a payload (from the channel or a stream entry) at `start` of `text`.
 * @returns The event, or a reason to skip it.
 */
export function decodePayload(
  text: string,
  start: number,
  epoch: string,
  seq: number,
): BridgeEvent | string {
  const a = text.indexOf(" ", start);
  const b = a < 0 ? -1 : text.indexOf(" ", a + 1);
  if (b < 0) return "its payload has no lengths";
  const clenText = text.slice(start, a);
  const ilenText = text.slice(a + 1, b);
  if (!LENGTH.test(clenText) || !LENGTH.test(ilenText)) return "its lengths are malformed";
  const clen = Number(clenText);
  const ilen = Number(ilenText);
  if (clen === GENERATED) return "its channel length is malformed";
  let at = b + 1;
  if (at + Math.max(clen, 0) + Math.max(ilen, 0) > text.length) return "it is truncated";
  const channel = clen < 0 ? null : text.slice(at, at += clen);
  if (channel === "") return "its channel is empty";
  let id: string | undefined;
  if (ilen === GENERATED) id = `${epoch}-${seq}`;
  else if (ilen >= 0) {
    id = text.slice(at, at += ilen);
    const problem = idProblem(id);
    if (problem !== undefined) return problem;
  }
  const body = text.slice(at);
  return bodyProblem(body) ?? { channel, seq, id, body };
}

/**
 * Why a caller's id cannot go on the wire as it is, asking the wire's owner. Its length is not
 * checked here: the broker decides which ids it takes, and an id it took must come back.
 */
function idProblem(id: string): string | undefined {
  try {
    checkId(id);
    return undefined;
  } catch {
    return "its id cannot be written on the wire";
  }
}

/**
 * The payload of a message from the channel (what the publish script got and stored as the
 * stream entry's `m`): the text after `f1 <epoch> <seq> `. Only for a message that decoded.
 */
export function payloadOf(text: string): string {
  const a = text.indexOf(" ");
  const b = text.indexOf(" ", a + 1);
  return text.slice(text.indexOf(" ", b + 1) + 1);
}

const MAGIC_PARTITIONED = "f2";
const PARTITION = /^(?:0|[1-9][0-9]{0,2})$/;

/** One message of the partitioned mode, decoded. */
export type PartitionedMessage =
  | {
    kind: "event";
    /** The event's partition (also on `event.partition`). */
    partition: number;
    epoch: string;
    /** The seq of its channel's previous event in the partition, `0` when unknown. */
    prev: number;
    /** With `partition` set; its `id` as {@linkcode decodePartitionedPayload} gives it. */
    event: BridgeEvent;
  }
  | { kind: "head"; partition: number; epoch: string; seq: number };

/**
 * The message the partitioned publish script sends for an event (for tests and forgeries: the
 * script writes the same text itself).
 * @param partition The event's partition.
 * @param epoch The partition's epoch.
 * @param seq The event's seq in the partition.
 * @param prev The seq of its channel's previous event, `0` when unknown.
 * @param payload What {@linkcode encodePayload} made.
 * @returns `f2 <k> <epoch> <seq> <prev> <payload>`.
 */
export function encodePartitionedEvent(
  partition: number,
  epoch: string,
  seq: number,
  prev: number,
  payload: string,
): string {
  return `${MAGIC_PARTITIONED} ${partition} ${epoch} ${seq} ${prev} ${payload}`;
}

/**
 * A checkpoint of the partitioned mode: "the head of partition `partition` is `seq`".
 * @param partition The partition.
 * @param epoch Its epoch.
 * @param seq Its newest seq.
 * @returns `f2 <k> <epoch> <seq> head`.
 */
export function encodePartitionedHead(partition: number, epoch: string, seq: number): string {
  return `${MAGIC_PARTITIONED} ${partition} ${epoch} ${seq} head`;
}

/**
 * Decodes a message of the partitioned mode, refusing anything else: a partition above `n`, an
 * epoch that is not 6 of `[0-9a-z]`, a `prev` not below the seq, a caller's id, or an event whose
 * channel is not in its partition (a broadcast: partition `n`). Never throws.
 * @param text The message as the adapter got it (any value).
 * @param n Partitions of channels: partition `n` is the broadcast one.
 * @returns The message, or a reason to skip it.
 */
export function decodePartitionedMessage(text: unknown, n: number): PartitionedMessage | string {
  if (typeof text !== "string") return "it is not text";
  const a = text.indexOf(" ");
  if (a < 0 || text.slice(0, a) !== MAGIC_PARTITIONED) return "it does not start with `f2`";
  const b = text.indexOf(" ", a + 1);
  const c = b < 0 ? -1 : text.indexOf(" ", b + 1);
  if (c < 0) return "it has no epoch";
  const partitionText = text.slice(a + 1, b);
  if (!PARTITION.test(partitionText) || !(Number(partitionText) <= n)) {
    return "its partition is malformed";
  }
  const partition = Number(partitionText);
  const epoch = text.slice(b + 1, c);
  const d = text.indexOf(" ", c + 1);
  const seqText = text.slice(c + 1, d < 0 ? undefined : d);
  if (!isEpoch(epoch) || !SEQ.test(seqText)) return "its epoch or seq is malformed";
  const seq = Number(seqText);
  if (d < 0) return "it has no payload";
  if (text.length === d + 5 && text.endsWith("head")) {
    return { kind: "head", partition, epoch, seq };
  }
  if (seq === 0) return "an event's seq must be positive";
  const e = text.indexOf(" ", d + 1);
  if (e < 0) return "it has no payload";
  const prevText = text.slice(d + 1, e);
  if (!SEQ.test(prevText)) return "its prev is malformed";
  const prev = Number(prevText);
  if (prev >= seq) return "its prev is not before its seq";
  const event = decodePartitionedPayload(text, e + 1, partition, epoch, seq, n);
  return typeof event === "string" ? event : { kind: "event", partition, epoch, prev, event };
}

/**
 * Decodes a payload of the partitioned mode (from a message, a stream entry or the heal log) at
 * `start` of `text`. Its `id` is the event's own one-component id (`<k>-<epoch>-<seq>` in base
 * 36) when the payload asks for one (`ilen` `-2`), else `undefined`: the bridge puts each
 * client's composite id on the frame, this only says that there is one.
 * @param text The text the payload is in.
 * @param start Where it starts.
 * @param partition The partition it was published in.
 * @param epoch That partition's epoch.
 * @param seq Its seq in the partition.
 * @param n Partitions of channels: partition `n` is the broadcast one.
 * @returns The event (with `partition`), or a reason to skip it.
 */
export function decodePartitionedPayload(
  text: string,
  start: number,
  partition: number,
  epoch: string,
  seq: number,
  n: number,
): BridgeEvent | string {
  if (!Number.isInteger(seq) || seq < 1 || seq > MAX_COMPONENT_SEQ) return "its seq is malformed";
  if (!isEpoch(epoch)) return "its epoch is malformed";
  if (!Number.isInteger(partition) || partition < 0 || !(partition <= n)) {
    return "its partition is malformed";
  }
  const event = decodePayload(text, start, epoch, seq);
  if (typeof event === "string") return event;
  // decodePayload checked both lengths: the second field is `ilen`.
  const a = text.indexOf(" ", start);
  const ilenText = text.slice(a + 1, text.indexOf(" ", a + 1));
  if (ilenText !== "-1" && ilenText !== "-2") return "it has a caller's id";
  if (partitionOf(event.channel, n) !== partition) return "its channel is not in its partition";
  return {
    channel: event.channel,
    seq,
    partition,
    id: ilenText === "-2" ? encodeComponent(partition, epoch, seq) : undefined,
    body: event.body,
  };
}

/**
 * The payload of a message of the partitioned mode: the text after `f2 <k> <epoch> <seq> <prev> `.
 * Only for an event that decoded.
 * @param text The message.
 * @returns The payload.
 */
export function partitionedPayloadOf(text: string): string {
  let at = 0;
  for (let i = 0; i < 5; i++) at = text.indexOf(" ", at) + 1;
  return text.slice(at);
}
