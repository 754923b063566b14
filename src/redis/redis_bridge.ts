import type { Bridge, BridgeEvent, BridgeGap, BridgeReplay, HistoryLimits } from "../bridge.ts";
import { type BridgeStats, bridgeStats, type ReportsBridgeStats } from "../_bridge_stats.ts";
import { clock, type TimerHandle } from "../_clock.ts";
import { MAX_ID_LENGTH } from "../_wire.ts";
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
  decodeMessage,
  decodePayload,
  encodePayload,
  type Message,
  payloadOf,
} from "./_message.ts";
import {
  CHECK_SCRIPT,
  HEAD_SCRIPT,
  HEAL_SCRIPT,
  PUBLISH_SCRIPT,
  REPLAY_SCRIPT,
} from "./_scripts.ts";
import { type Claim, nextStep, type Position, type Step } from "./_sequence.ts";
import { PartitionedRedisBridge } from "./partitioned_bridge.ts";
import type { RedisBridgeAdapter } from "./redis_bridge_adapter.ts";
import { RedisBridgeError } from "./redis_bridge_error.ts";
import type { RedisBridgeOptions } from "./redis_bridge_options.ts";

export type { RedisBridgeOptions } from "./redis_bridge_options.ts";

interface Waiter {
  epoch: string;
  seq: number;
  /** The number of epoch changes seen when it was made: a newer epoch settles it. */
  generation: number;
  deadline: number;
  resolve(): void;
  timeout(): void;
}

/** How long history lives in Redis after its channel's last publish or replay, by default. */
const DEFAULT_TTL = 3_600_000;
/** Events kept in the heal log by default. */
const DEFAULT_HEAL_WINDOW = 10_000;

/**
 * A prefix with a Redis hash tag: a `{`, then the first `}` after it with something between
 * (Redis hashes only that part of a key, so every key with the prefix lands on one slot).
 */
const HASH_TAG = /^[^{]*\{[^}]+\}/;

/** The ids the bridge makes: `<epoch>-<seq>`. */
const ID = /^([0-9a-z]{1,16})-([0-9]{1,15})$/;

function noop(): void {}

/**
 * A {@linkcode Bridge} over Redis: a broker on every worker (and host) that shares it delivers
 * every event published on any of them, once, in one order, and replays history from Redis,
 * so a client's `Last-Event-ID` resumes on any worker.
 *
 * Bring your own client (npm `redis`, `ioredis` or Bun's built-in `RedisClient`): two
 * connected connections, one for commands and one for the subscription. The bridge adds
 * listeners to them and removes them on `broker.close()`; it never connects or quits them.
 *
 * A worker whose subscription missed events (Redis dropped it, or a message got lost) fetches
 * them from a log in Redis (`healWindow` events long) and delivers them in order: no stream
 * ends. When they are gone for good (Redis restarted without persistence, or they fell out of
 * the log), the broker's clients get the gap signal on their open streams and go on.
 * `broker.metrics()` counts both.
 *
 * History keys expire the broker's `historyTtl` after their channel's last publish or replay
 * (an hour when the bridge is opened without limits), and a client whose history is gone gets
 * the gap signal, never a hole. Redis's `maxmemory` (with `volatile-ttl`) is the byte budget:
 * the cost per channel and the settings are in docs/scaling-out.md, "History in Redis".
 *
 * @param options The two connections (or an adapter), the key prefix, the timeout, the heal
 * window, `onError`.
 * @returns The bridge, for `new Broker({ bridge })`.
 * @throws {TypeError} The clients are not of a known kind, or are one connection.
 * @throws {RangeError} `timeout` is not a positive integer, or `healWindow` not a non-negative one.
 *
 * @example Share a broker between workers with npm `redis`
 *
 * Not run as a test: it needs a running Redis (the repository's Redis suites run it for real).
 * ```ts ignore
 * import { Broker } from "@flume/sse";
 * import { redisBridge } from "@flume/sse/redis";
 * import { createClient } from "redis";
 *
 * const client = createClient({ url: "redis://127.0.0.1:6379" });
 * const subscriber = client.duplicate();
 * await Promise.all([client.connect(), subscriber.connect()]);
 * const broker = new Broker({ history: 100, bridge: redisBridge({ client, subscriber }) });
 * ```
 */
