import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  type ChannelClaim,
  type ChannelStep,
  type Claim,
  nextChannelStep,
  nextStep,
  type Position,
  type Step,
} from "../../src/redis/_sequence.ts";

const at: Position = { epoch: "e1", seq: 5 };

/** [what the case is, the worker's position, the message's claim, the expected step] */
const cases: [string, Position | undefined, Claim, Step][] = [
  ["the first event a worker sees", undefined, { kind: "event", epoch: "e1", seq: 9 }, {
    action: "deliver",
  }],
  ["the first checkpoint a worker sees", undefined, { kind: "head", epoch: "e1", seq: 0 }, {
    action: "checkpoint",
  }],
  ["the next event", at, { kind: "event", epoch: "e1", seq: 6 }, { action: "deliver" }],
  ["an event delivered already", at, { kind: "event", epoch: "e1", seq: 5 }, {
    action: "duplicate",
  }],
  ["an older event", at, { kind: "event", epoch: "e1", seq: 1 }, { action: "duplicate" }],
  ["an event after a missed one", at, { kind: "event", epoch: "e1", seq: 7 }, {
    action: "hole",
    first: 6,
    last: 6,
  }],
  ["an event far ahead", at, { kind: "event", epoch: "e1", seq: 1005 }, {
    action: "hole",
    first: 6,
    last: 1004,
  }],
  ["an event of another epoch", at, { kind: "event", epoch: "e2", seq: 6 }, {
    action: "foreign",
  }],
  ["an event of another epoch at seq 1", at, { kind: "event", epoch: "e2", seq: 1 }, {
    action: "foreign",
  }],
  ["a checkpoint at the position", at, { kind: "head", epoch: "e1", seq: 5 }, {
    action: "checkpoint",
  }],
  ["a checkpoint ahead", at, { kind: "head", epoch: "e1", seq: 8 }, {
    action: "hole",
    first: 6,
    last: 8,
  }],
  ["a checkpoint one ahead", at, { kind: "head", epoch: "e1", seq: 6 }, {
    action: "hole",
    first: 6,
    last: 6,
  }],
  ["a checkpoint behind", at, { kind: "head", epoch: "e1", seq: 4 }, { action: "rewind" }],
  ["a checkpoint of another epoch", at, { kind: "head", epoch: "e2", seq: 0 }, {
    action: "new-epoch",
  }],
  ["a checkpoint of another epoch ahead", at, { kind: "head", epoch: "e2", seq: 50 }, {
    action: "new-epoch",
  }],
  ["a checkpoint at 0 for a worker at 0", { epoch: "e1", seq: 0 }, {
    kind: "head",
    epoch: "e1",
    seq: 0,
  }, { action: "checkpoint" }],
];

describe("nextStep (the Redis bridge's sequence decision)", () => {
  for (const [name, position, claim, expected] of cases) {
    it(`decides ${expected.action} for ${name}`, () => {
      assert.deepEqual(nextStep(position, claim), expected);
    });
  }

  it("never moves on an event of the same seq twice: replaying a decided run stays in order", () => {
    // Walk a stream of claims as the bridge does (advance on deliver/checkpoint only).
    const claims: Claim[] = [
      { kind: "head", epoch: "e1", seq: 0 },
      { kind: "event", epoch: "e1", seq: 1 },
      { kind: "event", epoch: "e1", seq: 1 },
      { kind: "event", epoch: "x", seq: 2 },
      { kind: "event", epoch: "e1", seq: 2 },
      { kind: "head", epoch: "e1", seq: 2 },
    ];
    let position: Position | undefined;
    const actions: string[] = [];
    for (const claim of claims) {
      const step = nextStep(position, claim);
      actions.push(step.action);
      if (step.action === "deliver" || step.action === "checkpoint") {
        position = { epoch: claim.epoch, seq: claim.seq };
      }
    }
    assert.deepEqual(actions, [
      "checkpoint",
      "deliver",
      "duplicate",
      "foreign",
      "deliver",
      "checkpoint",
    ]);
    assert.deepEqual(position, { epoch: "e1", seq: 2 });
  });
});

/** The partition at seq 100 of epoch `e1`; the channel's last delivered event at 90. */
const part: Position = { epoch: "e1", seq: 100 };
const event = (seq: number, prev: number, epoch = "e1"): ChannelClaim => ({
  kind: "event",
  epoch,
  seq,
  prev,
});
const head = (seq: number, epoch = "e1"): ChannelClaim => ({ kind: "head", epoch, seq, prev: 0 });

