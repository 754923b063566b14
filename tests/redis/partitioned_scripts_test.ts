/**
 * The Lua scripts of the partitioned mode (`src/redis/_partitioned_scripts.ts`), run directly:
 * on one real `redis-server` (prev from the marker, the log's field `c`, the `upTo` bound, the
 * partition count refused, the lineage rule's single-server branch), and on a real Redis Cluster
 * (3 masters, 3 replicas) for its cluster branches: a slot moved by `MIGRATE` (`moveSlot`, a
 * `redis-cli --cluster reshard`) keeps a partition's epoch, a promoted replica (`killMaster`)
 * starts a new one. The single-order scripts share the rule (`LINEAGE`), checked there too.
 * @module
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "redis";
import { type PartitionNames, partitionNames, partitionOf } from "../../src/redis/_partition.ts";
import { decodePartitionedMessage, encodePayload } from "../../src/redis/_message.ts";
import {
  P_CHECK_SCRIPT,
  P_HEAD_SCRIPT,
  P_HEAL_SCRIPT,
  P_PUBLISH_SCRIPT,
  P_REPLAY_SCRIPT,
} from "../../src/redis/_partitioned_scripts.ts";
import { HEAD_SCRIPT, PUBLISH_SCRIPT } from "../../src/redis/_scripts.ts";
import { waitFor } from "../_helpers.ts";
import { type RedisServer, startRedis } from "./_redis_server.ts";
import { type RedisCluster, type Reply, slotOf, startCluster } from "./_redis_cluster.ts";

/** Partitions of channels in these tests: partition 16 is the broadcast one. */
const N = 16;
const TTL = 60_000;

let redis: RedisServer;
let client: ReturnType<typeof createClient>;
before(async () => {
  redis = await startRedis();
  client = createClient({ url: redis.url });
  client.on("error", () => {});
  await client.connect();
});
after(async () => {
  client?.destroy();
  await redis?.stop();
});

let prefixes = 0;
/** A fresh prefix (no braces: the bridge puts the tags around it). */
function freshPrefix(): string {
  return `ps${++prefixes}${Math.random().toString(36).slice(2, 6)}:`;
}

/** Runs a script on the single server; an error reply rejects. */
function evalScript(script: string, keys: string[], args: string[]): Promise<unknown> {
  return client.sendCommand(["EVAL", script, String(keys.length), ...keys, ...args]);
}

/** A payload as the bridge writes it: the bridge makes the id, no caller's id. */
function payload(channel: string | null, data: string): string {
  return encodePayload(channel, true, `data: ${data}\n\n`);
}

interface Publish {
  names: PartitionNames;
  channel: string | null;
  data: string;
  history?: number;
  healWindow?: number;
  epoch?: string;
  n?: number;
  cluster?: boolean;
}

/** KEYS and ARGV of P_PUBLISH for one event. */
function publishCall({ names, channel, data, ...o }: Publish): [string[], string[]] {
  return [
    [
      names.meta,
      names.shard(channel),
      names.stream(channel),
      names.marker(channel),
      names.watermark,
      names.log,
    ],
    [
      o.epoch ?? "aaaaaa",
      String(o.n ?? N),
      o.cluster ? "S" : "",
      String(names.partition),
      payload(channel, data),
      channel ?? "",
      String(o.history ?? 0),
      String(TTL),
      String(o.healWindow ?? 100),
    ],
  ];
}

function publish(o: Publish): Promise<unknown> {
  return evalScript(P_PUBLISH_SCRIPT, ...publishCall(o));
}

/** KEYS and ARGV of P_REPLAY. */
function replayCall(
  names: PartitionNames,
  channels: (string | null)[],
  position: [string, number] | undefined,
  upTo: number,
  options: { epoch?: string; n?: number; cluster?: boolean } = {},
): [string[], string[]] {
  return [
    [names.meta, names.watermark, ...channels.flatMap((c) => [names.stream(c), names.marker(c)])],
    [
      options.epoch ?? "aaaaaa",
      String(options.n ?? N),
      options.cluster ? "S" : "",
      position?.[0] ?? "",
      position === undefined ? "" : String(position[1]),
      String(upTo),
      String(TTL),
    ],
  ];
}

