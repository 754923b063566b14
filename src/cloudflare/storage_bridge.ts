import type { Bridge, BridgeEvent, BridgeGap, BridgeReplay, HistoryLimits } from "../bridge.ts";
import {
  DEFAULT_HISTORY_BYTES,
  DEFAULT_HISTORY_TTL,
  eventCost,
  ringCost,
} from "../_memory_bridge.ts";
import { clock } from "../_clock.ts";
import { MAX_ID_LENGTH } from "../_wire.ts";
import type { DurableObjectStorageLike } from "./durable_object_types.ts";

/** The key of the bridge's own record: its epoch, its last seq and its floor. */
const META_KEY = "flume:meta";
/** Events are stored under this prefix and their seq, zero-padded so that key order is seq order. */
const EVENT_PREFIX = "flume:event:";
/** Digits of a padded seq: ids accept at most 15 (see the id pattern). */
const SEQ_DIGITS = 15;
/** The most keys one `put()` or `delete()` of Durable Object storage takes. */
const BATCH_KEYS = 128;

/** The bridge's record in storage. */
interface Meta {
  epoch: string;
  seq: number;
  /**
   * Events of channels that have no history in this object are all at or before it: it rises
   * when a channel's history is freed whole (ttl or byte budget).
   */
  floor: number;
}

/** One event in storage. */
interface StoredEvent {
  channel: string | null;
  id?: string;
  body: string;
  /**
   * The seq of the channel's event before it (or the floor when the channel had none): once the
   * older ones are trimmed, the oldest event left says what fell out, after a restart too.
   */
  prev: number;
}

/** History of one channel (or of broadcasts) in memory: a copy of what storage holds. */
interface Ring {
  events: BridgeEvent[];
  /** The seq of the newest event that fell out: a client before it has missed something. */
  evicted: number;
  bytes: number;
  touched: number;
}

/**
 * A {@linkcode Bridge} that keeps a broker's history in the transactional storage of a Durable
 * Object, so that a client's `Last-Event-ID` resumes after the object was evicted from memory or
 * its host restarted. {@linkcode BrokerObject} uses one; use it directly in a Durable Object of
 * your own that hosts a `Broker`.
 *
 * Semantics are those of the broker's in-memory bridge: ids `<epoch>-<seq>`, the last `history`
 * events per channel, exactly what was missed on resume, and the gap signal for an unknown id
 * (forged, or from storage that was wiped: a new storage gets a new epoch). History is also
 * kept in memory, loaded once when the object starts, so a replay reads no storage.
 *
 * Each publish with history writes two keys (the event and the bridge's record) and deletes the
 * event that fell out. An event's frame must fit one storage value: 128 KiB on KV-backed
 * objects, 2 MB on SQLite-backed ones; a larger one is delivered live but `publish()` rejects,
 * and a client that resumes from before it after a restart gets the gap signal. The broker's
 * `historyBytes` bounds the history of the object (least recently used channels are freed
 * first) and `historyTtl` frees a channel's history that was untouched that long while the
 * object ran. A client that resumes on a channel whose history was freed gets the gap signal;
 * so may, conservatively, one that resumes from before that point on another channel that has
 * no history.
 *
 * @example A Durable Object of your own around a broker (shown, not run: it needs workerd)
 * ```ts ignore
 * import { Broker } from "@flume/sse";
 * import { StorageBridge } from "@flume/sse/cloudflare";
 *
 * export class Room {
 *   #broker: Broker;
 *   constructor(ctx: DurableObjectState) {
 *     const bridge = new StorageBridge(ctx.storage);
 *     this.#broker = new Broker({ history: 100, bridge });
 *     void ctx.blockConcurrencyWhile(() => bridge.load());
 *   }
 *   fetch(request: Request): Response {
 *     return this.#broker.response("room", request);
 *   }
 * }
 * ```
 *
 * @example History that outlives the broker, here in a Map-backed storage
 * ```ts
 * import { Broker } from "@flume/sse";
 * import { type DurableObjectStorageLike, StorageBridge } from "@flume/sse/cloudflare";
 * import assert from "node:assert/strict";
 *
 * const data = new Map<string, unknown>();
 * const storage: DurableObjectStorageLike = {
 *   get: (key) => Promise.resolve(structuredClone(data.get(key))),
 *   put: (entries) => Promise.resolve(void Object.entries(entries).forEach(([k, v]) => data.set(k, structuredClone(v)))),
 *   delete: (keys) => Promise.resolve(keys.filter((key) => data.delete(key)).length),
 *   list: ({ prefix }) =>
 *     Promise.resolve(new Map([...data].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => a < b ? -1 : 1))),
 * };
 *
 * const first = new Broker({ history: 10, bridge: new StorageBridge(storage) });
 * const stream = first.subscribe("news");
 * await first.publish("news", "one");
 * await first.publish("news", "two");
 * await first.close();
 * const seen = await new Response(stream.readable).text();
 * const firstId = /id: (.+)/.exec(seen)![1]!;
 *
 * // The object restarts: a new broker over the same storage resumes the client.
 * const second = new Broker({ history: 10, bridge: new StorageBridge(storage) });
 * const resumed = second.subscribe("news", { lastEventId: firstId });
 * const reader = resumed.readable.pipeThrough(new TextDecoderStream()).getReader();
 * let text = "";
 * while (!text.includes("data: two")) text += (await reader.read()).value;
 * assert.match(text, /^:\n\nid: .+\ndata: two\n\n$/); // exactly what it missed
 * await second.close();
 * ```
 */
