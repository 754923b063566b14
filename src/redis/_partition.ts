/**
 * Which partition a channel belongs to in the partitioned mode of the Redis bridge, and the
 * names of each partition's keys and pub/sub channels.
 *
 * A channel's partition is FNV-1a (32 bits, over UTF-16 code units) of its hash tag, modulo the
 * number of partitions `n`; broadcasts are partition `n`, the last one. The hash tag follows
 * Redis's own rule, so `user:{42}:inbox` and `user:{42}:presence` share a partition: a client on
 * one user's channels gets a one-component `Last-Event-ID`. The map must never change: every
 * worker of an app, and every id a client holds, depend on it.
 *
 * Every key and channel of partition `k` starts with the tag `{<prefix>p<k>}` (`{<prefix>pb}`
 * for broadcasts), so one script call touches one slot of a Redis Cluster, and a channel's shard
 * channel lies in the slot of its keys by construction.
 * @module
 */

/** Partitions of channels by default (the broadcast partition comes on top). */
export const DEFAULT_PARTITIONS = 16;
/** The most partitions of channels a bridge may have (the broadcast partition comes on top). */
export const MAX_PARTITIONS = 256;

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 16777619;

/**
 * Redis's hash-tag rule: the part between the first `{` and the first `}` after it, if that
 * part is not empty; else the whole text (Redis then hashes the whole key).
 * @param channel A channel name.
 * @returns The part of it that decides its partition.
 */
export function hashTag(channel: string): string {
  const open = channel.indexOf("{");
  if (open < 0) return channel;
  const close = channel.indexOf("}", open + 1);
  // `{}` (an empty tag) counts as no tag, as in Redis.
  return close > open + 1 ? channel.slice(open + 1, close) : channel;
}

/**
 * FNV-1a, 32 bits, over the UTF-16 code units of `text` (the same on every runtime, and the
 * same as byte-wise FNV-1a for ASCII text).
 * @param text Any text.
 * @returns The hash, an unsigned 32-bit integer.
 */
export function fnv1a(text: string): number {
  let hash = FNV_OFFSET;
  for (let i = 0; i < text.length; i++) {
    hash = Math.imul(hash ^ text.charCodeAt(i), FNV_PRIME);
  }
  return hash >>> 0;
}

/**
 * The partition of a channel: FNV-1a of its hash tag, modulo `n`. Stable forever.
 * @param channel A channel, or `null` for broadcasts (partition `n`).
 * @param n Partitions of channels (1 to {@linkcode MAX_PARTITIONS}).
 * @returns The partition, `0` to `n - 1` for a channel, `n` for broadcasts.
 */
export function partitionOf(channel: string | null, n: number): number {
  return channel === null ? n : fnv1a(hashTag(channel)) % n;
}

/**
 * Why `n` cannot be a number of partitions, or `undefined` when it can.
 * @param n The caller's `partitions` option.
 * @returns The reason, to follow "Cannot … : " in an error message.
 */
export function partitionsProblem(n: unknown): string | undefined {
  return Number.isInteger(n) && (n as number) >= 1 && (n as number) <= MAX_PARTITIONS
    ? undefined
    : `\`partitions\` must be an integer from 1 to ${MAX_PARTITIONS}`;
}

/**
 * Why `prefix` cannot be the prefix of a partitioned bridge (the bridge writes the hash tags
 * itself, so the prefix may not have braces), or `undefined` when it can.
 * @param prefix The caller's `prefix` option.
 * @returns The reason, to follow "Cannot … : " in an error message.
 */
export function prefixProblem(prefix: string): string | undefined {
  return /[{}]/.test(prefix)
    ? "a partitioned bridge puts each partition's hash tag around `prefix`, which must not contain `{` or `}`"
    : undefined;
}

/**
 * The names of one partition's keys and pub/sub channels. Keys are per database; pub/sub
 * channels are server-wide, so on a database other than 0 they carry `@<db>` after their kind
 * (before any channel name, so that no channel name can spell another database's channel).
 */
export interface PartitionNames {
  /** The partition. */
  readonly partition: number;
  /** `{<prefix>p<k>}` (`{<prefix>pb}` for the broadcast partition): every name starts with it. */
  readonly tag: string;
  /** Hash: `epoch`, `seq`, `run`, `node`, `n`; `lb` in the broadcast partition. */
  readonly meta: string;
  /** The partition's heal log. */
  readonly log: string;
  /** The partition's watermark. */
  readonly watermark: string;
  /**
   * The history stream of a channel of this partition.
   * @param channel The channel, `null` in the broadcast partition.
   * @returns The key.
   */
  stream(channel: string | null): string;
  /**
   * Where `<epoch> <seq>` of a channel's last event is kept (the broadcast partition: `meta`).
   * @param channel The channel, `null` in the broadcast partition.
   * @returns The key.
   */
  marker(channel: string | null): string;
  /**
   * The shard channel a channel's events are published on (`T e` in the broadcast partition).
   * @param channel The channel, `null` in the broadcast partition.
   * @returns The pub/sub channel.
   */
  shard(channel: string | null): string;
  /**
   * A worker's private checkpoint channel in this partition.
   * @param worker The bridge's random name.
   * @returns The pub/sub channel.
   */
  inbox(worker: string): string;
}

/**
 * The tag every key and channel of partition `k` starts with.
 * @param prefix The bridge's prefix (no braces, see {@linkcode prefixProblem}).
 * @param k The partition.
 * @param n Partitions of channels: `k = n` is the broadcast partition.
 * @returns `{<prefix>p<k>}`, or `{<prefix>pb}` for `k = n`.
 */
export function partitionTag(prefix: string, k: number, n: number): string {
  return k === n ? `{${prefix}pb}` : `{${prefix}p${k}}`;
}

/**
 * The names of partition `k`'s keys and channels.
 * @param prefix The bridge's prefix (no braces, see {@linkcode prefixProblem}).
 * @param k The partition, `0` to `n`.
 * @param n Partitions of channels: `k = n` is the broadcast partition.
 * @param db The database the keys are in (`0` on a Cluster).
 * @returns The names.
 */
export function partitionNames(prefix: string, k: number, n: number, db = 0): PartitionNames {
  const tag = partitionTag(prefix, k, n);
  const at = db === 0 ? "" : `@${db}`;
  const meta = `${tag}meta`;
  return {
    partition: k,
    tag,
    meta,
    log: `${tag}log`,
    watermark: `${tag}w`,
    stream: (channel) => channel === null ? `${tag}b` : `${tag}c:${channel}`,
    marker: (channel) => channel === null ? meta : `${tag}l:${channel}`,
    shard: (channel) => channel === null ? `${tag}e${at}` : `${tag}e${at}:${channel}`,
    inbox: (worker) => `${tag}h${at}:${worker}`,
  };
}
