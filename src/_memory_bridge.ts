import type { Bridge, BridgeEvent, BridgeReplay } from "./bridge.ts";
import { MAX_ID_LENGTH } from "./_wire.ts";

/** History of one channel (or of broadcasts): the last `history` events, oldest first. */
interface Ring {
  events: BridgeEvent[];
  /** The seq of the newest event that fell out: a client before it has missed something. */
  evicted: number;
}

const BROADCAST = null;

/** The broker's own bridge: one process, history in memory. */
export class MemoryBridge implements Bridge {
  #seq = 0;
  /**
   * Ids name the process that made them, so an id from before a restart is told apart. Made on
   * first use, not in the constructor: Cloudflare Workers refuse random values at module scope,
   * where a broker is usually created.
   */
  #epochValue: string | undefined;
  #idPatternValue: RegExp | undefined;
  #rings = new Map<string | null, Ring>();
  #deliver: (event: BridgeEvent) => void = () => {};

  get #epoch(): string {
    return this.#epochValue ??= crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
  }

  get #idPattern(): RegExp {
    return this.#idPatternValue ??= new RegExp(`^${this.#epoch}-(\\d{1,15})$`);
  }

  open(deliver: (event: BridgeEvent) => void): Promise<void> {
    this.#deliver = deliver;
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
    if (history > 0) {
      let ring = this.#rings.get(event.channel);
      if (!ring) this.#rings.set(event.channel, ring = { events: [], evicted: 0 });
      ring.events.push(stored);
      if (ring.events.length > history) ring.evicted = ring.events.shift()!.seq;
    }
    this.#deliver(stored);
    return Promise.resolve(stored);
  }

  replay(channels: readonly string[], lastEventId: string): Promise<BridgeReplay> {
    const head = { seq: this.#seq, id: `${this.#epoch}-${this.#seq}` };
    const rings: [string | null, Ring | undefined][] = channels.map((c) => [c, this.#rings.get(c)]);
    rings.push([BROADCAST, this.#rings.get(BROADCAST)]);
    const after = this.#position(lastEventId, rings);
    if (after === undefined) return Promise.resolve({ events: [], gaps: [...channels], head });
    const events: BridgeEvent[] = [];
    let gap = false;
    const gaps: string[] = [];
    for (const [channel, ring] of rings) {
      if (!ring) continue;
      if (ring.evicted > after) {
        if (channel === BROADCAST) gap = true;
        else gaps.push(channel);
      }
      for (const event of ring.events) if (event.seq > after) events.push(event);
    }
    events.sort((a, b) => a.seq - b.seq);
    return Promise.resolve({ events, gaps: gap ? [...channels] : gaps, head });
  }

  close(): Promise<void> {
    this.#deliver = () => {};
    return Promise.resolve();
  }

  /** The seq a `Last-Event-ID` stands for: one of our ids, or a caller's id still in history. */
  #position(id: string, rings: [string | null, Ring | undefined][]): number | undefined {
    if (id.length > MAX_ID_LENGTH) return undefined;
    const ours = this.#idPattern.exec(id);
    if (ours) {
      const seq = Number(ours[1]);
      return seq <= this.#seq ? seq : undefined;
    }
    let found: number | undefined;
    for (const [, ring] of rings) {
      for (const event of ring?.events ?? []) {
        if (event.id === id && (found === undefined || event.seq > found)) found = event.seq;
      }
    }
    return found;
  }
}
