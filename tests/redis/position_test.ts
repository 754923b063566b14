import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MAX_ID_LENGTH } from "../../src/_wire.ts";
import {
  encodeComponent,
  encodePosition,
  EPOCH_LENGTH,
  isEpoch,
  joinComponents,
  MAX_COMPONENT_SEQ,
  newEpoch,
  parsePosition,
  type PartitionPosition,
} from "../../src/redis/_position.ts";
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

const BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz";

function randomEpoch(next: () => number): string {
  return Array.from({ length: EPOCH_LENGTH }, () => BASE36[Math.floor(next() * 36)]).join("");
}

/** Random positions on distinct partitions of `0..n`, seqs of every size. */
function randomPositions(next: () => number, n: number): PartitionPosition[] {
  const positions: PartitionPosition[] = [];
  for (let partition = 0; partition <= n; partition++) {
    if (next() < 0.5) continue;
    const digits = 1 + Math.floor(next() * 15);
    const seq = Math.min(Math.floor(next() * 10 ** digits), MAX_COMPONENT_SEQ);
    positions.push({ partition, epoch: randomEpoch(next), seq });
  }
  return positions;
}

/** Whether `claim` is nowhere past `truth`: each of its partitions is in `truth` at or below. */
function notPast(claim: PartitionPosition[], truth: PartitionPosition[]): boolean {
  return claim.every((c) =>
    truth.some((t) => t.partition === c.partition && t.epoch === c.epoch && c.seq <= t.seq)
  );
}

// The design's example: a client on `user:{42}` (partition 3) and the broadcast partition (16).
const EXAMPLE = "3-k9x2ab-2bq.g-p0q1rs-1c";
const EXAMPLE_POSITIONS: PartitionPosition[] = [
  { partition: 3, epoch: "k9x2ab", seq: parseInt("2bq", 36) },
  { partition: 16, epoch: "p0q1rs", seq: 48 },
];

/** A component on `partition` whose seq has `digits` base-36 digits. */
function component(partition: number, digits: number): string {
  return encodeComponent(partition, "abcdef", 36 ** (digits - 1));
}

/** `count` components on partitions `from`, `from + 1`, …, each with a seq of `digits` digits. */
function wide(from: number, count: number, digits: number): string[] {
  return Array.from({ length: count }, (_, i) => component(from + i, digits));
}

// 13 components (n = 200) of exactly 256 characters: 8 × 20 + 4 × 16 + 20 + 12 dots.
const EXACT = [...wide(36, 8, 10), ...wide(44, 4, 6), component(200, 10)];
// One character more: the last partition but the broadcast one has a longer seq.
const OVER = [...EXACT.slice(0, 11), component(47, 7), component(200, 10)];

