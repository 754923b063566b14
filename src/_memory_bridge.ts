import type { Bridge, BridgeEvent, BridgeGap, BridgeReplay, HistoryLimits } from "./bridge.ts";
import { type HistoryStats, historyStats, type ReportsHistory } from "./_bridge_stats.ts";
import { clock } from "./_clock.ts";
import { MAX_ID_LENGTH } from "./_wire.ts";

/** How long an untouched channel's history is kept, in ms: an hour. */
export const DEFAULT_HISTORY_TTL = 3_600_000;
/** How many (estimated) bytes of history a broker holds at most: 32 MiB. */
export const DEFAULT_HISTORY_BYTES = 33_554_432;

// Estimated heap bytes, measured with `tests/fixtures/history_memory.ts calibrate` on Deno 2.9
// and Bun 1.4 (the larger of the two, rounded up): real heap over estimate is 0.90 to 0.97 there,
// and 0.83 to 1.03 with the budget evicting (the maps' churn), so `historyBytes` bounds the heap.
/** One stored event beyond its body and id characters: the object, the strings' headers, its slot (measured 116 to 160). */
const EVENT_COST = 176;
/** One channel's ring beyond its name: the map entry, the ring and its array (measured 286 to 333). */
const RING_COST = 360;
/** One tombstone beyond its name: a map entry and the name string's header (not measured alone). */
const TOMBSTONE_COST = 128;
/**
 * The share of the budget that tombstones may take: beyond it the oldest go, and the watermark
 * rises to the newest of their positions.
 */
const TOMBSTONE_SHARE = 0.25;

/** History of one channel (or of broadcasts): the last `history` events, oldest first. */
interface Ring {
  events: BridgeEvent[];
  /** The seq of the newest event that fell out: a client before it has missed something. */
  evicted: number;
  /** Its estimated cost, name included. */
  bytes: number;
  /** When it was last published to or replayed from (the clock's ms). */
  touched: number;
}

const BROADCAST = null;

/**
 * The broker's own bridge: one process, history in memory, bounded by a time to live and a byte
 * budget (the broker's `historyTtl` and `historyBytes`; their defaults when opened without).
 *
 * Channels are kept in least-recently-used order (a publish or a replay touches one). Untouched
 * for `ttl`, a channel's history is freed, lazily: each publish and replay first sweeps from the
 * least recently used end, so no timer exists and a quiet process holds at most the budget. While
 * the estimated bytes exceed `bytes`, the least recently used channel is freed whole.
 *
 * Never a hole: a freed channel leaves a tombstone, the seq of its last event, so that a client
 * before it gets the gap signal and a client at or after it none. Tombstones are counted in the
 * budget and take at most a quarter of it; the oldest then go, raising one watermark: a channel
 * with neither history nor tombstone has a gap for a client before the watermark.
 */
export class MemoryBridge implements Bridge, ReportsHistory {
  #seq = 0;
  /**
   * Ids name the process that made them, so an id from before a restart is told apart. Made on
   * first use, not in the constructor: Cloudflare Workers refuse random values at module scope,
   * where a broker is usually created.
   */
  #epochValue: string | undefined;
  #idPatternValue: RegExp | undefined;
  /** Least recently used first: a touch deletes and re-inserts. */
  #rings = new Map<string | null, Ring>();
  /** Channel → seq of its last event when its ring was freed; oldest first. */
  #tombstones = new Map<string | null, number>();
  /** Events of channels with neither ring nor tombstone are all at or before it. */
  #watermark = 0;
  #bytes = 0;
  #tombstoneBytes = 0;
  #evictions = 0;
  #expirations = 0;
  #limits: HistoryLimits = { ttl: DEFAULT_HISTORY_TTL, bytes: DEFAULT_HISTORY_BYTES };
  #deliver: (event: BridgeEvent) => void = () => {};

