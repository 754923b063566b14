/**
 * The partitioned mode of the Redis bridge (`redisBridge({ …, partitions: 16 })`): channels hash
 * to partitions, each with its own epoch, seq, heal log and keys under one hash tag (one slot of a
 * Redis Cluster); every channel has its own (shard) pub/sub channel, and a worker subscribes only
 * to the channels its clients are on. Order is per partition; one `Last-Event-ID` (one component
 * per partition, see `_position.ts`) still resumes every channel of a client.
 *
 * How a worker keeps its feed whole (design: wip/issue-15-partitioned-design.md, §3 and §4):
 *
 * - per partition `p`, `seen[p]` = (epoch, seq): every event of `p` up to it, on every channel
 *   this worker has a confirmed subscription to, went through `deliver` (or a gap signal). Ids
 *   are made of it, so they never claim an event that was not delivered;
 * - per channel `last[c]`: the seq of its last delivered event. Every message carries `prev`, the
 *   seq of its channel's previous event: `prev > last[c]` is a hole, healed from the partition's
 *   log (`nextChannelStep` in `_sequence.ts` decides);
 * - when events may have been missed on a channel that has no later event (a dropped connection,
 *   a moved slot), the partition is held (its messages queued) until an audit (`P_HEAD` with the
 *   channels' markers, and its checkpoint on the worker's private inbox) healed them.
 * @module
 */

import type {
  Bridge,
  BridgeEvent,
  BridgeGap,
  BridgePartitions,
  BridgeReplay,
  HistoryLimits,
} from "../bridge.ts";
import { type BridgeStats, bridgeStats, type ReportsBridgeStats } from "../_bridge_stats.ts";
import { clock, type TimerHandle } from "../_clock.ts";
import { checkNonNegativeInteger, checkPositiveInteger } from "../_options.ts";
import { adapterFor, isClusterClient } from "./_adapters.ts";
import {
  bridgeError,
  messageOf,
  parseHead,
  runScript,
  type ScriptRunner,
  typeOf,
  within,
} from "./_calls.ts";
import {
  decodePartitionedMessage,
  decodePartitionedPayload,
  encodePayload,
  type PartitionedMessage,
  partitionedPayloadOf,
} from "./_message.ts";
import {
  DEFAULT_PARTITIONS,
  type PartitionNames,
  partitionNames,
  partitionOf,
  partitionsProblem,
  prefixProblem,
} from "./_partition.ts";
import { encodeComponent, joinComponents, newEpoch, parsePosition } from "./_position.ts";
import {
  P_CHECK_SCRIPT,
  P_HEAD_SCRIPT,
  P_HEAL_SCRIPT,
  P_PUBLISH_SCRIPT,
  P_REPLAY_SCRIPT,
} from "./_partitioned_scripts.ts";
import { type ChannelStep, nextChannelStep, nextStep, type Position } from "./_sequence.ts";
import type { RedisBridgeOptions } from "./redis_bridge_options.ts";
import type { RedisBridgeAdapter, RedisBridgeSubscription } from "./redis_bridge_adapter.ts";
import { RedisBridgeError } from "./redis_bridge_error.ts";

/** How long history lives in Redis after its channel's last publish or replay, by default. */
const DEFAULT_TTL = 3_600_000;
/** Events kept in each partition's heal log by default. */
const DEFAULT_HEAL_WINDOW = 2_000;
/** Ms a channel stays subscribed after its last local client left, by default. */
const DEFAULT_UNSUBSCRIBE_DELAY = 30_000;
/** Ms between audits of a live partition, by default. */
const DEFAULT_AUDIT_INTERVAL = 10_000;

function noop(): void {}

/** One channel this worker has (or had until lately) a local client on. */
interface Channel {
  readonly name: string;
  /** Its (shard) pub/sub channel: set when it is subscribed (the database is known then). */
  shard: string;
  readonly part: Part;
  /** Redis confirmed the subscription (or a message of it arrived, which says as much). */
  confirmed: boolean;
  /** Unsubscribe due at `deadline` (no local client left); undefined while wanted. */
  deadline: number | undefined;
  /** The partition seq of its last delivered event, or `"start"`: none since confirmed. */
  last: number | "start";
  /** Resolves once confirmed and the partition has a live position; rejects if it failed. */
  readonly ready: Promise<void>;
  isReady: boolean;
  resolve(): void;
  reject(error: unknown): void;
}

/** An audit of one partition (design §4.4). */
interface Audit {
  /** The channels whose markers it read. */
  channels: Channel[];
  /** What `P_HEAD` answered: the head and each channel's marker, read atomically. */
  reply: { epoch: string; seq: number; markers: (Position | undefined)[] } | undefined;
  /** Its checkpoint arrived on the inbox: every message of the partition before it has too. */
  checkpoint: boolean;
  /** Another suspicion came while it ran: audit again once it is done. */
  again: boolean;
  timer: TimerHandle | undefined;
}

/** A publish or a replay that waits for live delivery to reach a seq of a partition. */
interface Waiter {
  part: Part;
  epoch: string;
  seq: number;
  generation: number;
  deadline: number;
  done: boolean;
  /** A publish's: audits the partition when the echo is late by half the timeout. */
  late?: TimerHandle | undefined;
  resolve(): void;
  timeout(): void;
}

/** The state of one partition on this worker. */
interface Part {
  readonly index: number;
  readonly broadcast: boolean;
  /** Its keys and channels: set on open, once the database number is known. */
  names: PartitionNames;
  /** This worker's private checkpoint channel in the partition. */
  inbox: string;
  /** The inbox (and some channel, or the broadcasts) is subscribed, or being subscribed. */
  live: boolean;
  /**
   * Redis confirmed the inbox's subscription: only then can an audit's checkpoint arrive (a
   * reconnect reported while it is under way, e.g. a Cluster node's first connection, does not
   * start an audit before).
   */
  confirmed: boolean;
  /** Where live delivery is; undefined while idle or until its first message or checkpoint. */
  seen: Position | undefined;
  /** The id component of `seen` (or of the last head read while idle). */
  component: string | undefined;
  /** Epoch changes seen: a waiter of an older epoch is settled by a newer one. */
  generation: number;
  /** Where each epoch's seqs start in the order the broker sees (as in the single-order mode). */
  bases: Map<string, number>;
  /** The highest broker-facing seq this partition was at (it survives going idle). */
  top: number;
  /** Messages queued while a confirmation, a heal or an audit runs; undefined: they flow. */
  held: string[] | undefined;
  /** A confirmation, heal or audit's end is under way. */
  busy: boolean;
  /** Events may have been missed: messages wait for an audit. */
  suspect: boolean;
  audit: Audit | undefined;
  auditedAt: number;
  /** Healed (or audited) up to this seq: a live message at or below it is expected, not forged. */
  floor: number;
  channels: Map<string, Channel>;
  /** Channels to subscribe at the next flush. */
  batch: Channel[];
  waiters: Waiter[];
  /** A timer that retries an audit that failed. */
  retry: TimerHandle | undefined;
}

/**
 * The partitioned Redis bridge; made by `redisBridge()` when `partitions` is given.
 * @internal
 */