export class StorageBridge implements Bridge {
  readonly #storage: DurableObjectStorageLike;
  #loaded: Promise<void> | undefined;
  #meta: Meta = { epoch: "", seq: 0, floor: 0 };
  #idPattern = /^$/;
  /** Least recently used first: a touch deletes and re-inserts. */
  #rings = new Map<string | null, Ring>();
  #bytes = 0;
  /** Keys of history freed by a replay, deleted with the next publish's write. */
  #pendingDeletes: string[] = [];
  #limits: HistoryLimits = { ttl: DEFAULT_HISTORY_TTL, bytes: DEFAULT_HISTORY_BYTES };
  #deliver: (event: BridgeEvent) => void = () => {};

  /**
   * Creates a bridge over a Durable Object's storage; nothing is read before {@linkcode load}.
   * @param storage The object's `ctx.storage`. The bridge uses keys that start with `flume:`.
   */
  constructor(storage: DurableObjectStorageLike) {
    this.#storage = storage;
  }

  /**
   * Reads the stored history into memory, once; later calls return the same promise. Call it
   * under `ctx.blockConcurrencyWhile()` in the object's constructor, so that no request waits on
   * it; `open()`, `publish()` and `replay()` wait for it anyway.
   * @returns A promise that resolves once the history is loaded.
   * @example Load before the first request
   * ```ts
   * import { type DurableObjectStorageLike, StorageBridge } from "@flume/sse/cloudflare";
   * import assert from "node:assert/strict";
   *
   * const data = new Map<string, unknown>();
   * const storage: DurableObjectStorageLike = {
   *   get: (key) => Promise.resolve(data.get(key)),
   *   put: (entries) => Promise.resolve(void Object.entries(entries).forEach(([k, v]) => data.set(k, v))),
   *   delete: (keys) => Promise.resolve(keys.filter((key) => data.delete(key)).length),
   *   list: () => Promise.resolve(new Map()),
   * };
   * const bridge = new StorageBridge(storage);
   * await bridge.load();
   * assert.equal(data.size, 1); // a new storage gets its epoch, kept from now on
   * ```
   */
  load(): Promise<void> {
    return this.#loaded ??= this.#load();
  }

  /**
   * Starts delivering; called by the broker.
   * @param deliver Where events go, in seq order.
   * @param _lost Unused: one object is the only publisher of its storage, it never misses one.
   * @param limits The broker's `historyTtl` and `historyBytes`.
   * @returns A promise that resolves once the history is loaded.
   */
  open(
    deliver: (event: BridgeEvent) => void,
    _lost?: (gap: BridgeGap) => void,
    limits?: HistoryLimits,
  ): Promise<void> {
    this.#deliver = deliver;
    if (limits) this.#limits = { ttl: limits.ttl, bytes: limits.bytes };
    return this.load();
  }