describe("encodeComponent", () => {
  it("writes partition and seq in base 36, without leading zeros", () => {
    assert.equal(encodeComponent(3, "k9x2ab", 3014), "3-k9x2ab-2bq");
    assert.equal(encodeComponent(0, "000000", 0), "0-000000-0");
    assert.equal(encodeComponent(256, "zzzzzz", MAX_COMPONENT_SEQ), "74-zzzzzz-zzzzzzzzzz");
  });

  it("refuses what it cannot write with a RangeError", () => {
    const bad: [number, string, number][] = [
      [-1, "abcdef", 1],
      [257, "abcdef", 1],
      [1.5, "abcdef", 1],
      [NaN, "abcdef", 1],
      [1, "abcde", 1],
      [1, "abcdefg", 1],
      [1, "ABCDEF", 1],
      [1, "abc-ef", 1],
      [1, "abcdef", -1],
      [1, "abcdef", 0.5],
      [1, "abcdef", MAX_COMPONENT_SEQ + 1],
      [1, "abcdef", Infinity],
    ];
    for (const [partition, epoch, seq] of bad) {
      assert.throws(() => encodeComponent(partition, epoch, seq), (error: unknown) => {
        assert.ok(error instanceof RangeError);
        assert.match(error.message, /^Cannot encode position: the \w+ is \w+( of range)?, got `/);
        return true;
      });
    }
  });
});

describe("encodePosition and parsePosition", () => {
  it("read and write the design's example", () => {
    assert.deepEqual(parsePosition(EXAMPLE, 16), EXAMPLE_POSITIONS);
    assert.equal(encodePosition(EXAMPLE_POSITIONS, 16), EXAMPLE);
    assert.equal(encodePosition([...EXAMPLE_POSITIONS].reverse(), 16), EXAMPLE);
  });

  it("round-trip random positions of every size, for every n", () => {
    const next = random(1);
    for (let i = 0; i < 3_000; i++) {
      const n = 1 + Math.floor(next() * (i % 10 === 0 ? 256 : 20));
      const positions = randomPositions(next, n);
      const id = encodePosition(positions, n);
      assert.ok(id.length <= MAX_ID_LENGTH, id);
      const parsed = parsePosition(id, n);
      if (positions.length === 0) {
        assert.equal(id, "");
        assert.equal(parsed, undefined);
        continue;
      }
      assert.ok(parsed !== undefined, id);
      // Whatever was left out for the budget, what is in is exactly what was given.
      for (const p of parsed) {
        assert.deepEqual(
          p,
          positions.find((q) => q.partition === p.partition),
        );
      }
      const full = positions.map((p) => encodeComponent(p.partition, p.epoch, p.seq));
      if (full.join(".").length <= MAX_ID_LENGTH) assert.deepEqual(parsed, positions);
      assert.equal(encodePosition(parsed, n), id);
    }
  });

  it("refuses a partition given twice", () => {
    assert.throws(
      () =>
        encodePosition([{ partition: 2, epoch: "aaaaaa", seq: 1 }, {
          partition: 2,
          epoch: "bbbbbb",
          seq: 2,
        }], 16),
      /^RangeError: Cannot encode position: partition 2 is given twice, got `/,
    );
  });
});

describe("joinComponents (the 256-character budget)", () => {
  it("keeps 12 components of the widest kind (20 characters), and 12 of 13", () => {
    const twelve = [...wide(36, 11, 10), component(200, 10)];
    assert.equal(twelve.join(".").length, 12 * 20 + 11);
    assert.equal(joinComponents(twelve, 200), twelve.join("."));
    const thirteen = [...wide(36, 12, 10), component(200, 10)];
    assert.deepEqual(joinComponents(thirteen, 200).split("."), [
      ...thirteen.slice(0, 11),
      thirteen[12],
    ]);
  });

  it("takes exactly 256 characters and leaves one out at 257", () => {
    assert.equal(EXACT.join(".").length, MAX_ID_LENGTH);
    assert.equal(joinComponents(EXACT, 200), EXACT.join("."));
    assert.equal(OVER.join(".").length, MAX_ID_LENGTH + 1);
    assert.deepEqual(joinComponents(OVER, 200).split("."), [...OVER.slice(0, 11), OVER[12]]);
  });

  it("leaves out the highest-numbered partitions but never the broadcast one", () => {
    const next = random(2);
    for (let i = 0; i < 500; i++) {
      const n = 30 + Math.floor(next() * 227);
      const components = randomPositions(next, n).map((p) =>
        encodeComponent(p.partition, p.epoch, Math.max(p.seq, 36 ** 8))
      );
      const id = joinComponents(components, n);
      const kept = id === "" ? [] : id.split(".");
      assert.ok(id.length <= MAX_ID_LENGTH);
      const broadcast = components.at(-1)?.startsWith(`${n.toString(36)}-`) ?? false;
      const others = broadcast ? components.slice(0, -1) : components;
      const keptOthers = broadcast ? kept.slice(0, -1) : kept;
      // The longest prefix of the others that fits, then the broadcast one.
      assert.deepEqual(keptOthers, others.slice(0, keptOthers.length));
      if (broadcast) assert.equal(kept.at(-1), components.at(-1));
      if (keptOthers.length < others.length) {
        const oneMore = others.slice(0, keptOthers.length + 1);
        if (broadcast) oneMore.push(components.at(-1)!);
        assert.ok(oneMore.join(".").length > MAX_ID_LENGTH);
      }
    }
  });

  it("leaves out the last components when the broadcast partition is not among them", () => {
    const components = wide(36, 13, 10);
    assert.deepEqual(joinComponents(components, 200).split("."), components.slice(0, 12));
  });

  it("joins nothing into an empty id", () => assert.equal(joinComponents([], 16), ""));
});

describe("parsePosition on hostile input", () => {
  const malformed: [string, unknown][] = [
    ["an empty id", ""],
    ["undefined", undefined],
    ["null", null],
    ["a number", 42],
    ["an object", { toString: () => EXAMPLE }],
    ["a single-order id", "k9x2ab-123"],
    ["a single-order id with a long epoch", "0123456789abcdef-1"],
    ["a component with too few fields", "3-k9x2ab"],
    ["a component with too many fields", "3-k9x2ab-1-2"],
    ["a short epoch", "3-k9x2a-1"],
    ["a long epoch", "3-k9x2abc-1"],
    ["an uppercase epoch", "3-K9X2AB-1"],
    ["an uppercase seq", "3-k9x2ab-Z"],
    ["a leading zero in the partition", "03-k9x2ab-1"],
    ["a leading zero in the seq", "3-k9x2ab-01"],
    ["a seq of 11 digits", "3-k9x2ab-10000000000"],
    ["a partition of 3 digits", "100-k9x2ab-1"],
    ["an empty partition", "-k9x2ab-1"],
    ["an empty seq", "3-k9x2ab-"],
    ["a negative seq", "3-k9x2ab--1"],
    ["a partition above n", "h-k9x2ab-1"],
    ["components out of order", "g-p0q1rs-1c.3-k9x2ab-2bq"],
    ["a partition twice", "3-k9x2ab-2bq.3-k9x2ab-2bq"],
    ["a trailing dot", `${EXAMPLE}.`],
    ["a leading dot", `.${EXAMPLE}`],
    ["two dots", "3-k9x2ab-2bq..g-p0q1rs-1c"],
    ["a space", "3-k9x2ab-2bq g-p0q1rs-1c"],
    ["a comma", "3-k9x2ab-2bq,g-p0q1rs-1c"],
    ["a line break", `${EXAMPLE}\n`],
    ["a NUL", `3-k9x2ab-2bq\0`],
    ["non-ASCII digits", "3-k9x2ab-٣"],
    ["an id of 257 characters", OVER.join(".")],
    ["a megabyte", "3-k9x2ab-1.".repeat(100_000)],
  ];
  for (const [name, id] of malformed) {
    it(`gives unknown for ${name}`, () => assert.equal(parsePosition(id, 16), undefined));
  }

  it("takes an id of exactly 256 characters", () => {
    assert.equal(parsePosition(EXACT.join("."), 200)?.length, 13);
    assert.equal(parsePosition(OVER.join("."), 200), undefined);
  });

  it("gives every prefix of an id as unknown or as a position nowhere past it", () => {
    const next = random(3);
    for (let i = 0; i < 200; i++) {
      const positions = randomPositions(next, 16);
      const id = encodePosition(positions, 16);
      for (const [head, tail] of everySplit(id)) {
        const claim = parsePosition(head, 16);
        if (claim !== undefined) assert.ok(notPast(claim, positions), `${head} of ${id}`);
        // A component cut in two by a separator is never read as two positions.
        if (head !== "" && tail !== "" && !head.endsWith(".") && !tail.startsWith(".")) {
          const split = parsePosition(`${head}.${tail}`, 16);
          assert.ok(split === undefined || notPast(split, positions), `${head}.${tail}`);
        }
      }
    }
  });

  it("never throws on random text, and takes only canonical ids it gives back unchanged", () => {
    const next = random(4);
    const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzAZ.-. -\u00e9\ud83d\0";
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const n = 1 + Math.floor(next() * 256);
      let id = "";
      // Mostly near-valid: mutate a valid id; else pure noise.
      if (next() < 0.7) {
        id = encodePosition(randomPositions(next, n), n);
        const edits = 1 + Math.floor(next() * 3);
        for (let e = 0; e < edits && id.length > 0; e++) {
          const at = Math.floor(next() * id.length);
          const char = alphabet[Math.floor(next() * alphabet.length)]!;
          const kind = Math.floor(next() * 3);
          id = id.slice(0, at) + (kind === 2 ? "" : char) + id.slice(kind === 1 ? at : at + 1);
        }
      } else {
        const length = Math.floor(next() * 300);
        for (let c = 0; c < length; c++) id += alphabet[Math.floor(next() * alphabet.length)];
      }
      const parsed: PartitionPosition[] | undefined = parsePosition(id, n);
      if (parsed === undefined) continue;
      accepted++;
      assert.ok(parsed.length > 0 && id.length <= MAX_ID_LENGTH, id);
      for (let p = 0; p < parsed.length; p++) {
        const { partition, epoch, seq }: PartitionPosition = parsed[p]!;
        assert.ok(Number.isInteger(partition) && partition >= 0 && partition <= n, id);
        assert.ok(p === 0 || parsed[p - 1]!.partition < partition, id);
        assert.ok(isEpoch(epoch), id);
        assert.ok(Number.isSafeInteger(seq) && seq >= 0 && seq <= MAX_COMPONENT_SEQ, id);
      }
      assert.equal(encodePosition(parsed, n), id);
    }
    assert.ok(accepted > 1_000, `only ${accepted} ids were valid: the fuzzing is too blunt`);
  });
});

describe("epochs", () => {
  it("makes 6-character base-36 epochs, and isEpoch takes those only", () => {
    const made = new Set<string>();
    for (let i = 0; i < 1_000; i++) {
      const epoch = newEpoch();
      assert.match(epoch, /^[0-9a-z]{6}$/);
      assert.ok(isEpoch(epoch));
      made.add(epoch);
    }
    assert.ok(made.size > 990, `${made.size}`);
    for (const bad of ["", "abcde", "abcdefg", "ABCDEF", "abc de", 123456, null, undefined]) {
      assert.equal(isEpoch(bad), false, String(bad));
    }
  });
});
