/**
 * The text format of one event on the Redis channel and in a channel's stream.
 *
 * A publisher sends the payload `<clen> <ilen> <channel><id><body>`; the publish script puts
 * `f1 <epoch> <seq> ` in front of it, so the position comes from Redis and no script has to
 * parse or re-encode the body. `clen` is `-1` for a broadcast, `ilen` is `-1` for no id and `-2`
 * for the id `<epoch>-<seq>` that only Redis can name. Lengths count UTF-16 code units: both
 * ends are JavaScript, Redis only copies the bytes. A checkpoint is `f1 <epoch> <seq> head`.
 *
 * A framed format rather than JSON: the body is already an encoded frame, so decoding is a few
 * `indexOf` and `slice` calls however large it is.
 * @module
 */

import type { BridgeEvent } from "../bridge.ts";
import { bodyProblem, checkId } from "../_wire.ts";

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