/** [the case, the partition's position, the channel's last, the claim, the expected step] */
const channelCases: [string, Position | undefined, number | "start", ChannelClaim, ChannelStep][] =
  [
    ["an event of a partition with no position", undefined, "start", event(7, 3), {
      action: "deliver",
    }],
    ["an event of a partition with no position, whatever its prev", undefined, 5, event(9, 8), {
      action: "deliver",
    }],
    ["an event of another epoch", part, 90, event(101, 90, "e2"), { action: "foreign" }],
    ["an event of another epoch on a fresh channel", part, "start", event(1, 0, "e2"), {
      action: "foreign",
    }],
    ["an event at the channel's last", part, 90, event(90, 80), { action: "duplicate" }],
    ["an event before the channel's last", part, 90, event(42, 0), { action: "duplicate" }],
    ["the first event after the subscription", part, "start", event(101, 95), {
      action: "deliver",
    }],
    ["the first event after the subscription, with no prev", part, "start", event(101, 0), {
      action: "deliver",
    }],
    ["an event whose prev is the channel's last", part, 90, event(101, 90), {
      action: "deliver",
    }],
    ["an event whose prev is before the channel's last", part, 90, event(101, 60), {
      action: "deliver",
    }],
    ["an event behind the partition but after the channel's last", part, 90, event(95, 90), {
      action: "deliver",
    }],
    ["an event whose prev the worker never got", part, 90, event(101, 97), {
      action: "hole",
      first: 91,
      last: 97,
    }],
    ["an event whose prev is one after the channel's last", part, 90, event(101, 91), {
      action: "hole",
      first: 91,
      last: 91,
    }],
    ["an event with no prev (its marker expired)", part, 90, event(101, 0), {
      action: "hole",
      first: 91,
      last: 100,
    }],
    ["an event with no prev right after the channel's last", part, 90, event(91, 0), {
      action: "deliver",
    }],
    ["an event whose prev is not before it", part, 90, event(101, 101), {
      action: "hole",
      first: 91,
      last: 100,
    }],
    ["a checkpoint of a partition with no position", undefined, "start", head(40), {
      action: "audit",
    }],
    ["a checkpoint of another epoch", part, 90, head(100, "e2"), { action: "new-epoch" }],
    ["a checkpoint of another epoch behind", part, 90, head(3, "e2"), { action: "new-epoch" }],
    ["a checkpoint behind the partition", part, 90, head(99), { action: "rewind" }],
    ["a checkpoint at the partition", part, 90, head(100), { action: "audit" }],
    ["a checkpoint ahead of the partition", part, "start", head(250), { action: "audit" }],
  ];

describe("nextChannelStep (the partitioned mode's decision per channel)", () => {
  for (const [name, partition, last, claim, expected] of channelCases) {
    it(`decides ${expected.action} for ${name}`, () => {
      assert.deepEqual(nextChannelStep(partition, last, claim), expected);
    });
  }

  it("finds every missed event of a channel among others, and nothing else", () => {
    // One partition, three channels; the worker is subscribed to `a` and `b` and misses some
    // messages. Walking the decision as the bridge does (a hole heals events of the channel
    // in the range from the full history), each channel gets each of its events once, in order.
    const history: { seq: number; channel: string; prev: number }[] = [];
    const lastOf = new Map<string, number>();
    const names = ["a", "b", "c"];
    let seed = 5;
    for (let seq = 1; seq <= 400; seq++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      const channel = names[seed % 3]!;
      history.push({ seq, channel, prev: lastOf.get(channel) ?? 0 });
      lastOf.set(channel, seq);
    }
    const lost = new Set([3, 4, 5, 50, 51, 52, 53, 54, 200, 300]);
    const partition: Position = { epoch: "e1", seq: 0 };
    const last = new Map<string, number | "start">([["a", "start"], ["b", "start"]]);
    const got = new Map<string, number[]>([["a", []], ["b", []]]);
    for (const message of history) {
      if (lost.has(message.seq) || !last.has(message.channel)) continue;
      const step = nextChannelStep(partition, last.get(message.channel)!, {
        kind: "event",
        epoch: "e1",
        seq: message.seq,
        prev: message.prev,
      });
      if (step.action === "duplicate") continue;
      if (step.action === "hole") {
        for (const healed of history) {
          if (
            healed.seq >= step.first && healed.seq <= step.last &&
            healed.channel === message.channel
          ) {
            got.get(message.channel)!.push(healed.seq);
          }
        }
      } else assert.equal(step.action, "deliver");
      got.get(message.channel)!.push(message.seq);
      last.set(message.channel, message.seq);
      partition.seq = Math.max(partition.seq, message.seq);
    }
    for (const channel of ["a", "b"]) {
      // From the first event that arrived: everything of the channel, once, in order.
      const all = history.filter((m) => m.channel === channel).map((m) => m.seq);
      const first = all.findIndex((seq) => !lost.has(seq));
      assert.deepEqual(got.get(channel), all.slice(first), channel);
    }
  });
});