export function redisBridge(options: RedisBridgeOptions): Bridge {
  return options.partitions === undefined
    ? new RedisBridge(options)
    : new PartitionedRedisBridge(options);
}

class RedisBridge implements Bridge, ReportsBridgeStats {
  readonly #adapter: RedisBridgeAdapter;
  /** `S` when the clients are Redis Cluster clients: the channel is then a shard channel. */
  readonly #publish: "S" | "";
  readonly #prefix: string;
  /** The pub/sub channel: set on open, once the database number is known (see `#subscribe`). */
  #channel: string;
  readonly #meta: string;
  /** The watermark hash (see `_scripts.ts`): what a channel whose keys are all gone had at most. */
  readonly #watermark: string;
  /** The heal log: every event, for a worker that missed some. */
  readonly #log: string;
  readonly #healWindow: number;
  readonly #timeout: number;
  /** Ms that a stream lives after its channel's last publish or replay; set on open. */
  #ttl = DEFAULT_TTL;
  readonly #onError: (error: RedisBridgeError) => void;
  /**
   * The epoch this bridge starts in Redis when there is none: whoever comes first wins. Made on
   * first use: Cloudflare Workers refuse random values at module scope.
   */
  #candidateValue: string | undefined;
  readonly #shas = new Map<string, Promise<string>>();
  #deliver: (event: BridgeEvent) => void = noop;
  #lost: (gap: BridgeGap) => void = noop;
  readonly #stats: BridgeStats = { eventsHealed: 0, holesHealed: 0, losses: 0, messagesRefused: 0 };
  /** A checkpoint asked for after a publish timed out is under way. */
  #checkpointing = false;
  #listening: Promise<() => Promise<void>> | undefined;
  /** The HEAD script of the last (re)connect: publishes wait for it. */
  #head: Promise<void> = Promise.resolve();
  /** Where live delivery is; undefined until the first message. */
  #position: Position | undefined;
  #generation = 0;
  /**
   * Where each epoch's seqs start in the order the broker sees: Redis counts again from 1 after it
   * lost its data, while `BridgeEvent.seq` must keep growing (the broker compares held events by
   * it). An epoch's base is one past the broker-facing seq of the last position before it.
   */
  #bases = new Map<string, number>();
  /**
   * Messages that arrived while Redis is asked to confirm an earlier one: they wait, in order,
   * so that nothing overtakes it. Undefined when no confirmation is under way.
   */
  #held: string[] | undefined;
  #waiters: Waiter[] = [];
  #timer: TimerHandle | undefined;
  #down = false;
  #closed = false;