export class PartitionedRedisBridge implements Bridge, ReportsBridgeStats {
  readonly #adapter: RedisBridgeAdapter;
  /** `S` when the clients are Redis Cluster clients: `SPUBLISH`/`SSUBSCRIBE`. */
  readonly #publish: "S" | "";
  readonly #prefix: string;
  /** Partitions of channels; the broadcast partition is `#n`. */
  readonly #n: number;
  readonly #healWindow: number;
  readonly #timeout: number;
  readonly #unsubscribeDelay: number;
  readonly #auditInterval: number;
  #ttl = DEFAULT_TTL;
  readonly #onError: (error: RedisBridgeError) => void;
  /** This bridge's random name: its inboxes. */
  #worker = "";
  #candidateValue: string | undefined;
  readonly #shas = new Map<string, Promise<string>>();
  #deliver: (event: BridgeEvent) => void = noop;
  #lost: (gap: BridgeGap) => void = noop;
  readonly #stats: BridgeStats = { eventsHealed: 0, holesHealed: 0, losses: 0, messagesRefused: 0 };
  #parts: Part[] = [];
  /** Pub/sub channel name → its partition (channels and inboxes). */
  readonly #routes = new Map<string, Part>();
  #subscription: Promise<RedisBridgeSubscription> | undefined;
  #opened: Promise<void> | undefined;
  #flushQueued = false;
  /** Channels waiting to be unsubscribed, in deadline order. */
  readonly #lingering = new Set<Channel>();
  #lingerTimer: TimerHandle | undefined;
  #auditTimer: TimerHandle | undefined;
  /** Every waiter in deadline order (one timeout for all: the oldest). */
  #waiters: Waiter[] = [];
  #waitTimer: TimerHandle | undefined;
  #down = false;
  #closed = false;

  readonly partitions: BridgePartitions;