/** KEYS and ARGV of P_HEAD. */
function headCall(
  names: PartitionNames,
  worker: string,
  markers: string[],
  options: { epoch?: string; n?: number; cluster?: boolean } = {},
): [string[], string[]] {
  return [
    [names.meta, names.inbox(worker), ...markers.map((c) => names.marker(c))],
    [
      options.epoch ?? "aaaaaa",
      String(options.n ?? N),
      options.cluster ? "S" : "",
      String(names.partition),
    ],
  ];
}

/** Two channels of one partition (one hash tag), and that partition's names. */
function sameTag(prefix: string, tag: string): { a: string; b: string; names: PartitionNames } {
  const a = `user:{${tag}}:a`;
  const b = `user:{${tag}}:b`;
  const k = partitionOf(a, N);
  assert.equal(partitionOf(b, N), k);
  return { a, b, names: partitionNames(prefix, k, N) };
}

/** The entries of a stream (none when it does not exist). */
async function xrange(key: string, from: string, to: string) {
  return (await client.xRange(key, from, to)) ?? [];
}

/** Collects the messages of some pub/sub channels of the single server. */
async function listen(channels: string[]): Promise<{ got: Map<string, string[]>; close(): void }> {
  const subscriber = client.duplicate();
  subscriber.on("error", () => {});
  await subscriber.connect();
  const got = new Map<string, string[]>(channels.map((c) => [c, []]));
  await subscriber.subscribe(channels, (message, channel) => got.get(channel)!.push(message));
  return { got, close: () => subscriber.destroy() };
}

