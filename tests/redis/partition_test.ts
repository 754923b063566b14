import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_PARTITIONS,
  fnv1a,
  hashTag,
  MAX_PARTITIONS,
  partitionNames,
  partitionOf,
  partitionsProblem,
  partitionTag,
  prefixProblem,
} from "../../src/redis/_partition.ts";

/** A small seeded generator (mulberry32), so that a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Text of random UTF-16 code units (lone surrogates and braces included), up to `max` long. */
function randomText(next: () => number, max: number): string {
  const alphabet = ["{", "}", "a", ":", "0", "é", "\ud83d", "\ude00", "\0", " ", "@"];
  let text = "";
  const length = Math.floor(next() * (max + 1));
  for (let i = 0; i < length; i++) {
    text += next() < 0.6
      ? alphabet[Math.floor(next() * alphabet.length)]!
      : String.fromCharCode(Math.floor(next() * 65_536));
  }
  return text;
}

/** Redis Cluster's key slot: CRC16 (XMODEM) of the key's hash tag (over its UTF-8 bytes). */
function slotOf(key: string): number {
  let crc = 0;
  for (const byte of new TextEncoder().encode(hashTag(key))) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc % 16_384;
}

describe("hashTag (Redis's rule)", () => {
  const cases: [string, string][] = [
    ["", ""],
    ["room", "room"],
    ["user:{42}:inbox", "42"],
    ["{42}", "42"],
    ["{a}{b}", "a"],
    ["a{b}c{d}", "b"],
    ["x{}y", "x{}y"], // an empty tag is no tag
    ["{}{a}", "{}{a}"], // the first `{` decides, even with an empty tag
    ["a{b", "a{b"], // no closing brace
    ["}{a}", "a"], // a `}` before the first `{` does not count
    ["{{a}}", "{a"], // the first `}` after the first `{`
    ["a}b{c}", "c"],
    ["{ }", " "],
  ];
  for (const [channel, tag] of cases) {
    it(`gives \`${tag}\` for \`${channel}\``, () => assert.equal(hashTag(channel), tag));
  }

  it("agrees with the slots Redis gives the design's partition tags", () => {
    // The slots of {flume:p0} … {flume:p15}, as `CLUSTER KEYSLOT` reports them (design §2.1).
    const slots = [3008, 7137, 11138, 15267, 2884, 7013, 11014, 15143, 2760, 6889, 13321, 9256];
    slots.push(5195, 1130, 13453, 9388);
    const tags = Array.from({ length: 16 }, (_, k) => partitionTag("flume:", k, 16));
    assert.deepEqual(tags.map((tag) => slotOf(`${tag}meta`)), slots);
  });
});

describe("fnv1a", () => {
  const vectors: [string, number][] = [
    ["", 0x811c9dc5],
    ["a", 0xe40c292c],
    ["user:42", 0x2f6b7b82],
    ["42", 0x87e38583],
    ["foobar", 0xbf9cf968], // the reference FNV-1a 32-bit test vector
  ];
  for (const [text, hash] of vectors) {
    it(`hashes \`${text}\` to ${hash.toString(16)}`, () => assert.equal(fnv1a(text), hash));
  }

  it("hashes UTF-16 code units, lone surrogates included, to unsigned 32-bit integers", () => {
    const next = random(7);
    for (let i = 0; i < 2_000; i++) {
      const text = randomText(next, 40);
      const hash = fnv1a(text);
      assert.ok(Number.isInteger(hash) && hash >= 0 && hash < 2 ** 32, `${hash} for ${text}`);
      assert.equal(fnv1a(text), hash);
    }
    assert.notEqual(fnv1a("\ud83d"), fnv1a("\ude00"));
  });
});