  /**
   * Orders, stores (with `history` > 0) and delivers one event; called by the broker.
   * @param event The channel (or `null` for a broadcast), the frame body and the caller's id.
   * @param history Events kept per channel.
   * @returns The event as delivered, once storage has confirmed the write.
   */
  publish(
    event: { channel: string | null; body: string; id?: string },
    history: number,
  ): Promise<BridgeEvent> {
    // Each publish waits on the same promise, so seqs are given in call order.
    return this.load().then(() => this.#publish(event, history));
  }

  /**
   * What a client at `lastEventId` missed on `channels`; called by the broker. Never throws for a
   * bad id: an unknown one gets a gap on every channel.
   * @param channels The client's channels.
   * @param lastEventId The client's `Last-Event-ID`.
   * @returns The missed events, the channels with a gap, and the newest position.
   */
  replay(channels: readonly string[], lastEventId: string): Promise<BridgeReplay> {
    return this.load().then(() => this.#replay(channels, lastEventId));
  }

  /**
   * Stops delivering and lets go of the history in memory; storage keeps it.
   * @returns A resolved promise.
   */
  close(): Promise<void> {
    this.#deliver = () => {};
    this.#rings.clear();
    this.#bytes = 0;
    return Promise.resolve();
  }

  async #load(): Promise<void> {
    const stored = await this.#storage.get(META_KEY);
    if (isMeta(stored)) {
      this.#meta = { epoch: stored.epoch, seq: stored.seq, floor: stored.floor };
    } else {
      // A new (or wiped) storage: a new epoch, so that ids from before are told apart.
      const epoch = crypto.getRandomValues(new Uint32Array(2)).reduce(
        (text, n) => text + n.toString(36),
        "",
      );
      this.#meta = { epoch, seq: 0, floor: 0 };
      await this.#storage.put({ [META_KEY]: this.#meta });
    }
    this.#idPattern = new RegExp(`^${this.#meta.epoch}-(\\d{1,${SEQ_DIGITS}})$`);
    const now = clock.now();
    const entries = await this.#storage.list({ prefix: EVENT_PREFIX });
    for (const [key, value] of entries) {
      const seq = Number(key.slice(EVENT_PREFIX.length));
      if (!Number.isSafeInteger(seq) || !isStoredEvent(value)) continue;
      let ring = this.#touch(value.channel, now);
      if (!ring) {
        // The oldest event left of a channel says which one fell out before it.
        ring = {
          events: [],
          evicted: value.prev,
          bytes: ringCost(value.channel),
          touched: now,
        };
        this.#rings.set(value.channel, ring);
        this.#bytes += ring.bytes;
      }
      const event: BridgeEvent = { channel: value.channel, seq, id: value.id, body: value.body };
      ring.events.push(event);
      const cost = eventCost(event);
      ring.bytes += cost;
      this.#bytes += cost;
    }
  }

  async #publish(
    event: { channel: string | null; body: string; id?: string },
    history: number,
  ): Promise<BridgeEvent> {
    const meta = this.#meta;
    const seq = ++meta.seq;
    const stored: BridgeEvent = {
      channel: event.channel,
      seq,
      id: event.id ?? (history > 0 ? `${meta.epoch}-${seq}` : undefined),
      body: event.body,
    };
    const now = clock.now();
    const deletes = this.#pendingDeletes.splice(0);
    if (this.#rings.size > 0) this.#expire(now, deletes);
    let written: Promise<void> = Promise.resolve();
    if (history > 0) {
      const record = this.#store(stored, history, now, deletes);
      // The event and the new seq in one atomic put; what fell out after it, in order.
      written = this.#write({ [eventKey(seq)]: record, [META_KEY]: { ...meta } }, deletes);
    } else if (deletes.length > 0) {
      written = this.#write({ [META_KEY]: { ...meta } }, deletes);
    }
    // Delivered at once, in seq order; a Durable Object's output gate holds what the clients
    // would see of it until storage has confirmed the write.
    this.#deliver(stored);
    await written;
    return stored;
  }

  #replay(channels: readonly string[], lastEventId: string): BridgeReplay {
    const { epoch, seq } = this.#meta;
    const head = { seq, id: `${epoch}-${seq}` };
    const now = clock.now();
    // What expires here leaves storage with the next publish, whose promise reports a failure;
    // until then a restart finds it there again, with the floor as it was: still consistent.
    this.#expire(now, this.#pendingDeletes);
    const keys: (string | null)[] = [...channels, null];
    const rings = keys.map((key) => this.#touch(key, now));
    const after = this.#position(lastEventId, rings);
    if (after === undefined) return { events: [], gaps: [...channels], head };
    const events: BridgeEvent[] = [];
    const gaps: string[] = [];
    let broadcastGap = false;
    keys.forEach((key, i) => {
      const ring = rings[i];
      const lost = ring ? ring.evicted : this.#meta.floor;
      if (lost > after) {
        if (key === null) broadcastGap = true;
        else gaps.push(key);
      }
      for (const event of ring?.events ?? []) if (event.seq > after) events.push(event);
    });
    events.sort((a, b) => a.seq - b.seq);
    return { events, gaps: broadcastGap ? [...channels] : gaps, head };
  }

  /** Keeps `event` in memory, trims its channel and the budget; returns its stored record. */
  #store(event: BridgeEvent, history: number, now: number, deletes: string[]): StoredEvent {
    const key = event.channel;
    let ring = this.#touch(key, now);
    if (!ring) {
      ring = {
        events: [],
        evicted: this.#meta.floor,
        bytes: ringCost(key),
        touched: now,
      };
      this.#rings.set(key, ring);
      this.#bytes += ring.bytes;
    }
    const record: StoredEvent = {
      channel: key,
      body: event.body,
      prev: ring.events.at(-1)?.seq ?? ring.evicted,
    };
    if (event.id !== undefined) record.id = event.id;
    const cost = eventCost(event);
    ring.events.push(event);
    ring.bytes += cost;
    this.#bytes += cost;
    while (ring.events.length > history) {
      const old = ring.events.shift()!;
      ring.evicted = old.seq;
      deletes.push(eventKey(old.seq));
      const freed = eventCost(old);
      ring.bytes -= freed;
      this.#bytes -= freed;
    }
    while (this.#bytes > this.#limits.bytes) {
      const lru = this.#rings.entries().next();
      if (lru.done || lru.value[1] === ring) break; // the newest event's own channel stays
      this.#free(lru.value[0], lru.value[1], deletes);
    }
    return record;
  }