  constructor(options: RedisBridgeOptions) {
    let cluster = false;
    if (options.adapter) this.#adapter = options.adapter;
    else {
      if (!options.client || !options.subscriber) {
        throw new TypeError(
          "Cannot create Redis bridge: pass `client` and `subscriber` (two connections), or an `adapter`",
        );
      }
      cluster = isClusterClient(options.client);
      this.#adapter = adapterFor(options.client, options.subscriber, { sharded: cluster });
    }
    if (typeof this.#adapter.listenMany !== "function") {
      throw new TypeError(
        "Cannot create Redis bridge: the partitioned mode needs an adapter with `listenMany`",
      );
    }
    this.#publish = cluster ? "S" : "";
    const n = options.partitions ?? DEFAULT_PARTITIONS;
    const nProblem = partitionsProblem(n);
    if (nProblem !== undefined) {
      throw new RangeError(`Cannot create Redis bridge: ${nProblem}, got \`${String(n)}\``);
    }
    this.#n = n;
    const prefix: unknown = options.prefix ?? "flume:";
    if (typeof prefix !== "string") {
      throw new TypeError(
        `Cannot create Redis bridge: \`prefix\` must be a string, got \`${typeOf(prefix)}\``,
      );
    }
    const problem = prefixProblem(prefix);
    if (problem !== undefined) {
      throw new TypeError(`Cannot create Redis bridge: ${problem}, got \`${prefix}\``);
    }
    this.#prefix = prefix;
    const api = "Redis bridge";
    this.#healWindow = checkNonNegativeInteger(
      api,
      "healWindow",
      options.healWindow,
      DEFAULT_HEAL_WINDOW,
    );
    this.#timeout = checkPositiveInteger(api, "timeout", options.timeout, 5_000);
    this.#unsubscribeDelay = checkNonNegativeInteger(
      api,
      "unsubscribeDelay",
      options.unsubscribeDelay,
      DEFAULT_UNSUBSCRIBE_DELAY,
    );
    this.#auditInterval = checkPositiveInteger(
      api,
      "auditInterval",
      options.auditInterval,
      DEFAULT_AUDIT_INTERVAL,
    );
    this.#onError = options.onError ?? ((error) => console.error("Redis bridge:", error));
    this.#parts = this.#makeParts(0);
    this.partitions = {
      count: n + 1,
      of: (channel) => partitionOf(channel, n),
      idFor: (partitions) => this.#idFor(partitions),
    };
  }

  #makeParts(db: number): Part[] {
    const parts: Part[] = [];
    for (let k = 0; k <= this.#n; k++) {
      const names = partitionNames(this.#prefix, k, this.#n, db);
      parts.push({
        index: k,
        broadcast: k === this.#n,
        names,
        inbox: names.inbox(this.#worker),
        live: false,
        confirmed: false,
        seen: undefined,
        component: undefined,
        generation: 0,
        bases: new Map(),
        top: -1,
        held: undefined,
        busy: false,
        suspect: false,
        audit: undefined,
        auditedAt: 0,
        floor: 0,
        channels: new Map(),
        batch: [],
        waiters: [],
        retry: undefined,
      });
    }
    return parts;
  }

  /** The id of this worker's position on some partitions (cached components, joined). */
  #idFor(partitions: readonly number[]): string {
    const components: string[] = [];
    for (const p of partitions) {
      const component = this.#parts[p]?.component;
      if (component !== undefined) components.push(component);
    }
    return joinComponents(components, this.#n);
  }

  // ---- Open, close ----

  open(
    deliver: (event: BridgeEvent) => void,
    lost?: (gap: BridgeGap) => void,
    limits?: HistoryLimits,
  ): Promise<void> {
    const ttl = limits?.ttl ?? DEFAULT_TTL;
    if (!Number.isSafeInteger(ttl) || ttl <= 0) {
      return Promise.reject(
        new RangeError(
          `Cannot open Redis bridge: \`ttl\` must be a positive integer, got \`${String(ttl)}\``,
        ),
      );
    }
    this.#ttl = ttl;
    this.#deliver = deliver;
    this.#lost = lost ?? noop;
    this.#opened = this.#start();
    this.#opened.catch(noop);
    return this.#opened;
  }

  async #start(): Promise<void> {
    this.#worker = randomName();
    const db = await this.#database();
    for (const part of this.#parts) {
      part.names = partitionNames(this.#prefix, part.index, this.#n, db);
      part.inbox = part.names.inbox(this.#worker);
      this.#routes.set(part.inbox, part);
      if (part.broadcast) this.#routes.set(part.names.shard(null), part);
    }
    this.#subscription = this.#adapter.listenMany!({
      message: this.#onMessage,
      connected: this.#onConnected,
      error: this.#onConnectionError,
      moved: this.#onMoved,
    });
    const subscription = await this.#subscription;
    // The broadcast partition is live for good; every other partition's head gives its id
    // component until it goes live (a claim that holds for any value while nothing of it is
    // subscribed, design §4.2).
    const broadcast = this.#parts[this.#n]!;
    broadcast.live = true;
    await this.#within(
      subscription.subscribe([broadcast.names.shard(null), broadcast.inbox]),
      "subscribe",
    );
    broadcast.confirmed = true;
    const heads = this.#parts.filter((part) => !part.broadcast).map(async (part) => {
      const [epoch, seq] = await this.#runHead(part, []);
      if (!part.live) part.component = encodeComponent(part.index, epoch, seq);
    });
    const live = new Promise<void>((resolve, reject) => {
      this.#startAudit(broadcast, false, (error) => error ? reject(error) : resolve());
    });
    await Promise.all([...heads, live]);
    this.#armAudits();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#deliver = noop;
    this.#lost = noop;
    clock.clearTimeout(this.#lingerTimer);
    clock.clearTimeout(this.#auditTimer);
    clock.clearTimeout(this.#waitTimer);
    for (const part of this.#parts) {
      part.held = undefined;
      clock.clearTimeout(part.audit?.timer);
      clock.clearTimeout(part.retry);
      for (const channel of part.channels.values()) {
        if (!channel.isReady) channel.reject(closedError("subscribe"));
      }
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) if (!waiter.done) waiter.timeout();
    const subscription = await this.#subscription?.catch(noop);
    if (!subscription) return;
    try {
      await this.#within(subscription.close(), "unsubscribe");
    } catch (error) {
      this.#report(error);
    }
  }

  // ---- Interest: subscriptions, linger, readiness (design §4.2) ----

  interest(name: string, on: boolean): void {
    if (this.#closed) return;
    try {
      if (on) this.#want(name);
      else this.#unwant(name);
    } catch (error) {
      this.#report(error);
    }
  }

  #want(name: string): Channel {
    const part = this.#parts[partitionOf(name, this.#n)]!;
    const known = part.channels.get(name);
    if (known !== undefined) {
      if (known.deadline !== undefined) {
        known.deadline = undefined;
        this.#lingering.delete(known);
      }
      return known;
    }
    let resolve!: () => void;
    let reject!: (error: unknown) => void;
    const ready = new Promise<void>((yes, no) => {
      resolve = yes;
      reject = no;
    });
    ready.catch(noop);
    const channel: Channel = {
      name,
      shard: "",
      part,
      confirmed: false,
      deadline: undefined,
      last: "start",
      ready,
      isReady: false,
      resolve: () => {
        channel.isReady = true;
        resolve();
      },
      reject,
    };
    part.channels.set(name, channel);
    part.batch.push(channel);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flush);
    }
    return channel;
  }

  #unwant(name: string): void {
    const part = this.#parts[partitionOf(name, this.#n)]!;
    const channel = part.channels.get(name);
    if (channel === undefined || channel.deadline !== undefined) return;
    channel.deadline = clock.now() + this.#unsubscribeDelay;
    this.#lingering.add(channel);
    if (this.#lingering.size === 1) this.#armLinger();
  }

  /** One `SUBSCRIBE`/`SSUBSCRIBE` per partition (one slot) with all of its new channels. */
  #flush = (): void => {
    this.#flushQueued = false;
    if (this.#closed) return;
    for (const part of this.#parts) {
      if (part.batch.length === 0) continue;
      const channels = part.batch;
      part.batch = [];
      void this.#subscribe(part, channels);
    }
  };

  async #subscribe(part: Part, channels: Channel[]): Promise<void> {
    const goingLive = !part.live;
    if (goingLive) part.live = true;
    try {
      if (!this.#opened) throw bridgeError("Cannot subscribe: the bridge is not open", "closed");
      await this.#opened;
      const subscription = await this.#subscription!;
      const names: string[] = [];
      for (const channel of channels) {
        channel.shard = part.names.shard(channel.name);
        this.#routes.set(channel.shard, part);
        names.push(channel.shard);
      }
      if (goingLive) names.push(part.inbox);
      await this.#within(subscription.subscribe(names), "subscribe");
    } catch (error) {
      for (const channel of channels) {
        if (part.channels.get(channel.name) === channel) {
          part.channels.delete(channel.name);
          this.#lingering.delete(channel);
        }
        channel.reject(error);
      }
      if (goingLive) part.live = false;
      this.#report(error);
      return;
    }
    if (this.#closed) return;
    for (const channel of channels) channel.confirmed = true;
    if (goingLive) part.confirmed = true;
    // A partition that was idle gets its live position from its first message or from this
    // audit's checkpoint, whichever comes first. On a live one, the audit gives the new
    // channels a known `last` (the head) soon: until then a channel at "start" takes any
    // event, and an event missed in a drop would go unnoticed.
    this.#startAudit(part, false);
    this.#checkReady(part);
  }

  /** Channels confirmed in a partition with a live position are ready. */
  #checkReady(part: Part): void {
    if (part.seen === undefined) return;
    for (const channel of part.channels.values()) {
      if (channel.confirmed && !channel.isReady) channel.resolve();
    }
  }

  #armLinger(): void {
    clock.clearTimeout(this.#lingerTimer);
    this.#lingerTimer = undefined;
    const first = this.#lingering.values().next().value;
    if (first === undefined || this.#closed) return;
    this.#lingerTimer = clock.setTimeout(
      this.#expireLinger,
      Math.max(0, first.deadline! - clock.now()),
      this,
    );
  }

  #expireLinger = (): void => {
    const now = clock.now();
    const due = new Map<Part, Channel[]>();
    for (const channel of this.#lingering) {
      if (channel.deadline! > now) break;
      this.#lingering.delete(channel);
      const list = due.get(channel.part);
      if (list) list.push(channel);
      else due.set(channel.part, [channel]);
    }
    for (const [part, channels] of due) this.#unsubscribe(part, channels);
    this.#armLinger();
  };

  /** Unsubscribes channels nobody wants any more; a partition left without any goes idle. */
  #unsubscribe(part: Part, channels: Channel[]): void {
    const names: string[] = [];
    for (const channel of channels) {
      part.channels.delete(channel.name);
      this.#routes.delete(channel.shard);
      names.push(channel.shard);
    }
    if (part.channels.size === 0 && !part.broadcast && part.live) {
      names.push(part.inbox);
      this.#idle(part);
    }
    this.#subscription?.then((s) => this.#within(s.unsubscribe(names), "unsubscribe"))
      .catch(this.#report);
  }

  /** A partition with no channel left: no live position, its last component stays as its id. */
  #idle(part: Part): void {
    part.live = false;
    part.confirmed = false;
    part.seen = undefined;
    part.held = undefined;
    part.busy = false;
    part.suspect = false;
    clock.clearTimeout(part.audit?.timer);
    clock.clearTimeout(part.retry);
    part.audit = undefined;
    // Nothing of it can arrive any more: its publishes went out (a waiter would only time out).
    part.generation++;
    for (const waiter of part.waiters) waiter.resolve();
    part.waiters = [];
  }

  // ---- Publish (design §2.4, §5) ----

  async publish(
    event: { channel: string | null; body: string; id?: string },
    history: number,
  ): Promise<BridgeEvent> {
    if (event.id !== undefined) {
      throw new TypeError(
        `Cannot publish event: a partitioned Redis bridge makes every id itself, got \`${event.id}\``,
      );
    }
    await this.#ready("publish event");
    const p = partitionOf(event.channel, this.#n);
    const part = this.#parts[p]!;
    const channel = event.channel === null ? undefined : part.channels.get(event.channel);
    // A publish right after subscribe() reaches the client: wait for the subscription.
    if (channel !== undefined && !channel.isReady) {
      await this.#within(channel.ready, "publish event").catch(noop);
    }
    const payload = encodePayload(event.channel, history > 0 ? true : undefined, event.body);
    const names = part.names;
    const reply = await this.#call("publish event", P_PUBLISH_SCRIPT, [
      names.meta,
      names.shard(event.channel),
      names.stream(event.channel),
      names.marker(event.channel),
      names.watermark,
      names.log,
    ], [
      ...this.#common(p),
      payload,
      event.channel ?? "",
      String(history),
      String(this.#ttl),
      String(this.#healWindow),
    ]);
    const [epoch, seq] = parseHead(reply, "publish event");
    // Resolve once the echo went through `deliver`, when this worker delivers the channel.
    if (part.broadcast || (channel !== undefined && channel.isReady && part.live)) {
      await this.#wait(part, epoch, seq, "publish");
    }
    return {
      channel: event.channel,
      seq: (part.bases.get(epoch) ?? 0) + seq,
      partition: p,
      id: history > 0 ? encodeComponent(p, epoch, seq) : undefined,
      body: event.body,
    };
  }

  // ---- Replay (design §3.5) ----

  async replay(channels: readonly string[], lastEventId: string): Promise<BridgeReplay> {
    await this.#ready("replay events");
    const n = this.#n;
    // 1. The partitions of the client, and where its id says it is on each.
    const byPart = new Map<number, string[]>([[n, []]]);
    for (const name of channels) {
      const p = partitionOf(name, n);
      const list = byPart.get(p);
      if (list) list.push(name);
      else byPart.set(p, [name]);
    }
    const order = [...byPart.keys()].sort((a, b) => a - b);
    const known = new Map<number, Position>();
    for (const position of parsePosition(lastEventId, n) ?? []) {
      if (byPart.has(position.partition)) known.set(position.partition, position);
    }
    // 2. Every channel subscribed (the broker called `interest` before; a bridge used without
    // it subscribes here and lets the channel linger).
    const waits: Promise<void>[] = [];
    for (const name of channels) {
      const part = this.#parts[partitionOf(name, n)]!;
      let channel = part.channels.get(name);
      if (channel === undefined) {
        channel = this.#want(name);
        this.#unwant(name);
      }
      if (!channel.isReady) waits.push(channel.ready);
    }
    if (waits.length > 0) await this.#within(Promise.all(waits), "replay events");
    // 3. A client that comes from a worker ahead of this one on a partition: wait for it.
    await Promise.all(order.map(async (p) => {
      const part = this.#parts[p]!;
      const at = known.get(p);
      const seen = part.seen;
      if (at === undefined || seen === undefined) return;
      if (at.epoch === seen.epoch && at.seq > seen.seq) {
        // The events in between may all be of channels this worker has no client on: an
        // audit's checkpoint brings the partition to the head, past them.
        this.#startAudit(part, false);
        await this.#wait(part, at.epoch, at.seq, "replay").catch(() => known.delete(p));
      }
    }));
    // 4. Where this worker is, in one turn: the replay reads up to there, live events bring
    // the rest (every held event at or below it is dropped, every one after it kept).
    const upTo = new Map<number, Position | undefined>();
    for (const p of order) upTo.set(p, this.#parts[p]!.seen);
    // 5. One script per partition (one slot each), in parallel. An id of another epoch than
    // this worker's is a gap at once (the design would wait up to `timeout` for this worker to
    // take a newer epoch first: a client from a worker ahead across a failover gets a gap on
    // that partition's channels instead, which is never a hole).
    const replies = await Promise.all(order.map((p) => {
      const u = upTo.get(p);
      const at = known.get(p);
      if (u === undefined || at === undefined || at.epoch !== u.epoch) {
        return Promise.resolve(undefined);
      }
      return this.#runReplay(this.#parts[p]!, byPart.get(p)!, at, u);
    }));
    // 6. Compose, partition by partition.
    const gaps = new Set<string>();
    const lostAll = (p: number): void => {
      for (const name of p === n ? channels : byPart.get(p)!) gaps.add(name);
    };
    const ok = new Set<number>();
    const perPart: { p: number; epoch: string; events: BridgeEvent[] }[] = [];
    order.forEach((p, i) => {
      const reply = replies[i];
      const u = upTo.get(p);
      if (reply === undefined || u === undefined || reply.epoch !== u.epoch || !reply.known) {
        lostAll(p);
        return;
      }
      ok.add(p);
      const names = byPart.get(p)!;
      for (const k of reply.gaps) {
        if (p === n) lostAll(p);
        else if (names[k - 1] !== undefined) gaps.add(names[k - 1]!);
      }
      const events: BridgeEvent[] = [];
      for (let j = 0; j + 1 < reply.events.length; j += 2) {
        const seq = Number(reply.events[j]);
        const event = decodePartitionedPayload(String(reply.events[j + 1]), 0, p, u.epoch, seq, n);
        if (typeof event === "string") {
          this.#report(bridgeError(`Cannot replay event ${seq}: ${event}`, "malformed"));
          lostAll(p);
          continue;
        }
        events.push(event);
      }
      events.sort((a, b) => a.seq - b.seq);
      perPart.push({ p, epoch: u.epoch, events });
    });
    const events: BridgeEvent[] = [];
    for (const { p, epoch, events: list } of perPart) {
      const part = this.#parts[p]!;
      const base = part.bases.get(epoch) ?? 0;
      for (const event of list) {
        const seq = event.seq;
        // The id a client that got this event comes back with: the partitions replayed before
        // it at this worker's position, its own at it, the later ones where the client was.
        // A partition that ends in a gap is left out: a resume still gets its gap.
        const components: string[] = [];
        for (const q of order) {
          if (!ok.has(q)) continue;
          if (q < p) components.push(component(q, upTo.get(q)!));
          else if (q === p) components.push(encodeComponent(p, epoch, seq));
          else components.push(component(q, known.get(q)!));
        }
        if (event.id !== undefined) event.id = joinComponents(components, n);
        event.seq = base + seq;
        events.push(event);
      }
    }
    const seqs: (number | undefined)[] = [];
    const components: string[] = [];
    for (const p of order) {
      const u = upTo.get(p);
      if (u === undefined) continue;
      seqs[p] = (this.#parts[p]!.bases.get(u.epoch) ?? 0) + u.seq;
      components.push(component(p, u));
    }
    return {
      events,
      gaps: [...gaps],
      head: { seq: 0, id: joinComponents(components, n), seqs },
    };
  }

  async #runReplay(
    part: Part,
    channels: readonly string[],
    after: Position,
    upTo: Position,
  ): Promise<
    { epoch: string; known: boolean; gaps: number[]; events: unknown[] } | undefined
  > {
    const names = part.names;
    const list: (string | null)[] = part.broadcast ? [null] : [...channels];
    const reply = await this.#call(
      "replay events",
      P_REPLAY_SCRIPT,
      [names.meta, names.watermark, ...list.flatMap((c) => [names.stream(c), names.marker(c)])],
      [
        ...this.#common(part.index).slice(0, 3),
        after.epoch,
        String(after.seq),
        String(upTo.seq),
        String(this.#ttl),
      ],
    );
    const [epoch, , knownFlag, gapList, flat] = Array.isArray(reply) ? reply : [];
    if (typeof epoch !== "string") return undefined;
    return {
      epoch,
      known: Number(knownFlag) === 1,
      gaps: Array.isArray(gapList) ? gapList.map(Number) : [],
      events: Array.isArray(flat) ? flat : [],
    };
  }

  // ---- Live delivery (design §4.3) ----

  #onMessage = (from: string, text: string): void => {
    if (this.#closed) return;
    const part = this.#routes.get(from);
    if (part === undefined) return; // unsubscribed meanwhile
    if (part.held !== undefined) {
      // An audit's checkpoint is taken at once: it ends the hold.
      if (text.endsWith(" head") && this.#checkpointWhileHeld(part, text)) return;
      part.held.push(text);
      return;
    }
    this.#take(part, text);
  };

  /** Takes one message of a partition in order. */
  #take(part: Part, text: string): void {
    const message = decodePartitionedMessage(text, this.#n);
    if (typeof message === "string") {
      this.#refuse(text, message);
      return;
    }
    if (message.partition !== part.index) {
      this.#refuse(text, `it names partition ${message.partition} on partition ${part.index}`);
      return;
    }
    if (message.kind === "head") {
      this.#onCheckpoint(part, message.epoch, message.seq);
      return;
    }
    const event = message.event;
    let channel: Channel | undefined;
    let step: ChannelStep;
    if (part.broadcast) {
      const s = nextStep(part.seen, { kind: "event", epoch: message.epoch, seq: event.seq });
      step = s.action === "checkpoint" || s.action === "new-epoch" || s.action === "rewind"
        ? { action: "foreign" }
        : s;
    } else {
      channel = part.channels.get(event.channel!);
      if (channel === undefined) return; // a message in flight when it was unsubscribed
      // A message of the channel says Redis confirmed its subscription.
      channel.confirmed = true;
      step = nextChannelStep(part.seen, channel.last, {
        kind: "event",
        epoch: message.epoch,
        seq: event.seq,
        prev: message.prev,
      });
    }
    switch (step.action) {
      case "deliver":
        this.#advance(part, message.epoch, event);
        if (part.seen !== undefined && !channel?.isReady) this.#checkReady(part);
        return;
      case "duplicate":
        if (event.seq <= part.floor) return; // healed already: its live copy came late
        this.#refuse(text, `event ${event.seq} was delivered already`);
        return;
      default:
        this.#confirm(part, text, message, step);
    }
  }

  /**
   * A message that says this worker missed events is a claim anyone who can publish on the
   * channel can make: Redis confirms it first (as in the single-order mode), and the partition's
   * later messages wait meanwhile.
   */
  #confirm(part: Part, text: string, message: PartitionedMessage, step: ChannelStep): void {
    part.held ??= [];
    part.busy = true;
    this.#resolve(part, text, message, step).catch((error: unknown) => {
      this.#refuse(text, `Redis could not confirm it: ${messageOf(error)}`);
    }).finally(() => this.#release(part));
  }

  async #resolve(
    part: Part,
    text: string,
    message: PartitionedMessage,
    step: ChannelStep,
  ): Promise<void> {
    if (message.kind !== "event") return;
    const event = message.event;
    const disproof = await this.#disproof(part, text, message);
    if (this.#closed) return;
    if (disproof !== undefined) {
      this.#refuse(text, disproof);
      return;
    }
    if (step.action === "hole") {
      const names = part.broadcast ? undefined : [event.channel!];
      await this.#heal(part, message.epoch, step.first, step.last, names);
    } else {
      // A new epoch of this partition (Redis confirmed it): what came before is gone here; its
      // first events may be in the log.
      this.#lose(
        part,
        `Redis started epoch \`${message.epoch}\` in partition ${part.index} (it lost its data, restarted, or another server took over)`,
        message.epoch,
        0,
      );
      await this.#heal(part, message.epoch, 1, event.seq - 1, undefined, true);
    }
    if (this.#closed) return;
    const channel = event.channel === null ? undefined : part.channels.get(event.channel);
    if (channel !== undefined && channel.last !== "start" && event.seq <= channel.last) return;
    this.#advance(part, message.epoch, event);
  }

  /** Why Redis contradicts a message's claim, or undefined when it confirms it. */
  async #disproof(
    part: Part,
    text: string,
    message: PartitionedMessage & { kind: "event" },
  ): Promise<string | undefined> {
    const names = part.names;
    const reply = await this.#call(
      "confirm message",
      P_CHECK_SCRIPT,
      [names.meta, names.stream(message.event.channel), names.log],
      [message.epoch, String(message.event.seq), partitionedPayloadOf(text)],
    );
    const [epoch, seq, stored] = Array.isArray(reply) ? reply : [];
    if (epoch !== message.epoch) return `Redis is at epoch \`${String(epoch)}\``;
    if (Number(seq) < message.event.seq) return `Redis is at event ${Number(seq)}`;
    if (Number(stored) === -1) return `Redis holds another event ${message.event.seq}`;
    return undefined;
  }

  /**
   * Fetches events `first` to `last` of a partition from its log (of some channels, or all) and
   * delivers those this worker has not, in order. What the log no longer holds is a loss, but
   * for the first events of a new epoch (`afterLoss`): its seqs need not start at 1 (a promoted
   * replica counts on), and the loss was signalled already.
   */
  async #heal(
    part: Part,
    epoch: string,
    first: number,
    last: number,
    channels: readonly string[] | undefined,
    afterLoss = false,
  ): Promise<void> {
    if (last < first) return;
    const names = part.names;
    const reply = await this.#call(
      "heal events",
      P_HEAL_SCRIPT,
      [names.meta, names.log],
      [epoch, String(first), String(last), ...(channels ?? [])],
    );
    if (this.#closed) return;
    const [replyEpoch, , flat, oldest] = Array.isArray(reply) ? reply : [];
    const entries: unknown[] = Array.isArray(flat) ? flat : [];
    // The log is whole from its oldest entry on: it covers the range when that is at or
    // before `first` (or the range is past its end).
    const from = Number(oldest);
    const covered = replyEpoch === epoch && Number.isSafeInteger(from) && from > 0 &&
      from <= first;
    let healed = 0;
    for (let i = 0; i + 1 < entries.length && !this.#closed; i += 2) {
      const seq = Number(entries[i]);
      const event = decodePartitionedPayload(
        String(entries[i + 1]),
        0,
        part.index,
        epoch,
        seq,
        this.#n,
      );
      if (typeof event === "string") {
        this.#report(bridgeError(`Cannot heal event ${seq}: ${event}`, "malformed"));
        continue;
      }
      if (event.channel !== null) {
        const channel = part.channels.get(event.channel);
        if (channel === undefined || !channel.confirmed) continue;
        if (channel.last !== "start" && seq <= channel.last) continue;
      } else if (part.seen && part.seen.epoch === epoch && seq <= part.seen.seq) continue;
      this.#advance(part, epoch, event);
      healed++;
    }
    this.#stats.eventsHealed += healed;
    if (
      covered || afterLoss ||
      (replyEpoch === epoch && entries.length > 0 && Number(entries[0]) <= first)
    ) {
      if (healed > 0) this.#stats.holesHealed++;
      part.floor = Math.max(part.floor, last);
      return;
    }
    this.#lose(
      part,
      `events ${first} to ${last} of partition ${part.index} did not arrive and are gone from Redis's log (trimmed or expired)`,
      epoch,
      Math.max(last, part.seen?.epoch === epoch ? part.seen.seq : 0),
      channels,
    );
    part.floor = Math.max(part.floor, last);
    for (const channel of part.channels.values()) {
      if (channels !== undefined && !channels.includes(channel.name)) continue;
      if (channel.confirmed && (channel.last === "start" || channel.last < last)) {
        channel.last = last;
      }
    }
  }

  /** Takes the messages held during a confirmation, heal or audit, until one needs another. */
  #release(part: Part): void {
    part.busy = false;
    if (this.#closed || part.held === undefined) return;
    const audit = part.audit;
    if (audit?.checkpoint && audit.reply) {
      this.#finishAudit(part, audit);
      return;
    }
    if (blocked(part)) return;
    const held = part.held;
    while (held.length > 0 && !this.#closed) {
      this.#take(part, held.shift()!);
      if (blocked(part)) return;
    }
    part.held = undefined;
  }

  /** Moves live delivery of a partition to an event's place and delivers it. */
  #advance(part: Part, epoch: string, event: BridgeEvent): void {
    const seq = event.seq;
    const order = this.#orderOf(part, epoch, seq);
    this.#moveTo(part, epoch, seq);
    if (event.channel !== null) {
      const channel = part.channels.get(event.channel);
      if (channel !== undefined) channel.last = seq;
    }
    try {
      event.seq = order;
      event.partition = part.index;
      if (event.id !== undefined) event.id = part.component;
      this.#deliver(event);
    } catch (error) {
      this.#report(error);
    }
    this.#settle(part);
  }

  #orderOf(part: Part, epoch: string, seq: number): number {
    let base = part.bases.get(epoch);
    if (base === undefined) {
      // One past where the partition was: a new epoch's head (its seq 0) comes after every
      // older position, also across a time the partition was idle.
      base = part.top + 1;
      part.bases.set(epoch, base);
      if (part.bases.size > 8) part.bases.delete(part.bases.keys().next().value!);
    }
    return base + seq;
  }

  #moveTo(part: Part, epoch: string, seq: number): void {
    const seen = part.seen;
    const wasIdle = seen === undefined;
    if (seen !== undefined && seen.epoch === epoch && seq <= seen.seq) return;
    if (seen !== undefined && epoch !== seen.epoch) {
      part.generation++;
      part.floor = 0;
    }
    part.top = Math.max(part.top, this.#orderOf(part, epoch, seq));
    part.seen = { epoch, seq };
    part.component = encodeComponent(part.index, epoch, seq);
    if (wasIdle) this.#checkReady(part);
  }

  // ---- Audits (design §4.4) ----

  /** Events of a partition may have been missed: hold its messages until an audit healed them. */
  #suspect(part: Part): void {
    if (!part.live || !part.confirmed || this.#closed) return;
    part.suspect = true;
    part.held ??= [];
    if (part.audit !== undefined) part.audit.again = true;
    // An error with no reconnect after it (the connection did not really drop) holds the
    // partition for one timeout at most: it is audited then anyway.
    else if (part.retry === undefined) {
      part.retry = clock.setTimeout(
        () => {
          part.retry = undefined;
          this.#startAudit(part, false);
        },
        this.#timeout,
        undefined,
      );
    }
  }

  /**
   * Runs `P_HEAD` on a partition with the markers of its channels: the checkpoint comes on the
   * inbox after every message published before it, and the markers say which channel had an
   * event that did not arrive.
   */
  #startAudit(part: Part, hold: boolean, done?: (error?: unknown) => void): void {
    if (this.#closed || !part.live || !part.confirmed) return;
    if (hold) this.#suspect(part);
    if (part.audit !== undefined) {
      if (done) this.#afterAudit(part, done);
      return;
    }
    clock.clearTimeout(part.retry);
    part.retry = undefined;
    const channels = [...part.channels.values()].filter((c) => c.confirmed);
    const audit: Audit = {
      channels,
      reply: undefined,
      checkpoint: false,
      again: false,
      timer: undefined,
    };
    part.audit = audit;
    if (done) this.#afterAudit(part, done);
    // The checkpoint must come within half the timeout, else ask again (a move not followed
    // yet, a connection not back).
    audit.timer = clock.setTimeout(
      () => {
        if (part.audit !== audit || audit.checkpoint) return;
        part.audit = undefined;
        if (part.suspect || part.seen === undefined) this.#startAudit(part, false);
      },
      Math.max(1, Math.floor(this.#timeout / 2)),
      undefined,
    );
    this.#runHead(part, channels).then(([epoch, seq, markers]) => {
      if (part.audit !== audit) return;
      audit.reply = { epoch, seq, markers };
      if (audit.checkpoint && !part.busy) this.#finishAudit(part, audit);
    }, (error: unknown) => {
      if (part.audit !== audit) return;
      clock.clearTimeout(audit.timer);
      part.audit = undefined;
      this.#report(error);
      // A checkpoint that came first held the partition for this reply: let it go.
      if (audit.checkpoint && !part.suspect && !part.busy) this.#release(part);
      // Redis is unreachable: try again after a timeout while the partition needs it.
      if ((part.suspect || part.seen === undefined) && part.retry === undefined) {
        part.retry = clock.setTimeout(
          () => {
            part.retry = undefined;
            this.#startAudit(part, false);
          },
          this.#timeout,
          undefined,
        );
      }
    });
  }

  /** Calls `done` once the partition has a live position (or the bridge gives up). */
  #afterAudit(part: Part, done: (error?: unknown) => void): void {
    if (part.seen !== undefined) {
      done();
      return;
    }
    // The readiness of a synthetic channel-less waiter: a waiter on seq 0 of any epoch.
    const waiter: Waiter = {
      part,
      epoch: "",
      seq: 0,
      generation: -1,
      deadline: clock.now() + this.#timeout * 2,
      done: false,
      resolve: () => {
        waiter.done = true;
        done();
      },
      timeout: () =>
        done(
          bridgeError(
            `Cannot open Redis bridge: Redis did not answer within ${this.#timeout} ms`,
            "timeout",
          ),
        ),
    };
    this.#addWaiter(waiter);
  }

  /** An audit's checkpoint came while the partition is held. */
  #checkpointWhileHeld(part: Part, text: string): boolean {
    const message = decodePartitionedMessage(text, this.#n);
    if (typeof message === "string" || message.kind !== "head") return false;
    if (message.partition !== part.index) return false;
    const audit = part.audit;
    if (!this.#matches(audit, message.epoch, message.seq)) return false;
    audit!.checkpoint = true;
    if (audit!.reply && !part.busy) this.#finishAudit(part, audit!);
    return true;
  }

  #matches(audit: Audit | undefined, epoch: string, seq: number): boolean {
    if (audit === undefined || audit.checkpoint) return false;
    const reply = audit.reply;
    return reply === undefined || (reply.epoch === epoch && reply.seq === seq);
  }

  /** A checkpoint taken in order (nothing held). */
  #onCheckpoint(part: Part, epoch: string, seq: number): void {
    const audit = part.audit;
    if (!this.#matches(audit, epoch, seq)) return; // an old audit's, or not ours: nothing to do
    audit!.checkpoint = true;
    if (audit!.reply) this.#finishAudit(part, audit!);
    else part.held ??= []; // the reply is on its way: later messages wait for it
  }

  /** Heals what the audit's markers show, then moves the partition to its head. */
  #finishAudit(part: Part, audit: Audit): void {
    clock.clearTimeout(audit.timer);
    part.held ??= [];
    part.busy = true;
    this.#audited(part, audit).catch((error: unknown) => {
      // Unhealed: the partition stays held and is audited again until one completes.
      this.#report(error);
      part.suspect = true;
      audit.again = true;
    }).finally(() => {
      if (part.audit === audit) part.audit = undefined;
      part.auditedAt = clock.now();
      if (audit.again && part.live) {
        part.busy = false;
        this.#startAudit(part, false);
        return;
      }
      part.suspect = false;
      this.#release(part);
    });
  }

  async #audited(part: Part, audit: Audit): Promise<void> {
    const { epoch, seq: head, markers } = audit.reply!;
    const seen = part.seen;
    if (seen === undefined) {
      this.#moveTo(part, epoch, head);
    } else if (epoch !== seen.epoch) {
      // Redis itself answered: a new epoch of this partition, what came before is gone here.
      this.#lose(
        part,
        `Redis started epoch \`${epoch}\` in partition ${part.index} (it lost its data, restarted, or another server took over)`,
        epoch,
        0,
      );
      const names = audit.channels.filter((_, i) => markers[i]?.epoch === epoch).map((c) => c.name);
      if (names.length > 0 || part.broadcast) {
        await this.#heal(part, epoch, 1, head, part.broadcast ? undefined : names, true);
      }
    } else if (head < seen.seq) {
      this.#lose(part, `Redis went back from event ${seen.seq} to ${head}`, epoch, head);
      for (const channel of part.channels.values()) {
        if (channel.last !== "start" && channel.last > head) channel.last = head;
      }
    } else if (part.broadcast) {
      if (head > seen.seq) await this.#heal(part, epoch, seen.seq + 1, head, undefined);
    } else {
      // A channel whose last event (its marker, read with the head) is past what was delivered
      // of it missed events (or they wait in the held queue: healed with the rest).
      let first = Infinity;
      const names: string[] = [];
      audit.channels.forEach((channel, i) => {
        const marker = markers[i];
        if (marker === undefined || marker.epoch !== epoch || marker.seq > head) return;
        if (part.channels.get(channel.name) !== channel) return;
        if (channel.last === "start" || marker.seq <= channel.last) return;
        names.push(channel.name);
        first = Math.min(first, channel.last + 1);
      });
      if (names.length > 0) await this.#heal(part, epoch, first, head, names);
    }
    if (this.#closed) return;
    this.#moveTo(part, epoch, head);
    part.floor = Math.max(part.floor, head);
    // No event of a confirmed channel at or below the head can come any more.
    for (const channel of part.channels.values()) {
      if (channel.confirmed && (channel.last === "start" || channel.last < head)) {
        channel.last = head;
      }
    }
    this.#settle(part);
  }

  #armAudits(): void {
    clock.clearTimeout(this.#auditTimer);
    if (this.#closed) return;
    this.#auditTimer = clock.setTimeout(this.#auditAll, this.#auditInterval, this);
  }

  #auditAll = (): void => {
    const now = clock.now();
    for (const part of this.#parts) {
      if (part.live && part.audit === undefined && now - part.auditedAt >= this.#auditInterval) {
        this.#startAudit(part, false);
      }
    }
    this.#armAudits();
  };

  #onConnected = (): void => {
    if (this.#closed) return;
    this.#down = false;
    for (const part of this.#parts) if (part.live) this.#startAudit(part, true);
  };

  #onConnectionError = (error: unknown): void => {
    if (this.#closed) return;
    for (const part of this.#parts) this.#suspect(part);
    if (this.#down) return;
    this.#down = true;
    this.#report(
      bridgeError(
        `Cannot reach Redis: the connection failed: ${messageOf(error)}`,
        "unavailable",
        error,
      ),
    );
  };

  #onMoved = (_channels: readonly string[]): void => {
    if (this.#closed) return;
    // The push does not always say which: every live partition is audited.
    for (const part of this.#parts) if (part.live) this.#startAudit(part, true);
  };

  // ---- Losses ----

  /**
   * Events of a partition are gone for good: the partition moves to `seq` of `epoch`, then the
   * broker's clients with a channel in it get the gap signal (with their new ids).
   */
  #lose(
    part: Part,
    why: string,
    epoch: string,
    seq: number,
    lost?: readonly string[],
  ): void {
    const after = part.component;
    const renewed = part.seen !== undefined && part.seen.epoch !== epoch;
    const order = this.#orderOf(part, epoch, seq);
    this.#moveTo(part, epoch, seq);
    const confirmed = [...part.channels.values()].filter((c) => c.confirmed);
    // A new epoch counts again: what the channels had is of the old one.
    if (renewed) { for (const channel of confirmed) channel.last = seq; }
    const head = { seq: order, id: part.component ?? "" };
    const channels = part.broadcast ? null : lost ? [...lost] : confirmed.map((c) => c.name);
    this.#stats.losses++;
    this.#report(
      bridgeError(
        `Cannot deliver every event: ${why}; this worker's clients get the gap signal and go on from \`${head.id}\``,
        "lost",
      ),
    );
    try {
      this.#lost({ channels, after, head, partition: part.index });
    } catch (error) {
      this.#report(error);
    }
    this.#settle(part);
  }

  // ---- Waiters ----

  /** Resolves once live delivery of a partition reached `seq` of `epoch` (or a newer epoch). */
  #wait(part: Part, epoch: string, seq: number, what: "publish" | "replay"): Promise<void> {
    if (this.#settled(part, epoch, seq, part.generation)) return Promise.resolve();
    if (this.#closed) return Promise.reject(closedError(`confirm ${what}`));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        part,
        epoch,
        seq,
        generation: part.generation,
        deadline: clock.now() + this.#timeout,
        done: false,
        resolve: () => {
          waiter.done = true;
          clock.clearTimeout(waiter.late);
          resolve();
        },
        timeout: () => {
          waiter.done = true;
          clock.clearTimeout(waiter.late);
          if (this.#closed) {
            reject(closedError(`confirm ${what}`));
            return;
          }
          reject(
            bridgeError(
              `Cannot confirm ${what}: event ${seq} of partition ${part.index} did not come back on the Redis subscription within ${this.#timeout} ms`,
              "timeout",
            ),
          );
        },
      };
      this.#addWaiter(waiter);
      // An echo late by half the timeout: the partition may have missed it, an audit heals.
      if (what === "publish") {
        waiter.late = clock.setTimeout(
          () => {
            if (!waiter.done && !this.#closed) this.#startAudit(part, true);
          },
          Math.max(1, Math.floor(this.#timeout / 2)),
          undefined,
        );
      }
    });
  }

  #addWaiter(waiter: Waiter): void {
    waiter.part.waiters.push(waiter);
    this.#waiters.push(waiter);
    if (this.#waiters.length === 1) this.#armWaiters();
  }

  #settled(part: Part, epoch: string, seq: number, generation: number): boolean {
    const seen = part.seen;
    if (seen === undefined) return false;
    if (generation < 0) return true; // a readiness waiter: any live position
    return (seen.epoch === epoch && seen.seq >= seq) ||
      (seen.epoch !== epoch && generation < part.generation);
  }

  #settle(part: Part): void {
    if (part.waiters.length === 0) return;
    const left: Waiter[] = [];
    for (const waiter of part.waiters) {
      if (waiter.done) continue;
      if (this.#settled(part, waiter.epoch, waiter.seq, waiter.generation)) waiter.resolve();
      else left.push(waiter);
    }
    part.waiters = left;
  }

  #armWaiters(): void {
    clock.clearTimeout(this.#waitTimer);
    this.#waitTimer = undefined;
    while (this.#waiters[0]?.done) this.#waiters.shift();
    const first = this.#waiters[0];
    if (first === undefined) return;
    this.#waitTimer = clock.setTimeout(
      this.#expireWaiters,
      Math.max(0, first.deadline - clock.now()),
      this,
    );
  }

  #expireWaiters = (): void => {
    const now = clock.now();
    while (true) {
      const first = this.#waiters[0];
      if (first === undefined || (!first.done && first.deadline > now)) break;
      this.#waiters.shift();
      if (!first.done) first.timeout();
    }
    this.#armWaiters();
  };

  // ---- Redis ----

  /** Runs `P_HEAD`: the head of a partition and its channels' markers; a checkpoint to the inbox. */
  async #runHead(
    part: Part,
    channels: readonly Channel[],
  ): Promise<[string, number, (Position | undefined)[]]> {
    const names = part.names;
    const reply = await this.#call(
      "check position",
      P_HEAD_SCRIPT,
      [names.meta, part.inbox, ...channels.map((c) => names.marker(c.name))],
      this.#common(part.index),
    );
    const [epoch, seq] = parseHead(reply, "check position");
    const list = reply as unknown[];
    const markers = channels.map((_, i) => parseMarker(list[i + 2]));
    return [epoch, seq, markers];
  }

  async #ready(action: string): Promise<void> {
    if (this.#closed) throw closedError(action);
    if (!this.#opened) throw bridgeError(`Cannot ${action}: the bridge is not open`, "closed");
    try {
      await this.#opened;
    } catch (error) {
      throw bridgeError(
        `Cannot ${action}: the subscription failed: ${messageOf(error)}`,
        "unavailable",
        error,
      );
    }
    if (!this.#adapter.ready()) {
      throw bridgeError(`Cannot ${action}: Redis is unreachable`, "unavailable");
    }
  }

  /** The database number of the command connection, which is where the keys are. */
  async #database(): Promise<number> {
    let info: unknown;
    try {
      info = await this.#within(this.#adapter.command(["CLIENT", "INFO"]), "find database");
    } catch (error) {
      if (/unknown (sub)?command/i.test(messageOf(error))) return 0;
      throw error;
    }
    const db = /(?:^|\s)db=(\d+)/.exec(String(info))?.[1];
    return db === undefined ? 0 : Number(db);
  }

  /**
   * Runs a script (see `runScript` in `_calls.ts`); a prefix whose partition count in Redis is not
   * this bridge's fails loudly, as every worker of an app must hash channels alike.
   */
  async #call(action: string, script: string, keys: string[], args: string[]): Promise<unknown> {
    let reply: unknown;
    try {
      reply = await runScript(this.#runner, action, script, keys, args);
    } catch (error) {
      const other = /\bPARTITIONS (\d+)/.exec(messageOf((error as Error).cause ?? ""))?.[1];
      if (other === undefined) throw error;
      throw bridgeError(
        `Cannot ${action}: the prefix has ${other} partitions in Redis, this bridge ${this.#n}`,
        "unavailable",
        (error as Error).cause,
      );
    }
    if (Array.isArray(reply) && reply[0] === this.#candidateValue) this.#candidateValue = undefined;
    return reply;
  }

  #within<T>(promise: Promise<T>, action: string): Promise<T> {
    return within(promise, action, this.#timeout);
  }

  /** What `runScript` needs of this bridge. */
  get #runner(): ScriptRunner {
    return {
      adapter: this.#adapter,
      shas: this.#shas,
      timeout: this.#timeout,
      closed: () => this.#closed,
    };
  }

  /** The ARGV every script that may start an epoch takes first: epoch, `n`, `S`, `k`. */
  #common(k: number): string[] {
    return [this.#candidate, String(this.#n), this.#publish, String(k)];
  }

  get #candidate(): string {
    return this.#candidateValue ??= newEpoch();
  }

  [bridgeStats](): BridgeStats {
    return { ...this.#stats };
  }

  /** Reports a message that is skipped: it neither moves a position nor is delivered. */
  #refuse(text: string, why: string): void {
    this.#stats.messagesRefused++;
    this.#report(
      bridgeError(
        `Cannot deliver message: ${why}, got \`${String(text).slice(0, 80)}\``,
        "malformed",
      ),
    );
  }

  #report = (error: unknown): void => {
    try {
      this.#onError(
        error instanceof RedisBridgeError
          ? error
          : bridgeError(`Cannot run Redis bridge: ${messageOf(error)}`, "unavailable", error),
      );
    } catch {
      // A throwing onError must not break delivery.
    }
  };
}

/**
 * Whether a partition's messages must wait: a confirmation, heal or audit runs, events may have
 * been missed, or an audit's checkpoint came before its reply.
 */
function blocked(part: Part): boolean {
  return part.busy || part.suspect || (part.audit?.checkpoint === true && !part.audit.reply);
}

function component(p: number, position: Position): string {
  return encodeComponent(p, position.epoch, position.seq);
}

/** A marker's value, `<epoch> <seq>`, or undefined. */
function parseMarker(value: unknown): Position | undefined {
  if (typeof value !== "string") return undefined;
  const match = /^(\S+) (\d+)$/.exec(value);
  return match ? { epoch: match[1]!, seq: Number(match[2]) } : undefined;
}

/** A random worker name for the inboxes: 12 base-36 characters. */
function randomName(): string {
  return Array.from(crypto.getRandomValues(new Uint32Array(2)), (n) => n.toString(36)).join("");
}

function closedError(action: string): RedisBridgeError {
  return bridgeError(`Cannot ${action}: the bridge is closed`, "closed");
}