  get #epoch(): string {
    return this.#epochValue ??= crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
  }

  get #idPattern(): RegExp {
    return this.#idPatternValue ??= new RegExp(`^${this.#epoch}-(\\d{1,15})$`);
  }

  open(
    deliver: (event: BridgeEvent) => void,
    _lost?: (gap: BridgeGap) => void,
    limits?: HistoryLimits,
  ): Promise<void> {
    this.#deliver = deliver;
    if (limits) this.#limits = { ttl: limits.ttl, bytes: limits.bytes };
    return Promise.resolve();
  }

  publish(
    event: { channel: string | null; body: string; id?: string },
    history: number,
  ): Promise<BridgeEvent> {
    const seq = ++this.#seq;
    const stored: BridgeEvent = {
      channel: event.channel,
      seq,
      id: event.id ?? (history > 0 ? `${this.#epoch}-${seq}` : undefined),
      body: event.body,
    };
    if (this.#rings.size > 0) this.#expire(clock.now());
    if (history > 0) this.#store(stored, history);
    this.#deliver(stored);
    return Promise.resolve(stored);
  }

  replay(channels: readonly string[], lastEventId: string): Promise<BridgeReplay> {
    const head = { seq: this.#seq, id: `${this.#epoch}-${this.#seq}` };
    const now = clock.now();
    this.#expire(now);
    const keys: (string | null)[] = [...channels, BROADCAST];
    const rings = keys.map((key) => this.#touch(key, now));
    const after = this.#position(lastEventId, rings);
    if (after === undefined) return Promise.resolve({ events: [], gaps: [...channels], head });
    const events: BridgeEvent[] = [];
    let gap = false;
    const gaps: string[] = [];
    keys.forEach((key, i) => {
      const ring = rings[i];
      // Without a ring, what was lost is up to its tombstone, or else up to the watermark.
      const lost = ring ? ring.evicted : this.#tombstones.get(key) ?? this.#watermark;
      if (lost > after) {
        if (key === BROADCAST) gap = true;
        else gaps.push(key);
      }
      for (const event of ring?.events ?? []) if (event.seq > after) events.push(event);
    });
    events.sort((a, b) => a.seq - b.seq);
    return Promise.resolve({ events, gaps: gap ? [...channels] : gaps, head });
  }

  close(): Promise<void> {
    this.#deliver = () => {};
    this.#rings.clear();
    this.#tombstones.clear();
    this.#bytes = this.#tombstoneBytes = 0;
    return Promise.resolve();
  }

  [historyStats](): HistoryStats {
    return { evictions: this.#evictions, expirations: this.#expirations, bytes: this.#bytes };
  }

  /** Keeps `event` in its channel's ring, then frees what the budget cannot hold. */
  #store(event: BridgeEvent, history: number): void {
    const key = event.channel;
    const now = clock.now();
    let ring = this.#touch(key, now);
    if (!ring) {
      const tombstone = this.#tombstones.get(key);
      if (tombstone !== undefined) this.#dropTombstone(key);
      ring = {
        events: [],
        evicted: tombstone ?? this.#watermark,
        bytes: ringCost(key),
        touched: now,
      };
      this.#rings.set(key, ring);
      this.#bytes += ring.bytes;
    }
    const cost = eventCost(event);
    ring.events.push(event);
    ring.bytes += cost;
    this.#bytes += cost;
    while (ring.events.length > history) {
      const old = ring.events.shift()!;
      ring.evicted = old.seq;
      const freed = eventCost(old);
      ring.bytes -= freed;
      this.#bytes -= freed;
    }
    while (this.#bytes > this.#limits.bytes) {
      const lru = this.#rings.entries().next();
      if (lru.done) break;
      this.#free(lru.value[0], lru.value[1]);
      this.#evictions++;
    }
    const tombstoneLimit = this.#limits.bytes * TOMBSTONE_SHARE;
    for (const [oldest, seq] of this.#tombstones) {
      if (this.#tombstoneBytes <= tombstoneLimit) break;
      this.#dropTombstone(oldest);
      if (seq > this.#watermark) this.#watermark = seq;
    }
  }

  /** A channel's ring, moved to the most recently used end; undefined when it has none. */
  #touch(key: string | null, now: number): Ring | undefined {
    const ring = this.#rings.get(key);
    if (ring) {
      this.#rings.delete(key);
      this.#rings.set(key, ring);
      ring.touched = now;
    }
    return ring;
  }

  /** Frees, from the least recently used end, every ring untouched for the ttl. */
  #expire(now: number): void {
    const ttl = this.#limits.ttl;
    for (const [key, ring] of this.#rings) {
      if (now - ring.touched < ttl) break;
      this.#free(key, ring);
      this.#expirations++;
    }
  }

  /** Frees a ring, leaving a tombstone at its last event. */
  #free(key: string | null, ring: Ring): void {
    this.#rings.delete(key);
    this.#bytes -= ring.bytes;
    const cost = TOMBSTONE_COST + nameCost(key);
    this.#tombstones.set(key, ring.events.at(-1)?.seq ?? ring.evicted);
    this.#tombstoneBytes += cost;
    this.#bytes += cost;
  }

  #dropTombstone(key: string | null): void {
    this.#tombstones.delete(key);
    const cost = TOMBSTONE_COST + nameCost(key);
    this.#tombstoneBytes -= cost;
    this.#bytes -= cost;
  }

  /** The seq a `Last-Event-ID` stands for: one of our ids, or a caller's id still in history. */
  #position(id: string, rings: (Ring | undefined)[]): number | undefined {
    if (id.length > MAX_ID_LENGTH) return undefined;
    const ours = this.#idPattern.exec(id);
    if (ours) {
      const seq = Number(ours[1]);
      return seq <= this.#seq ? seq : undefined;
    }
    let found: number | undefined;
    for (const ring of rings) {
      for (const event of ring?.events ?? []) {
        if (event.id === id && (found === undefined || event.seq > found)) found = event.seq;
      }
    }
    return found;
  }
}

/** Bytes of a string's characters: one each while they all fit in Latin-1, two otherwise. */
function textCost(text: string): number {
  return NOT_LATIN1.test(text) ? text.length * 2 : text.length;
}

// deno-lint-ignore no-control-regex
const NOT_LATIN1 = /[^\u0000-\u00ff]/;

function nameCost(key: string | null): number {
  return key === null ? 0 : textCost(key);
}

/** The estimated heap bytes of a channel's ring, empty (shared with the Durable Object bridge). */
export function ringCost(key: string | null): number {
  return RING_COST + nameCost(key);
}

/** The estimated heap bytes of one stored event (shared with the Durable Object bridge). */
export function eventCost(event: BridgeEvent): number {
  return EVENT_COST + textCost(event.body) + (event.id === undefined ? 0 : textCost(event.id));
}
