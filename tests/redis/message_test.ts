import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  decodeMessage,
  decodePartitionedMessage,
  decodePartitionedPayload,
  encodePartitionedEvent,
  encodePartitionedHead,
  encodePayload,
  type PartitionedMessage,
  partitionedPayloadOf,
} from "../../src/redis/_message.ts";
import { partitionOf } from "../../src/redis/_partition.ts";
import { isEpoch, parsePosition } from "../../src/redis/_position.ts";
import { everySplit } from "../_helpers.ts";

/** A small seeded generator (mulberry32), so that a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const N = 16;
const BODY = "event: chat\ndata: hello\n\n";
const ROOM = partitionOf("room", N);
const EPOCH = "k9x2ab";

/** What the partitioned publish script sends for `room`, seq 7, prev 3. */
function roomMessage(history = true): string {
  return encodePartitionedEvent(
    ROOM,
    EPOCH,
    7,
    3,
    encodePayload("room", history || undefined, BODY),
  );
}

describe("the f2 message format", () => {
  it("decodes an event with its partition, prev and a one-component id", () => {
    const text = roomMessage();
    assert.equal(text, `f2 ${ROOM} ${EPOCH} 7 3 4 -2 room${BODY}`);
    assert.deepEqual(decodePartitionedMessage(text, N), {
      kind: "event",
      partition: ROOM,
      epoch: EPOCH,
      prev: 3,
      event: {
        channel: "room",
        seq: 7,
        partition: ROOM,
        id: `${ROOM.toString(36)}-${EPOCH}-7`,
        body: BODY,
      },
    });
    // The id is a composite id of this mode, naming this partition only.
    const message = decodePartitionedMessage(text, N) as PartitionedMessage & { kind: "event" };
    assert.deepEqual(parsePosition(message.event.id, N), [
      { partition: ROOM, epoch: EPOCH, seq: 7 },
    ]);
  });

  it("decodes an event without an id (no history)", () => {
    const message = decodePartitionedMessage(roomMessage(false), N);
    assert.ok(typeof message === "object" && message.kind === "event");
    assert.equal(message.event.id, undefined);
  });

  it("decodes a broadcast in partition n, and its first event with prev 0", () => {
    const text = encodePartitionedEvent(N, EPOCH, 1, 0, encodePayload(null, true, BODY));
    assert.deepEqual(decodePartitionedMessage(text, N), {
      kind: "event",
      partition: N,
      epoch: EPOCH,
      prev: 0,
      event: { channel: null, seq: 1, partition: N, id: `g-${EPOCH}-1`, body: BODY },
    });
  });

  it("decodes a checkpoint, at seq 0 too", () => {
    assert.equal(encodePartitionedHead(3, EPOCH, 0), `f2 3 ${EPOCH} 0 head`);
    assert.deepEqual(decodePartitionedMessage(encodePartitionedHead(3, EPOCH, 0), N), {
      kind: "head",
      partition: 3,
      epoch: EPOCH,
      seq: 0,
    });
    assert.deepEqual(decodePartitionedMessage(`f2 16 ${EPOCH} 123456789012345 head`, N), {
      kind: "head",
      partition: 16,
      epoch: EPOCH,
      seq: 123456789012345,
    });
  });

  it("gives the payload back for a check with Redis", () => {
    const payload = encodePayload("room", true, BODY);
    assert.equal(partitionedPayloadOf(encodePartitionedEvent(ROOM, EPOCH, 7, 3, payload)), payload);
    assert.equal(
      partitionedPayloadOf(encodePartitionedEvent(N, EPOCH, 7, 6, encodePayload(null, true, BODY))),
      encodePayload(null, true, BODY),
    );
  });

  it("keeps f1 and f2 apart: neither decoder takes the other's messages", () => {
    assert.equal(
      decodePartitionedMessage(`f1 ${EPOCH} 7 4 -2 room${BODY}`, N),
      "it does not start with `f2`",
    );
    assert.equal(decodePartitionedMessage(`f1 ${EPOCH} 7 head`, N), "it does not start with `f2`");
    assert.equal(decodeMessage(roomMessage()), "it does not start with `f1`");
    assert.equal(decodeMessage(encodePartitionedHead(3, EPOCH, 7)), "it does not start with `f1`");
  });

  const other = partitionOf("other", N) === ROOM ? "room2" : "other";
  const refused: [string, unknown, RegExp][] = [
    ["a value that is not text", 42, /not text/],
    ["another format", "f3 1 abcdef 1 0 -1 -1 data: x\n\n", /does not start with `f2`/],
    ["no fields", "f2", /does not start with `f2`|no epoch/],
    ["only a partition", "f2 3", /no epoch/],
    ["a partition above n", `f2 17 ${EPOCH} 7 head`, /partition is malformed/],
    ["a partition with a leading zero", `f2 03 ${EPOCH} 7 head`, /partition is malformed/],
    ["a negative partition", `f2 -1 ${EPOCH} 7 head`, /partition is malformed/],
    ["a partition of 4 digits", `f2 1000 ${EPOCH} 7 head`, /partition is malformed/],
    ["an f1 epoch of 16 characters", "f2 3 0123456789abcdef 7 head", /epoch or seq is malformed/],
    ["a short epoch", "f2 3 abcde 7 head", /epoch or seq is malformed/],
    ["an uppercase epoch", "f2 3 ABCDEF 7 head", /epoch or seq is malformed/],
    ["a seq of 16 digits", `f2 3 ${EPOCH} 1234567890123456 head`, /epoch or seq is malformed/],
    ["a negative seq", `f2 3 ${EPOCH} -7 head`, /epoch or seq is malformed/],
    ["no payload", `f2 3 ${EPOCH} 7`, /no payload/],
    ["a checkpoint with more after it", `f2 3 ${EPOCH} 7 head `, /no payload|prev is malformed/],
    ["an event at seq 0", `f2 ${ROOM} ${EPOCH} 0 0 4 -1 room${BODY}`, /seq must be positive/],
    ["an event without prev", `f2 ${ROOM} ${EPOCH} 7 4`, /no payload/],
    ["a malformed prev", `f2 ${ROOM} ${EPOCH} 7 x 4 -1 room${BODY}`, /prev is malformed/],
    ["a negative prev", `f2 ${ROOM} ${EPOCH} 7 -1 4 -1 room${BODY}`, /prev is malformed/],
    ["a prev at its seq", `f2 ${ROOM} ${EPOCH} 7 7 4 -1 room${BODY}`, /prev is not before/],
    ["a prev after its seq", `f2 ${ROOM} ${EPOCH} 7 9 4 -1 room${BODY}`, /prev is not before/],
    ["a caller's id", `f2 ${ROOM} ${EPOCH} 7 3 4 2 roomid${BODY}`, /caller's id/],
    ["a caller's empty id", `f2 ${ROOM} ${EPOCH} 7 3 4 0 room${BODY}`, /caller's id/],
    [
      "a channel of another partition",
      encodePartitionedEvent(ROOM, EPOCH, 7, 3, encodePayload(other, true, BODY)),
      /not in its partition/,
    ],
    [
      "a broadcast outside partition n",
      encodePartitionedEvent(ROOM, EPOCH, 7, 3, encodePayload(null, true, BODY)),
      /not in its partition/,
    ],
    [
      "a channel event in partition n",
      encodePartitionedEvent(N, EPOCH, 7, 3, encodePayload("room", true, BODY)),
      /not in its partition/,
    ],
    ["a truncated payload", `f2 ${ROOM} ${EPOCH} 7 3 40 -1 room${BODY}`, /truncated/],
    ["a body of two events", roomMessage().replace(BODY, `${BODY}${BODY}`), /more than one event/],
    ["a body with an id line", roomMessage().replace(BODY, `id: 9\n${BODY}`), /not an event/],
    ["an empty channel", `f2 ${ROOM} ${EPOCH} 7 3 0 -1 ${BODY}`, /channel is empty/],
  ];
  for (const [name, text, reason] of refused) {
    it(`refuses ${name}`, () => {
      const result = decodePartitionedMessage(text, N);
      assert.equal(typeof result, "string", JSON.stringify(result));
      assert.match(result as string, reason);
    });
  }

  it("refuses every proper prefix of an event and of a checkpoint", () => {
    for (
      const text of [roomMessage(), roomMessage(false), encodePartitionedHead(3, EPOCH, 42)]
    ) {
      for (const [head] of everySplit(text).slice(0, -1)) {
        assert.equal(typeof decodePartitionedMessage(head, N), "string", JSON.stringify(head));
      }
    }
  });

  it("never throws on mutated messages, and what it takes holds together", () => {
    const next = random(9);
    const alphabet = "0123456789 -abcdefz{}:\n\rheadf2\0\u00e9";
    const channels = ["room", "user:{42}:inbox", "{42}", "a b", "x", null];
    let taken = 0;
    for (let i = 0; i < 20_000; i++) {
      const channel = channels[Math.floor(next() * channels.length)]!;
      const seq = 1 + Math.floor(next() * 1_000);
      let text = next() < 0.1
        ? encodePartitionedHead(Math.floor(next() * 17), EPOCH, seq)
        : encodePartitionedEvent(
          partitionOf(channel, N),
          EPOCH,
          seq,
          Math.floor(next() * seq),
          encodePayload(channel, next() < 0.5 ? true : undefined, BODY),
        );
      const edits = Math.floor(next() * 3);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(next() * text.length);
        const char = alphabet[Math.floor(next() * alphabet.length)]!;
        const kind = Math.floor(next() * 3);
        text = text.slice(0, at) + (kind === 2 ? "" : char) + text.slice(kind === 1 ? at : at + 1);
      }
      const message = decodePartitionedMessage(text, N);
      if (typeof message === "string") continue;
      taken++;
      assert.ok(message.partition >= 0 && message.partition <= N, text);
      assert.ok(isEpoch(message.epoch), text);
      if (message.kind === "event") {
        const { event } = message;
        assert.equal(event.partition, message.partition, text);
        assert.equal(partitionOf(event.channel, N), message.partition, text);
        assert.ok(message.prev >= 0 && message.prev < event.seq, text);
        assert.ok(event.id === undefined || parsePosition(event.id, N)?.length === 1, text);
      }
    }
    assert.ok(taken > 5_000, `only ${taken} messages were taken: the mutations are too blunt`);
  });
});

describe("decodePartitionedPayload (stream and log entries)", () => {
  const payload = encodePayload("room", true, BODY);

  it("decodes an entry's payload with the entry's seq and epoch", () => {
    assert.deepEqual(decodePartitionedPayload(payload, 0, ROOM, EPOCH, 12, N), {
      channel: "room",
      seq: 12,
      partition: ROOM,
      id: `${ROOM.toString(36)}-${EPOCH}-c`,
      body: BODY,
    });
  });

  it("refuses an entry whose seq, epoch or partition cannot be a position, without throwing", () => {
    const bad: [number, string, number][] = [
      [ROOM, EPOCH, 0],
      [ROOM, EPOCH, -1],
      [ROOM, EPOCH, 1.5],
      [ROOM, EPOCH, NaN],
      [ROOM, EPOCH, 1e20],
      [ROOM, "0123456789abcdef", 1],
      [ROOM, "", 1],
      [-1, EPOCH, 1],
      [N + 1, EPOCH, 1],
      [NaN, EPOCH, 1],
    ];
    for (const [partition, epoch, seq] of bad) {
      const result = decodePartitionedPayload(payload, 0, partition, epoch, seq, N);
      assert.equal(typeof result, "string", `${partition} ${epoch} ${seq}`);
    }
  });
});