describe("partitionOf", () => {
  it("puts the channels of one hash tag in one partition", () => {
    const n = DEFAULT_PARTITIONS;
    const p = 0x87e38583 % n;
    assert.equal(partitionOf("user:{42}:inbox", n), p);
    assert.equal(partitionOf("user:{42}:presence", n), p);
    assert.equal(partitionOf("{42}", n), p);
    assert.equal(partitionOf("42", n), p);
    assert.equal(partitionOf("user:42", n), 0x2f6b7b82 % n);
  });

  it("gives broadcasts the last partition, n", () => {
    for (const n of [1, 16, 256]) assert.equal(partitionOf(null, n), n);
  });

  it("spreads 10,000 channels over 16 partitions within 10% of even", () => {
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 10_000; i++) counts[partitionOf(`ch${i}`, 16)]!++;
    assert.ok(Math.min(...counts) >= 562 && Math.max(...counts) <= 688, `${counts}`);
  });

  it("spreads 10,000 channels over 256 partitions and uses every one", () => {
    const counts = new Array<number>(256).fill(0);
    for (let i = 0; i < 10_000; i++) counts[partitionOf(`user:${i}`, 256)]!++;
    assert.ok(Math.min(...counts) > 0, `${Math.min(...counts)}`);
  });

  it("maps any text into 0 to n - 1, the same every time, and never throws", () => {
    const next = random(15);
    for (let i = 0; i < 5_000; i++) {
      const n = 1 + Math.floor(next() * MAX_PARTITIONS);
      const channel = randomText(next, 30);
      const p = partitionOf(channel, n);
      assert.ok(Number.isInteger(p) && p >= 0 && p < n, `${p} of ${n} for ${channel}`);
      assert.equal(partitionOf(channel, n), p);
      assert.equal(partitionOf(channel, n), fnv1a(hashTag(channel)) % n);
    }
  });
});

describe("partitionNames", () => {
  it("names the keys and channels of a partition under its tag", () => {
    const names = partitionNames("flume:", 3, 16);
    assert.equal(names.partition, 3);
    assert.equal(names.tag, "{flume:p3}");
    assert.equal(names.meta, "{flume:p3}meta");
    assert.equal(names.log, "{flume:p3}log");
    assert.equal(names.watermark, "{flume:p3}w");
    assert.equal(names.stream("room"), "{flume:p3}c:room");
    assert.equal(names.marker("room"), "{flume:p3}l:room");
    assert.equal(names.shard("room"), "{flume:p3}e:room");
    assert.equal(names.inbox("w1"), "{flume:p3}h:w1");
  });

  it("names the broadcast partition's with `pb`, its marker being meta", () => {
    const names = partitionNames("flume:", 16, 16);
    assert.equal(names.tag, "{flume:pb}");
    assert.equal(names.stream(null), "{flume:pb}b");
    assert.equal(names.marker(null), "{flume:pb}meta");
    assert.equal(names.shard(null), "{flume:pb}e");
    assert.equal(names.inbox("w1"), "{flume:pb}h:w1");
  });

  it("puts the database on the channels only, before any channel name", () => {
    const names = partitionNames("app:", 0, 4, 3);
    assert.equal(names.meta, "{app:p0}meta");
    assert.equal(names.stream("x"), "{app:p0}c:x");
    assert.equal(names.shard("x"), "{app:p0}e@3:x");
    assert.equal(names.inbox("w"), "{app:p0}h@3:w");
    assert.equal(partitionNames("app:", 4, 4, 3).shard(null), "{app:pb}e@3");
    // A channel named like another database's cannot reach it: db 0's `x@3` is not db 3's `x`.
    assert.notEqual(partitionNames("app:", 0, 4).shard("x@3"), names.shard("x"));
  });

  it("keeps every key and channel in the slot of its partition's tag, whatever the channel", () => {
    const next = random(21);
    for (let i = 0; i < 500; i++) {
      const n = 1 + Math.floor(next() * 32);
      const k = Math.floor(next() * (n + 1));
      const names = partitionNames("flume:", k, n, i % 3);
      const channel = k === n ? null : randomText(next, 12) || "c";
      const slot = slotOf(names.tag);
      const keys = [names.meta, names.log, names.watermark, names.inbox("w")];
      keys.push(names.stream(channel), names.marker(channel), names.shard(channel));
      for (const key of keys) assert.equal(slotOf(key), slot, key);
    }
  });
});

describe("option checks", () => {
  it("takes 1 to 256 partitions and nothing else", () => {
    for (const n of [1, 16, 256]) assert.equal(partitionsProblem(n), undefined);
    for (const n of [0, 257, 1.5, -1, NaN, Infinity, "16", null, undefined]) {
      assert.match(partitionsProblem(n) ?? "", /`partitions` must be an integer from 1 to 256/);
    }
  });

  it("refuses a prefix with a brace", () => {
    assert.equal(prefixProblem("flume:"), undefined);
    assert.equal(prefixProblem(""), undefined);
    for (const prefix of ["{app}:", "a}", "{"]) {
      assert.match(prefixProblem(prefix) ?? "", /must not contain `\{` or `\}`/);
    }
  });
});
