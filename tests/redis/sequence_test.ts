import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { type Claim, nextStep, type Position, type Step } from "../../src/redis/_sequence.ts";

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