describe("the partitioned scripts on one redis-server", () => {
  it("P_PUBLISH numbers a partition's events, gives each its channel's previous seq from the marker, and publishes f2 on the channel's own channel", async () => {
    const prefix = freshPrefix();
    const { a, b, names } = sameTag(prefix, "7");
    const k = names.partition;
    const feed = await listen([names.shard(a), names.shard(b)]);
    try {
      assert.deepEqual(await publish({ names, channel: a, data: "a1" }), ["aaaaaa", "1", "0"]);
      assert.deepEqual(await publish({ names, channel: b, data: "b1", epoch: "bbbbbb" }), [
        "aaaaaa",
        "2",
        "0",
      ]);
      assert.deepEqual(await publish({ names, channel: a, data: "a2", history: 10 }), [
        "aaaaaa",
        "3",
        "1",
      ]);
      assert.deepEqual(await publish({ names, channel: b, data: "b2" }), ["aaaaaa", "4", "2"]);
      await waitFor(() => feed.got.get(names.shard(b))!.length === 2, 3_000, "4 messages");
      assert.deepEqual(feed.got.get(names.shard(a)), [
        `f2 ${k} aaaaaa 1 0 ${payload(a, "a1")}`,
        `f2 ${k} aaaaaa 3 1 ${payload(a, "a2")}`,
      ]);
      assert.deepEqual(feed.got.get(names.shard(b)), [
        `f2 ${k} aaaaaa 2 0 ${payload(b, "b1")}`,
        `f2 ${k} aaaaaa 4 2 ${payload(b, "b2")}`,
      ]);
      // What the bridge makes of them.
      const decoded = decodePartitionedMessage(feed.got.get(names.shard(a))![1], N);
      assert.ok(typeof decoded === "object" && decoded.kind === "event");
      assert.deepEqual(
        [decoded.partition, decoded.epoch, decoded.prev, decoded.event.seq, decoded.event.channel],
        [k, "aaaaaa", 1, 3, a],
      );
      // The marker: the channel's last event, living four times the ttl.
      assert.equal(await client.get(names.marker(a)), "aaaaaa 3");
      const left = await client.pTTL(names.marker(a));
      assert.ok(left > 3 * TTL && left <= 4 * TTL, `marker life ${left}`);
      assert.equal(await client.hGet(names.meta, "n"), String(N));
      // A marker gone (expired): prev 0, "unknown".
      await client.del(names.marker(a));
      assert.deepEqual(await publish({ names, channel: a, data: "a3" }), ["aaaaaa", "5", "0"]);
    } finally {
      feed.close();
    }
  });

  it("P_PUBLISH gives a broadcast the previous seq of the broadcast partition", async () => {
    const names = partitionNames(freshPrefix(), N, N);
    const feed = await listen([names.shard(null)]);
    try {
      assert.deepEqual(await publish({ names, channel: null, data: "x", history: 5 }), [
        "aaaaaa",
        "1",
        "0",
      ]);
      assert.deepEqual(await publish({ names, channel: null, data: "y" }), ["aaaaaa", "2", "1"]);
      await waitFor(() => feed.got.get(names.shard(null))!.length === 2, 3_000, "2 messages");
      assert.deepEqual(feed.got.get(names.shard(null)), [
        `f2 ${N} aaaaaa 1 0 ${payload(null, "x")}`,
        `f2 ${N} aaaaaa 2 1 ${payload(null, "y")}`,
      ]);
      // Its history marker is meta's lb, as in the single-order mode.
      assert.equal(await client.hGet(names.meta, "lb"), "aaaaaa 1");
      assert.equal(await client.exists(names.marker("x")), 0);
    } finally {
      feed.close();
    }
  });

  it("P_PUBLISH stores each entry with its channel's previous stored seq, from the stream or else the old marker", async () => {
    const prefix = freshPrefix();
    const { a, b, names } = sameTag(prefix, "s");
    const entries = async () =>
      (await xrange(names.stream(a), "-", "+")).map((e) => [e.id, e.message.p]);
    await publish({ names, channel: a, data: "a1", history: 10 });
    await publish({ names, channel: b, data: "b1", history: 10 });
    await publish({ names, channel: a, data: "a2", history: 10 });
    assert.deepEqual(await entries(), [["1-0", "0"], ["3-0", "1"]]);
    // An event kept out of history: the message names it as prev, the stream does not.
    assert.deepEqual(await publish({ names, channel: a, data: "a3" }), ["aaaaaa", "4", "3"]);
    assert.deepEqual(await publish({ names, channel: a, data: "a4", history: 10 }), [
      "aaaaaa",
      "5",
      "4",
    ]);
    assert.deepEqual((await entries()).at(-1), ["5-0", "3"]);
    // The stream gone (expired, evicted): the marker still says what came before.
    await client.del(names.stream(a));
    assert.deepEqual(await publish({ names, channel: a, data: "a5", history: 10 }), [
      "aaaaaa",
      "6",
      "5",
    ]);
    assert.deepEqual(await entries(), [["6-0", "5"]]);
    // A stream of an earlier epoch is dropped (its events are no one's history).
    await client.hDel(names.meta, "epoch");
    assert.deepEqual(
      await publish({ names, channel: a, data: "a6", history: 10, epoch: "cccccc" }),
      ["cccccc", "7", "0"],
    );
    const [entry] = await xrange(names.stream(a), "-", "+");
    assert.deepEqual([entry!.id, entry!.message.e], ["7-0", "cccccc"]);
    assert.equal(await client.xLen(names.stream(a)), 1);
  });

  it("P_PUBLISH writes the channel into the heal log, and P_HEAL returns only the asked channels' entries of the epoch, with the lowest seq the log holds", async () => {
    const prefix = freshPrefix();
    const { a, b, names } = sameTag(prefix, "h");
    const sent: [string, string][] = [];
    for (const [i, c] of [a, b, a, b, a].entries()) {
      await publish({ names, channel: c, data: `e${i + 1}` });
      sent.push([String(i + 1), payload(c, `e${i + 1}`)]);
    }
    const [first] = await xrange(names.log, "-", "+");
    assert.deepEqual(first!.message, { e: "aaaaaa", c: a, m: sent[0]![1] });
    const heal = (first: number, last: number, channels: string[], epoch = "aaaaaa") =>
      evalScript(P_HEAL_SCRIPT, [names.meta, names.log], [
        epoch,
        String(first),
        String(last),
        ...channels,
      ]);
    const of = (...seqs: number[]) => seqs.flatMap((s) => sent[s - 1]!);
    assert.deepEqual(await heal(1, 5, [a]), ["aaaaaa", "5", of(1, 3, 5), 1]);
    assert.deepEqual(await heal(2, 4, [a]), ["aaaaaa", "5", of(3), 1]);
    assert.deepEqual(await heal(1, 5, [b, a]), ["aaaaaa", "5", of(1, 2, 3, 4, 5), 1]);
    assert.deepEqual(await heal(1, 5, []), ["aaaaaa", "5", of(1, 2, 3, 4, 5), 1]);
    assert.deepEqual(await heal(1, 5, ["user:{h}:c"]), ["aaaaaa", "5", [], 1]);
    // Another epoch: nothing, whatever the log holds.
    assert.deepEqual(await heal(1, 5, [a], "zzzzzz"), ["aaaaaa", "5", [], 6]);
    // Trimmed: what is left, and where the log starts (the caller's range is not covered).
    await client.xTrim(names.log, "MAXLEN", 2);
    assert.deepEqual(await heal(1, 5, [a]), ["aaaaaa", "5", of(5), 4]);
    await client.del(names.log);
    assert.deepEqual(await heal(1, 5, [a]), ["aaaaaa", "5", [], 6]);
    // healWindow 0: no log at all.
    await publish({ names, channel: a, data: "e6", healWindow: 0 });
    assert.equal(await client.exists(names.log), 0);
    // A log entry left from an earlier epoch goes with the first event of the new one.
    await publish({ names, channel: a, data: "e7" });
    await client.hDel(names.meta, "epoch");
    await publish({ names, channel: b, data: "e8", epoch: "dddddd" });
    assert.deepEqual((await xrange(names.log, "-", "+")).map((e) => e.id), ["8-0"]);
  });

  it("P_REPLAY returns what a position missed on a partition's channels up to upTo, and the gaps", async () => {
    const prefix = freshPrefix();
    const { a, b, names } = sameTag(prefix, "r");
    const sent = new Map<number, string>();
    for (const [i, c] of [a, b, a, b, a].entries()) {
      await publish({ names, channel: c, data: `e${i + 1}`, history: 10 });
      sent.set(i + 1, payload(c, `e${i + 1}`));
    }
    const replay = (position: [string, number] | undefined, upTo: number, channels = [a, b]) =>
      evalScript(P_REPLAY_SCRIPT, ...replayCall(names, channels, position, upTo));
    const of = (...seqs: number[]) => seqs.flatMap((s) => [String(s), sent.get(s)!]);
    // Channel by channel, each in seq order, none past upTo.
    assert.deepEqual(await replay(["aaaaaa", 1], 4), ["aaaaaa", 5, 1, [], of(3, 2, 4)]);
    assert.deepEqual(await replay(["aaaaaa", 1], 5), ["aaaaaa", 5, 1, [], of(3, 5, 2, 4)]);
    assert.deepEqual(await replay(["aaaaaa", 0], 2, [b]), ["aaaaaa", 5, 1, [], of(2)]);
    assert.deepEqual(await replay(["aaaaaa", 3], 3), ["aaaaaa", 5, 1, [], []]);
    assert.deepEqual(await replay(["aaaaaa", 4], 2), ["aaaaaa", 5, 1, [], []]);
    // Unknown positions: another epoch, past the head, none.
    assert.deepEqual(await replay(["zzzzzz", 1], 5), ["aaaaaa", 5, 0]);
    assert.deepEqual(await replay(["aaaaaa", 6], 6), ["aaaaaa", 5, 0]);
    assert.deepEqual(await replay(undefined, 5), ["aaaaaa", 5, 0]);
    // Trimmed history: a gap on that channel only (1-based, in KEYS order).
    await publish({ names, channel: a, data: "e6", history: 1 });
    sent.set(6, payload(a, "e6"));
    assert.deepEqual(await replay(["aaaaaa", 1], 6), ["aaaaaa", 6, 1, [1], of(6, 2, 4)]);
    assert.deepEqual(await replay(["aaaaaa", 5], 6), ["aaaaaa", 6, 1, [], of(6)]);
    // An event never stored (history 0) after the position: its marker shows it, a gap.
    const c = "user:{r}:c";
    await publish({ names, channel: c, data: "e7" });
    assert.deepEqual(await replay(["aaaaaa", 6], 7, [c]), ["aaaaaa", 7, 1, [1], []]);
    assert.deepEqual(await replay(["aaaaaa", 7], 7, [c]), ["aaaaaa", 7, 1, [], []]);
    // The streams read live ttl ms more, their markers four times that.
    await client.pExpire(names.stream(b), 1_000);
    await client.pExpire(names.marker(b), 1_000);
    await replay(["aaaaaa", 6], 7, [b]);
    assert.ok((await client.pTTL(names.stream(b))) > TTL - 5_000);
    assert.ok((await client.pTTL(names.marker(b))) > 4 * TTL - 5_000);
  });

  it("P_REPLAY reads the broadcast partition's stream with meta as its marker", async () => {
    const names = partitionNames(freshPrefix(), N, N);
    await publish({ names, channel: null, data: "x", history: 5 });
    await publish({ names, channel: null, data: "y", history: 5 });
    assert.deepEqual(
      await evalScript(P_REPLAY_SCRIPT, ...replayCall(names, [null], ["aaaaaa", 1], 2)),
      ["aaaaaa", 2, 1, [], ["2", payload(null, "y")]],
    );
    // A fresh partition: the replay makes its epoch (and knows no position in it).
    const fresh = partitionNames(freshPrefix(), N, N);
    assert.deepEqual(
      await evalScript(
        P_REPLAY_SCRIPT,
        ...replayCall(fresh, [null], ["aaaaaa", 0], 0, {
          epoch: "eeeeee",
        }),
      ),
      ["eeeeee", 0, 0],
    );
  });

  it("P_HEAD sends a checkpoint to the worker's inbox and returns the markers read with the head", async () => {
    const prefix = freshPrefix();
    const { a, b, names } = sameTag(prefix, "w");
    const feed = await listen([names.inbox("w1")]);
    try {
      // A fresh partition: its epoch, `n`, and the server's run id (no node: no cluster).
      assert.deepEqual(await evalScript(P_HEAD_SCRIPT, ...headCall(names, "w1", [])), [
        "aaaaaa",
        "0",
      ]);
      const meta = await client.hGetAll(names.meta);
      assert.deepEqual(Object.keys(meta).sort(), ["epoch", "n", "run"]);
      assert.match(meta.run!, /^[0-9a-f]{40}$/);
      await publish({ names, channel: a, data: "a1" });
      await publish({ names, channel: b, data: "b1" });
      await publish({ names, channel: a, data: "a2" });
      assert.deepEqual(
        await evalScript(P_HEAD_SCRIPT, ...headCall(names, "w1", [a, b, "user:{w}:c"])),
        ["aaaaaa", "3", "aaaaaa 3", "aaaaaa 2", ""],
      );
      await waitFor(() => feed.got.get(names.inbox("w1"))!.length === 2, 3_000, "2 checkpoints");
      const k = names.partition;
      assert.deepEqual(feed.got.get(names.inbox("w1")), [
        `f2 ${k} aaaaaa 0 head`,
        `f2 ${k} aaaaaa 3 head`,
      ]);
      assert.deepEqual(decodePartitionedMessage(feed.got.get(names.inbox("w1"))![1], N), {
        kind: "head",
        partition: k,
        epoch: "aaaaaa",
        seq: 3,
      });
    } finally {
      feed.close();
    }
  });

  it("every script that may start an epoch refuses a partition count other than the one in Redis, and changes nothing", async () => {
    const { a, names } = sameTag(freshPrefix(), "n");
    await publish({ names, channel: a, data: "a1", history: 10 });
    const before = await client.hGetAll(names.meta);
    assert.equal(before.n, "16");
    const refused = { message: "PARTITIONS 16" };
    await assert.rejects(publish({ names, channel: a, data: "a2", n: 8, history: 10 }), refused);
    await assert.rejects(
      evalScript(P_HEAD_SCRIPT, ...headCall(names, "w1", [a], { n: 8 })),
      refused,
    );
    await assert.rejects(
      evalScript(P_REPLAY_SCRIPT, ...replayCall(names, [a], ["aaaaaa", 0], 1, { n: 8 })),
      refused,
    );
    assert.deepEqual(await client.hGetAll(names.meta), before);
    assert.equal(await client.xLen(names.stream(a)), 1);
    assert.equal(await client.get(names.marker(a)), "aaaaaa 1");
    // The same count goes on.
    assert.deepEqual(await publish({ names, channel: a, data: "a2" }), ["aaaaaa", "2", "1"]);
  });

  it("P_CHECK tells whether the log (or else the stream) holds a claimed event", async () => {
    const { a, names } = sameTag(freshPrefix(), "c");
    await publish({ names, channel: a, data: "a1", history: 10 });
    const check = (epoch: string, seq: number, text: string) =>
      evalScript(P_CHECK_SCRIPT, [names.meta, names.stream(a), names.log], [
        epoch,
        String(seq),
        text,
      ]);
    assert.deepEqual(await check("aaaaaa", 1, payload(a, "a1")), ["aaaaaa", "1", 1]);
    assert.deepEqual(await check("aaaaaa", 1, payload(a, "forged")), ["aaaaaa", "1", -1]);
    assert.deepEqual(await check("zzzzzz", 1, payload(a, "a1")), ["aaaaaa", "1", -1]);
    assert.deepEqual(await check("aaaaaa", 2, payload(a, "a1")), ["aaaaaa", "1", 0]);
    assert.deepEqual(await check("aaaaaa", 1, ""), ["aaaaaa", "1", 0]);
    await client.del(names.log);
    assert.deepEqual(await check("aaaaaa", 1, payload(a, "a1")), ["aaaaaa", "1", 1]);
    assert.deepEqual(await check("aaaaaa", 1, payload(a, "forged")), ["aaaaaa", "1", -1]);
  });

  it("the lineage rule on a single server: a HEAD script starts a new epoch when the run id changed, a publish leaves that check to it", async () => {
    const { a, names } = sameTag(freshPrefix(), "l");
    await evalScript(P_HEAD_SCRIPT, ...headCall(names, "w1", []));
    const run = await client.hGet(names.meta, "run");
    // What a restart with persistence looks like: the data is there, from another process.
    await client.hSet(names.meta, "run", "0123abcd");
    assert.deepEqual(await publish({ names, channel: a, data: "a1", epoch: "bbbbbb" }), [
      "aaaaaa",
      "1",
      "0",
    ]);
    assert.deepEqual(
      await evalScript(P_HEAD_SCRIPT, ...headCall(names, "w1", [], { epoch: "cccccc" })),
      ["cccccc", "1"],
    );
    assert.equal(await client.hGet(names.meta, "run"), run);
    assert.equal(await client.hExists(names.meta, "node"), 0);
    // The same process again: the epoch stays.
    assert.deepEqual(
      await evalScript(P_HEAD_SCRIPT, ...headCall(names, "w1", [], { epoch: "dddddd" })),
      ["cccccc", "1"],
    );
    assert.deepEqual(await publish({ names, channel: a, data: "a2", epoch: "dddddd" }), [
      "cccccc",
      "2",
      "0",
    ]);
  });

  it("the lineage rule on a single server, in the single-order scripts", async () => {
    const prefix = freshPrefix();
    const meta = `${prefix}meta`;
    const head = (epoch: string) => evalScript(HEAD_SCRIPT, [meta, `${prefix}events`], [epoch, ""]);
    const publishOne = (epoch: string) =>
      evalScript(PUBLISH_SCRIPT, [
        meta,
        `${prefix}events`,
        `${prefix}c:x`,
        `${prefix}l:x`,
        `${prefix}w`,
        `${prefix}log`,
        `${prefix}i:x`,
      ], [epoch, payload("x", "x"), "10", "", String(TTL), "100", ""]);
    assert.deepEqual(await head("e1"), ["e1", "0"]);
    assert.deepEqual(await publishOne("e2"), ["e1", "1"]);
    await client.hSet(meta, "run", "0123abcd");
    assert.deepEqual(await publishOne("e2"), ["e1", "2"]);
    assert.deepEqual(await head("e3"), ["e3", "2"]);
    assert.deepEqual(await head("e4"), ["e3", "2"]);
    assert.equal(await client.hExists(meta, "node"), 0);
  });
});