  /** Frees, from the least recently used end, every ring untouched for the ttl. */
  #expire(now: number, deletes: string[]): void {
    for (const [key, ring] of this.#rings) {
      if (now - ring.touched < this.#limits.ttl) break;
      this.#free(key, ring, deletes);
    }
  }

  /** Frees a channel's history whole: the floor rises to its newest event. */
  #free(key: string | null, ring: Ring, deletes: string[]): void {
    this.#rings.delete(key);
    this.#bytes -= ring.bytes;
    for (const event of ring.events) deletes.push(eventKey(event.seq));
    const last = ring.events.at(-1)?.seq ?? ring.evicted;
    if (last > this.#meta.floor) this.#meta.floor = last;
  }

  #touch(key: string | null, now: number): Ring | undefined {
    const ring = this.#rings.get(key);
    if (ring) {
      this.#rings.delete(key);
      this.#rings.set(key, ring);
      ring.touched = now;
    }
    return ring;
  }

  /** The seq a `Last-Event-ID` stands for: one of our ids, or a caller's id still in history. */
  #position(id: string, rings: (Ring | undefined)[]): number | undefined {
    if (id.length > MAX_ID_LENGTH) return undefined;
    const ours = this.#idPattern.exec(id);
    if (ours) {
      const seq = Number(ours[1]);
      return seq <= this.#meta.seq ? seq : undefined;
    }
    let found: number | undefined;
    for (const ring of rings) {
      for (const event of ring?.events ?? []) {
        if (event.id === id && (found === undefined || event.seq > found)) found = event.seq;
      }
    }
    return found;
  }

  /** One put (at most two keys), then the deletes in batches that storage accepts. */
  async #write(entries: Record<string, unknown>, deletes: readonly string[]): Promise<void> {
    const writes: Promise<unknown>[] = [this.#storage.put(entries)];
    for (let i = 0; i < deletes.length; i += BATCH_KEYS) {
      writes.push(this.#storage.delete(deletes.slice(i, i + BATCH_KEYS)));
    }
    await Promise.all(writes);
  }
}

function eventKey(seq: number): string {
  return EVENT_PREFIX + String(seq).padStart(SEQ_DIGITS, "0");
}

function isMeta(value: unknown): value is Meta {
  if (typeof value !== "object" || value === null) return false;
  const meta = value as Partial<Meta>;
  return typeof meta.epoch === "string" && /^[0-9a-z]+$/.test(meta.epoch) &&
    Number.isSafeInteger(meta.seq) && Number.isSafeInteger(meta.floor);
}

function isStoredEvent(value: unknown): value is StoredEvent {
  if (typeof value !== "object" || value === null) return false;
  const event = value as Partial<StoredEvent>;
  return (event.channel === null || typeof event.channel === "string") &&
    (event.id === undefined || typeof event.id === "string") &&
    typeof event.body === "string" && Number.isSafeInteger(event.prev);
}