  constructor(options: RedisBridgeOptions) {
    let cluster = false;
    if (options.adapter) this.#adapter = options.adapter;
    else {
      if (!options.client || !options.subscriber) {
        throw new TypeError(
          "Cannot create Redis bridge: pass `client` and `subscriber` (two connections), or an `adapter`",
        );
      }
      // On a Cluster the scripts publish with SPUBLISH: only the slot's master carries events.
      cluster = isClusterClient(options.client);
      this.#adapter = adapterFor(options.client, options.subscriber, { sharded: cluster });
    }
    this.#publish = cluster ? "S" : "";
    const prefix: unknown = options.prefix ?? "flume:";
    if (typeof prefix !== "string") {
      throw new TypeError(
        `Cannot create Redis bridge: \`prefix\` must be a string, got \`${typeOf(prefix)}\``,
      );
    }
    // Every key and the channel start with the prefix: its hash tag puts them all on one slot,
    // which the scripts (several keys each) and the one order need.
    if (cluster && !HASH_TAG.test(prefix)) {
      throw new TypeError(
        `Cannot create Redis bridge: on a Redis Cluster \`prefix\` must contain a hash tag, e.g. \`{myapp}:\`, so that every key lands on one slot, got \`${prefix}\``,
      );
    }
    this.#prefix = prefix;
    this.#channel = channelName(prefix, 0);
    this.#meta = `${prefix}meta`;
    this.#watermark = `${prefix}w`;
    this.#log = `${prefix}log`;
    this.#healWindow = checkNonNegativeInteger(
      "Redis bridge",
      "healWindow",
      options.healWindow,
      DEFAULT_HEAL_WINDOW,
    );
    this.#timeout = checkPositiveInteger("Redis bridge", "timeout", options.timeout, 5_000);
    this.#onError = options.onError ?? ((error) => console.error("Redis bridge:", error));
  }

  async open(
    deliver: (event: BridgeEvent) => void,
    lost?: (gap: BridgeGap) => void,
    limits?: HistoryLimits,
  ): Promise<void> {
    // Only the lifetime: Redis's own `maxmemory` is the byte budget (see docs/scaling-out.md).
    const ttl = limits?.ttl ?? DEFAULT_TTL;
    if (!Number.isSafeInteger(ttl) || ttl <= 0) {
      throw new RangeError(
        `Cannot open Redis bridge: \`ttl\` must be a positive integer, got \`${String(ttl)}\``,
      );
    }
    this.#ttl = ttl;
    this.#deliver = deliver;
    this.#lost = lost ?? noop;
    this.#listening = this.#subscribe();
    this.#listening.catch(noop);
    await this.#listening;
    // The first checkpoint gives this worker its place in the order even when nothing is
    // published, so that a replay can tell when live delivery has caught up with it.
    const head = this.#runHead();
    this.#head = head.then(noop, noop);
    const [epoch, seq] = await head;
    await this.#wait(epoch, seq, "open").catch(this.#report);
  }

  async publish(
    event: { channel: string | null; body: string; id?: string },
    history: number,
  ): Promise<BridgeEvent> {
    await this.#ready("publish event");
    const id = event.id;
    const payload = encodePayload(
      event.channel,
      id ?? (history > 0 ? true : undefined),
      event.body,
    );
    const reply = await this.#call(
      "publish event",
      PUBLISH_SCRIPT,
      [
        this.#meta,
        this.#channel,
        this.#streamKey(event.channel),
        this.#markerKey(event.channel),
        this.#watermark,
        this.#log,
        this.#indexKey(event.channel),
      ],
      [
        this.#candidate,
        payload,
        String(history),
        id ?? "",
        String(this.#ttl),
        String(this.#healWindow),
        this.#publish,
      ],
    );
    const [epoch, seq] = parseHead(reply, "publish event");
    // Resolve only once the event came back through the subscription and went to `deliver`:
    // local subscribers then have it queued, in the same order as everywhere.
    await this.#wait(epoch, seq, "publish");
    return {
      channel: event.channel,
      seq: (this.#bases.get(epoch) ?? 0) + seq,
      id: id ?? (history > 0 ? `${epoch}-${seq}` : undefined),
      body: event.body,
    };
  }

  async replay(channels: readonly string[], lastEventId: string): Promise<BridgeReplay> {
    await this.#ready("replay events");
    // A client controls the header: an id longer than any the broker takes is not looked up.
    const usable = lastEventId.length <= MAX_ID_LENGTH;
    const ours = usable ? ID.exec(lastEventId) : null;
    const reply = await this.#call(
      "replay events",
      REPLAY_SCRIPT,
      [
        this.#meta,
        this.#watermark,
        ...[null, ...channels].flatMap((c) => [
          this.#streamKey(c),
          this.#markerKey(c),
          this.#indexKey(c),
        ]),
      ],
      [
        this.#candidate,
        usable ? lastEventId : "",
        ours?.[1] ?? "",
        ours?.[2] ?? "",
        this.#channel,
        String(this.#ttl),
        this.#publish,
      ],
    );
    const [epoch, headSeq] = parseHead(reply, "replay events");
    const [, , known, gapList, flat] = reply as unknown[];
    // The broker drops live events up to `head` for this client, so every one of them must
    // have gone through `deliver` before it gets the replay: the subscription can lag behind
    // the command connection.
    if (headSeq > 0) await this.#wait(epoch, headSeq, "replay");
    const base = this.#bases.get(epoch);
    if (base === undefined) {
      // An epoch live delivery has not taken (yet, or ever): its positions cannot be placed in
      // the broker's order, so the client gets the gap signal from where delivery is now.
      const position = this.#position;
      const seq = position === undefined ? 0 : this.#orderOf(position.epoch, position.seq);
      return {
        events: [],
        gaps: [...channels],
        head: { seq, id: position ? `${position.epoch}-${position.seq}` : `${epoch}-${headSeq}` },
      };
    }
    const head = { seq: base + headSeq, id: `${epoch}-${headSeq}` };
    if (Number(known) !== 1) return { events: [], gaps: [...channels], head };
    const result = this.#replayed(channels, epoch, gapList, flat, head);
    for (const event of result.events) event.seq += base;
    return result;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#deliver = noop;
    this.#lost = noop;
    this.#held = undefined;
    const waiters = this.#waiters;
    this.#waiters = [];
    clock.clearTimeout(this.#timer);
    for (const waiter of waiters) waiter.timeout();
    const unlisten = await this.#listening?.catch(noop);
    if (!unlisten) return;
    try {
      await this.#within(unlisten(), "unsubscribe");
    } catch (error) {
      this.#report(error);
    }
  }

  /**
   * Subscribes to the channel of this bridge's database. Redis pub/sub ignores the database
   * number, so two apps on one server with one prefix, on db 0 and db 1, would otherwise
   * read each other's messages as their own.
   */
  async #subscribe(): Promise<() => Promise<void>> {
    this.#channel = channelName(this.#prefix, await this.#database());
    return this.#adapter.listen(this.#channel, {
      message: this.#onMessage,
      connected: this.#onConnected,
      error: this.#onConnectionError,
    });
  }

  /** The database number of the command connection, which is where the keys are. */
  async #database(): Promise<number> {
    let info: unknown;
    try {
      info = await this.#within(this.#adapter.command(["CLIENT", "INFO"]), "find database");
    } catch (error) {
      // Redis before 6.2 has no CLIENT INFO: the channel is then the same for every database.
      if (/unknown (sub)?command/i.test(messageOf(error))) return 0;
      throw error;
    }
    const db = /(?:^|\s)db=(\d+)/.exec(String(info))?.[1];
    return db === undefined ? 0 : Number(db);
  }

  #replayed(
    channels: readonly string[],
    epoch: string,
    gapList: unknown,
    flat: unknown,
    head: { seq: number; id: string },
  ): BridgeReplay {
    const gaps = new Set<string>();
    for (const n of Array.isArray(gapList) ? gapList : []) {
      // Stream 1 is the broadcasts: a broadcast lost is lost on every channel.
      const channel = channels[Number(n) - 2];
      if (Number(n) === 1) channels.forEach((c) => gaps.add(c));
      else if (channel !== undefined) gaps.add(channel);
    }
    const events: BridgeEvent[] = [];
    const entries: unknown[] = Array.isArray(flat) ? flat : [];
    for (let i = 0; i + 1 < entries.length; i += 2) {
      const seq = Number(entries[i]);
      const event = decodePayload(String(entries[i + 1]), 0, epoch, seq);
      if (typeof event === "string") {
        this.#report(
          new RedisBridgeError(`Cannot replay event ${seq}: ${event}`, { reason: "malformed" }),
        );
        channels.forEach((c) => gaps.add(c));
      } else events.push(event);
    }
    events.sort((a, b) => a.seq - b.seq);
    return { events, gaps: [...gaps], head };
  }

  get #candidate(): string {
    return this.#candidateValue ??= Array.from(
      crypto.getRandomValues(new Uint32Array(2)),
      (n) => n.toString(36),
    ).join("");
  }

  #streamKey(channel: string | null): string {
    return channel === null ? `${this.#prefix}b` : `${this.#prefix}c:${channel}`;
  }

  /** A channel's caller ids → the seq of the newest stored event with that id. */
  #indexKey(channel: string | null): string {
    return channel === null ? `${this.#prefix}ib` : `${this.#prefix}i:${channel}`;
  }

  [bridgeStats](): BridgeStats {
    return { ...this.#stats };
  }

  /** Where the seq of a channel's last event outlives its stream; broadcasts keep it in meta. */
  #markerKey(channel: string | null): string {
    return channel === null ? this.#meta : `${this.#prefix}l:${channel}`;
  }

  async #ready(action: string): Promise<void> {
    if (this.#closed) throw bridgeError(`Cannot ${action}: the bridge is closed`, "closed");
    if (!this.#listening) throw bridgeError(`Cannot ${action}: the bridge is not open`, "closed");
    try {
      await this.#listening;
    } catch (error) {
      throw bridgeError(
        `Cannot ${action}: the subscription failed: ${messageOf(error)}`,
        "unavailable",
        error,
      );
    }
    await this.#head;
    if (!this.#adapter.ready()) {
      throw bridgeError(`Cannot ${action}: Redis is unreachable`, "unavailable");
    }
  }

  /** Runs a script (see `runScript` in `_calls.ts`), noting when ours became the epoch. */
  async #call(action: string, script: string, keys: string[], args: string[]): Promise<unknown> {
    const reply = await runScript(this.#runner, action, script, keys, args);
    // Ours became the epoch: the next one (after Redis loses it) must differ.
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

  /** Runs the HEAD script: a new epoch if Redis changed, and a checkpoint on the channel. */
  async #runHead(): Promise<[string, number]> {
    const reply = await this.#call("check position", HEAD_SCRIPT, [this.#meta, this.#channel], [
      this.#candidate,
      this.#publish,
    ]);
    return parseHead(reply, "check position");
  }

  /** Resolves once live delivery has reached `seq` of `epoch` (or moved on to a newer epoch). */
  #wait(epoch: string, seq: number, what: "publish" | "replay" | "open"): Promise<void> {
    if (this.#settled(epoch, seq, this.#generation)) return Promise.resolve();
    if (this.#closed) {
      return Promise.reject(bridgeError(`Cannot confirm ${what}: the bridge is closed`, "closed"));
    }
    return new Promise((resolve, reject) => {
      this.#waiters.push({
        epoch,
        seq,
        generation: this.#generation,
        deadline: clock.now() + this.#timeout,
        resolve,
        timeout: () => {
          if (this.#closed) {
            reject(bridgeError(`Cannot confirm ${what}: the bridge is closed`, "closed"));
            return;
          }
          reject(
            bridgeError(
              `Cannot confirm ${what}: event ${seq} did not come back on the Redis subscription within ${this.#timeout} ms`,
              "timeout",
            ),
          );
          // The subscription is down or far behind, or lost this event on a quiet channel: a
          // checkpoint makes it find the hole (if any) and heal it from the log.
          if (what === "publish") this.#checkpoint();
        },
      });
      if (this.#waiters.length === 1) this.#arm();
    });
  }

  #settled(epoch: string, seq: number, generation: number): boolean {
    const position = this.#position;
    if (position === undefined) return false;
    return (position.epoch === epoch && position.seq >= seq) ||
      (position.epoch !== epoch && generation < this.#generation);
  }

  /** One timer for the oldest waiter: waiters come in order, so deadlines do too. */
  #arm(): void {
    clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    const first = this.#waiters[0];
    if (!first) return;
    this.#timer = clock.setTimeout(this.#expire, Math.max(0, first.deadline - clock.now()), this);
  }

  #expire = (): void => {
    const now = clock.now();
    while (true) {
      const first = this.#waiters[0];
      if (first === undefined || first.deadline > now) break;
      this.#waiters.shift();
      first.timeout();
    }
    this.#arm();
  };

  #settle(): void {
    const waiters = this.#waiters;
    let n = 0;
    for (const waiter of waiters) {
      if (!this.#settled(waiter.epoch, waiter.seq, waiter.generation)) break;
      waiter.resolve();
      n++;
    }
    if (n === 0) return;
    waiters.splice(0, n);
    this.#arm();
  }

  // ---- Live delivery: decode, decide, (confirm,) act ----

  #onMessage = (text: string): void => {
    if (this.#closed) return;
    if (this.#held !== undefined) this.#held.push(text);
    else this.#take(text);
  };

  /** Takes one message in order: the sequence decision says what it is. */
  #take(text: string): void {
    const message = this.#decode(text);
    if (message === undefined) return;
    const claim = claimOf(message);
    const step = nextStep(this.#position, claim);
    switch (step.action) {
      case "deliver":
      case "checkpoint":
        this.#advance(message);
        return;
      case "duplicate":
        this.#refuse(text, `event ${claim.seq} was delivered already`);
        return;
      default:
        this.#confirm(text, message, step);
    }
  }

  /** Decodes a message, reporting and skipping what the bridge did not write. */
  #decode(text: string): Message | undefined {
    const message = decodeMessage(text);
    if (typeof message !== "string") return message;
    this.#refuse(text, message);
    return undefined;
  }

  /**
   * A message that says this worker missed events is a claim anyone who can publish on the
   * channel can make: acting on a false one would signal a gap to every client and then drop
   * every real event as delivered already. Redis (the epoch key, the log and the stream) has
   * the last word; later messages wait meanwhile so that none overtakes it, nor the events
   * fetched to fill a hole.
   */
  #confirm(text: string, message: Message, step: Step): void {
    this.#held = [];
    this.#resolve(text, message, step).catch((error: unknown) => {
      // Unconfirmed (or unhealed) is refused: after an outage the next checkpoint asks again.
      this.#refuse(text, `Redis could not confirm it: ${messageOf(error)}`);
    }).finally(this.#release);
  }

  /** Confirms a claim, then heals the hole or reports the loss, then takes the message. */
  async #resolve(text: string, message: Message, step: Step): Promise<void> {
    const disproof = await this.#disproof(text, message, step);
    if (this.#closed) return;
    if (disproof !== undefined) {
      this.#refuse(text, disproof);
      return;
    }
    const claim = claimOf(message);
    if (step.action === "hole") await this.#heal(claim.epoch, step.first, step.last);
    else if (step.action === "rewind") {
      this.#lose(lossOf(step, message, this.#position), claim.epoch, claim.seq);
    } else {
      // A new epoch: what came before it is gone, but its own first events may be in the log
      // (published before this worker's subscription saw the checkpoint that announced it).
      const last = message.kind === "event" ? claim.seq - 1 : claim.seq;
      await this.#heal(claim.epoch, 1, last, lossOf(step, message, this.#position));
    }
    if (!this.#closed) this.#advance(message);
  }

  /**
   * Fetches events `first` to `last` from the heal log and delivers them in order. What the
   * log no longer holds (trimmed, expired) is a loss: the broker is told, then the rest goes.
   * With `lost` (a new epoch) the broker is told of a loss in any case.
   */
  async #heal(epoch: string, first: number, last: number, lost?: string): Promise<void> {
    const reply = await this.#call(
      "heal events",
      HEAL_SCRIPT,
      [this.#meta, this.#log],
      [epoch, String(first), String(last)],
    );
    if (this.#closed) return;
    const entries: unknown[] = Array.isArray(reply) && Array.isArray(reply[2]) ? reply[2] : [];
    // The log is whole from its oldest entry on: what it has of the hole is its end.
    const events: BridgeEvent[] = [];
    let missing = last;
    for (let i = entries.length - 2; i >= 0 && missing >= first; i -= 2) {
      const seq = Number(entries[i]);
      if (seq !== missing) break;
      const event = decodePayload(String(entries[i + 1]), 0, epoch, seq);
      if (typeof event === "string") {
        this.#report(
          bridgeError(`Cannot heal event ${seq}: ${event}`, "malformed"),
        );
        break;
      }
      events.push(event);
      missing--;
    }
    if (lost !== undefined) this.#lose(lost, epoch, missing);
    else if (missing >= first) {
      this.#lose(
        `events ${first} to ${missing} did not arrive and are gone from Redis's log (trimmed or expired)`,
        epoch,
        missing,
      );
    } else this.#stats.holesHealed++;
    this.#stats.eventsHealed += events.length;
    for (let i = events.length - 1; i >= 0 && !this.#closed; i--) {
      this.#advance({ kind: "event", epoch, event: events[i]! });
    }
  }

  /** Why Redis contradicts a message's claim, or undefined when it confirms it. */
  async #disproof(text: string, message: Message, step: Step): Promise<string | undefined> {
    const claim = claimOf(message);
    const event = message.kind === "event" ? message.event : undefined;
    const reply = await this.#call(
      "confirm message",
      CHECK_SCRIPT,
      [this.#meta, this.#streamKey(event ? event.channel : null), this.#log],
      [claim.epoch, String(claim.seq), event ? payloadOf(text) : ""],
    );
    const [epoch, seq, stored] = Array.isArray(reply) ? reply : [];
    const head = Number(seq);
    if (epoch !== claim.epoch) return `Redis is at epoch \`${String(epoch)}\``;
    if (step.action === "rewind") {
      const at = this.#position?.seq ?? 0;
      return head < at ? undefined : `Redis is at event ${head}, not behind ${at}`;
    }
    if (head < claim.seq) return `Redis is at event ${head}`;
    if (Number(stored) === -1) return `Redis holds another event ${claim.seq}`;
    return undefined;
  }

  /** Takes the messages held during a confirmation, until one needs confirming in turn. */
  #release = (): void => {
    const held = this.#held ?? [];
    this.#held = undefined;
    while (held.length > 0 && !this.#closed) {
      this.#take(held.shift()!);
      // `#take` may have started another confirmation (TypeScript cannot see it).
      const again = this.#held as string[] | undefined;
      if (again !== undefined) {
        again.push(...held);
        return;
      }
    }
  };

  /** Moves live delivery to the message's place, delivers it if it is an event. */
  #advance(message: Message): void {
    const claim = claimOf(message);
    const order = this.#orderOf(claim.epoch, claim.seq);
    this.#moveTo(claim.epoch, claim.seq);
    if (message.kind === "event") {
      try {
        message.event.seq = order;
        this.#deliver(message.event);
      } catch (error) {
        this.#report(error);
      }
    }
    this.#settle();
  }

  /**
   * The broker-facing seq of `seq` of `epoch`; an epoch met for the first time starts after the
   * current position (call it before moving there).
   */
  #orderOf(epoch: string, seq: number): number {
    let base = this.#bases.get(epoch);
    if (base === undefined) {
      const position = this.#position;
      // One past it: the new epoch's head (its seq 0) is a position after every older one.
      base = position === undefined ? 0 : (this.#bases.get(position.epoch) ?? 0) + position.seq + 1;
      this.#bases.set(epoch, base);
      // Only the newest epochs matter: a replay of an older one is a gap anyway.
      if (this.#bases.size > 8) this.#bases.delete(this.#bases.keys().next().value!);
    }
    return base + seq;
  }

  #moveTo(epoch: string, seq: number): void {
    if (epoch !== this.#position?.epoch) this.#generation++;
    this.#position = { epoch, seq };
  }

  /** Reports a message that is skipped: it neither moves the position nor is delivered. */
  #refuse(text: string, why: string): void {
    this.#stats.messagesRefused++;
    this.#report(
      bridgeError(
        `Cannot deliver message from \`${this.#channel}\`: ${why}, got \`${
          String(text).slice(0, 80)
        }\``,
        "malformed",
      ),
    );
  }

  #onConnected = (): void => {
    if (this.#closed) return;
    this.#down = false;
    // A Redis that restarted may have a new run id (ids from before are void) and this
    // worker may have missed events while away: the checkpoint settles both.
    const head = this.#runHead();
    this.#head = head.then(noop, noop);
    head.catch(this.#report);
  };

  #onConnectionError = (error: unknown): void => {
    if (this.#closed || this.#down) return;
    this.#down = true;
    this.#report(
      bridgeError(
        `Cannot reach Redis: the connection failed: ${messageOf(error)}`,
        "unavailable",
        error,
      ),
    );
  };

  /**
   * Events are gone for good: tells the broker (its clients get the gap signal, carrying the new
   * position's id) and goes on from `seq` of `epoch`.
   */
  #lose(why: string, epoch: string, seq: number): void {
    const position = this.#position;
    const head = { seq: this.#orderOf(epoch, seq), id: `${epoch}-${seq}` };
    const gap: BridgeGap = {
      channels: null,
      after: position && `${position.epoch}-${position.seq}`,
      head,
    };
    this.#stats.losses++;
    this.#report(
      bridgeError(
        `Cannot deliver every event: ${why}; this worker's clients get the gap signal and go on from \`${head.id}\``,
        "lost",
      ),
    );
    try {
      this.#lost(gap);
    } catch (error) {
      this.#report(error);
    }
    this.#moveTo(epoch, seq);
    this.#settle();
  }

  /** Publishes a checkpoint, one at a time: the subscription then finds any hole. */
  #checkpoint(): void {
    if (this.#checkpointing || this.#closed) return;
    this.#checkpointing = true;
    this.#runHead().then(noop, this.#report).finally(() => this.#checkpointing = false);
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

/** The pub/sub channel of a prefix and database; db 0 keeps the name it always had. */
function channelName(prefix: string, db: number): string {
  return db === 0 ? `${prefix}events` : `${prefix}events@${db}`;
}

function claimOf(message: Message): Claim {
  return message.kind === "head"
    ? { kind: "head", epoch: message.epoch, seq: message.seq }
    : { kind: "event", epoch: message.epoch, seq: message.event.seq };
}

/** What a confirmed hole, rewind or new epoch means, for the report. */
function lossOf(step: Step, message: Message, position: Position | undefined): string {
  if (step.action === "hole") return `events ${step.first} to ${step.last} did not arrive`;
  if (step.action === "rewind") {
    return `Redis went back from event ${position?.seq} to ${claimOf(message).seq}`;
  }
  return `Redis started epoch \`${message.epoch}\` (it lost its data, restarted, or another server took over)`;
}