describe("the partitioned scripts on a Redis Cluster", () => {
  let cluster: RedisCluster;
  before(async () => {
    cluster = await startCluster({ masters: 3, replicas: 1 });
  }, { timeout: 30_000 });
  after(async () => {
    await cluster?.stop();
  });

  /** Runs a script on one node (no redirection); an error reply throws. */
  async function evalOn(
    port: number,
    script: string,
    [keys, args]: [string[], string[]],
  ): Promise<Reply> {
    const reply = await cluster.command(port, [
      "EVAL",
      script,
      String(keys.length),
      ...keys,
      ...args,
    ]);
    if (reply instanceof Error) throw reply;
    return reply;
  }
  async function myId(port: number): Promise<string> {
    return String(await cluster.command(port, ["CLUSTER", "MYID"]));
  }
  async function hget(key: string, field: string): Promise<Reply> {
    return await cluster.command(await cluster.masterOf(key), ["HGET", key, field]);
  }
  /** Partition names of a fresh prefix whose partition `k`'s slot is on `port`. */
  async function partitionOn(port: number, k = 3): Promise<PartitionNames> {
    for (let i = 0; i < 1_000; i++) {
      const names = partitionNames(freshPrefix(), k, N);
      if (await cluster.masterOf(slotOf(names.tag)) === port) return names;
    }
    throw new Error(`No prefix on ${port}`);
  }
  const channelOf = (names: PartitionNames) => {
    for (let i = 0;; i++) if (partitionOf(`c${i}`, N) === names.partition) return `c${i}`;
  };

  it(
    "follows the lineage rule: a moved slot keeps a partition's epoch, a reshard too, a promoted replica starts a new one",
    {
      timeout: 60_000,
    },
    async () => {
      const [m1, m2, m3] = cluster.nodes.filter((n) => n.alive && n.role === "master").map((n) =>
        n.port
      );
      assert.ok(m1 && m2 && m3);
      const names = await partitionOn(m1);
      const c = channelOf(names);
      const cluster1 = { names, channel: c, data: "m", cluster: true, history: 10 };
      // A single-order prefix on the same master, to check its scripts follow the same rule.
      let single = "";
      for (let i = 0; !single; i++) {
        const p = `{so${i}${Math.random().toString(36).slice(2, 5)}}:`;
        if (await cluster.masterOf(p) === m1) single = p;
      }
      const singleCall = (epoch: string): [string[], string[]] => [
        [
          `${single}meta`,
          `${single}events`,
          `${single}c:x`,
          `${single}l:x`,
          `${single}w`,
          `${single}log`,
          `${single}i:x`,
        ],
        [epoch, payload("x", "x"), "10", "", String(TTL), "100", "S"],
      ];

      // On the first master: SPUBLISH to the channel's shard channel, node and run recorded.
      const subscriber = createClient({ url: `redis://127.0.0.1:${m1}` });
      subscriber.on("error", () => {});
      await subscriber.connect();
      const got: string[] = [];
      await subscriber.sSubscribe(names.shard(c), (message) => got.push(message));
      try {
        assert.deepEqual(await evalOn(m1, P_PUBLISH_SCRIPT, publishCall(cluster1)), [
          "aaaaaa",
          "1",
          "0",
        ]);
        assert.deepEqual(await evalOn(m1, P_PUBLISH_SCRIPT, publishCall(cluster1)), [
          "aaaaaa",
          "2",
          "1",
        ]);
        await waitFor(() => got.length === 2, 3_000, "2 shard messages");
        assert.equal(got[1], `f2 ${names.partition} aaaaaa 2 1 ${payload(c, cluster1.data)}`);
      } finally {
        subscriber.destroy();
      }
      assert.equal(await hget(names.meta, "node"), await myId(m1));
      assert.match(String(await hget(names.meta, "run")), /^[0-9a-f]{40}$/);
      assert.deepEqual(await evalOn(m1, PUBLISH_SCRIPT, singleCall("s1")), ["s1", "1"]);
      assert.equal(await hget(`${single}meta`, "node"), await myId(m1));

      // MIGRATE moves the keys whole to a master that was never a replica: same epoch.
      await cluster.moveSlot(slotOf(names.tag), m2);
      await cluster.moveSlot(slotOf(single), m2);
      assert.deepEqual(
        await evalOn(m2, P_PUBLISH_SCRIPT, publishCall({ ...cluster1, epoch: "bbbbbb" })),
        ["aaaaaa", "3", "2"],
      );
      assert.equal(await hget(names.meta, "node"), await myId(m2));
      assert.deepEqual(
        await evalOn(
          m2,
          P_HEAD_SCRIPT,
          headCall(names, "w1", [c], { epoch: "bbbbbb", cluster: true }),
        ),
        ["aaaaaa", "3", "aaaaaa 3"],
      );
      assert.deepEqual(await evalOn(m2, PUBLISH_SCRIPT, singleCall("s2")), ["s1", "2"]);
      assert.deepEqual(
        await evalOn(m2, HEAD_SCRIPT, [[`${single}meta`, `${single}events`], ["s2", "S"]]),
        ["s1", "2"],
      );

      // A reshard (redis-cli) of many slots: every partition whose slot moved keeps its epoch.
      const spread: PartitionNames[] = [];
      for (let i = 0; spread.length < 200; i++) {
        const p = partitionNames(freshPrefix(), i % N, N);
        if (await cluster.masterOf(slotOf(p.tag)) === m3) spread.push(p);
      }
      for (const p of spread) {
        await evalOn(m3, P_HEAD_SCRIPT, headCall(p, "w1", [], { epoch: "cccccc", cluster: true }));
      }
      await cluster.reshard(m3, m1, 500);
      let moved = 0;
      for (const p of spread) {
        const port = await cluster.masterOf(slotOf(p.tag));
        if (port === m3) continue;
        moved++;
        assert.equal(port, m1);
        assert.deepEqual(
          await evalOn(
            port,
            P_HEAD_SCRIPT,
            headCall(p, "w1", [], { epoch: "dddddd", cluster: true }),
          ),
          ["cccccc", "0"],
        );
        assert.equal(await hget(p.meta, "node"), await myId(m1));
      }
      assert.ok(moved > 0, "some partitions moved");

      // A failover: the promoted replica may lack the tail, a new epoch (seqs go on from its copy).
      const promoted = await cluster.killMaster(m2);
      const [epoch, seq, prev] = await evalOn(
        promoted,
        P_PUBLISH_SCRIPT,
        publishCall({ ...cluster1, epoch: "eeeeee" }),
      ) as string[];
      assert.equal(epoch, "eeeeee");
      assert.ok(Number(seq) >= 1, `seq ${seq}`);
      // (the marker names the old epoch: the channel's previous event in this one is unknown)
      assert.equal(prev, "0");
      assert.equal(await hget(names.meta, "node"), await myId(promoted));
      assert.deepEqual(
        await evalOn(promoted, P_HEAD_SCRIPT, headCall(names, "w1", [], { cluster: true })),
        ["eeeeee", seq],
      );
      const [singleEpoch] = await evalOn(promoted, PUBLISH_SCRIPT, singleCall("s3")) as string[];
      assert.equal(singleEpoch, "s3");

      // Conservative: keys moved onto a master that was once promoted start a new epoch too.
      const other = await partitionOn(m1, 5);
      await evalOn(
        m1,
        P_HEAD_SCRIPT,
        headCall(other, "w1", [], { epoch: "ffffff", cluster: true }),
      );
      await cluster.moveSlot(slotOf(other.tag), promoted);
      assert.deepEqual(
        await evalOn(
          promoted,
          P_HEAD_SCRIPT,
          headCall(other, "w1", [], {
            epoch: "gggggg",
            cluster: true,
          }),
        ),
        ["gggggg", "0"],
      );
    },
  );
});
