/**
 * Generations in this process's memory: each one a {@linkcode Log}, freed `retention` ms after
 * its end marker (one timer per ended generation, on the clock seam), bounded per generation
 * by events and bytes and in number by `maxStreams`.
 * @module
 */

import { clock, type TimerHandle } from "../_clock.ts";
import { Log, type ResumableEndReason } from "./_log.ts";
import type { AppendOutcome, EndBody, ResumableStatus, StartOutcome, Store } from "./_store.ts";

/** The limits of a memory store. */
export interface MemoryLimits {
  retention: number;
  maxEvents: number;
  maxBytes: number;
  maxStreams: number;
}

interface Generation {
  id: string;
  log: Log;
  /** The producer's events stored (the end marker not counted). */
  events: number;
  reason: ResumableEndReason | undefined;
  timer: TimerHandle | undefined;
}

/** A store in memory: one process, nothing shared. */
export class MemoryStore implements Store {
  readonly #generations = new Map<string, Generation>();
  readonly #limits: MemoryLimits;
  readonly #endBody: EndBody;
  #expired = 0;

  constructor(limits: MemoryLimits, endBody: EndBody) {
    this.#limits = limits;
    this.#endBody = endBody;
  }

  open(): Promise<void> {
    return Promise.resolve();
  }

  start(id: string, token: string): Promise<StartOutcome> {
    const existing = this.#generations.get(id);
    if (existing) return Promise.resolve(existing.log.ended ? "ended" : "running");
    if (this.#generations.size >= this.#limits.maxStreams) return Promise.resolve("full");
    this.#generations.set(id, {
      id,
      log: new Log(token),
      events: 0,
      reason: undefined,
      timer: undefined,
    });
    return Promise.resolve("started");
  }

  hold(): () => void {
    return noop;
  }

  append(id: string, bodies: string[]): Promise<AppendOutcome> {
    const generation = this.#generations.get(id);
    if (!generation || generation.log.ended) return Promise.resolve("ended");
    const { log } = generation;
    for (const body of bodies) {
      // The frame adds its id line (under 300 bytes) to the body: count the body, as Redis does.
      if (
        generation.events + 1 > this.#limits.maxEvents ||
        log.bytes + body.length > this.#limits.maxBytes
      ) {
        this.#finish(generation, "limit");
        return Promise.resolve("limit");
      }
      generation.events++;
      log.push(body);
    }
    return Promise.resolve("ok");
  }

  end(id: string, reason: ResumableEndReason): Promise<boolean> {
    const generation = this.#generations.get(id);
    if (!generation || generation.log.ended) return Promise.resolve(false);
    this.#finish(generation, reason);
    return Promise.resolve(true);
  }

  status(id: string): Promise<ResumableStatus | undefined> {
    const generation = this.#generations.get(id);
    if (!generation) return Promise.resolve(undefined);
    const { log, reason } = generation;
    return Promise.resolve({
      state: log.ended ? "ended" : "running",
      events: log.entries.length,
      reason,
    });
  }

  attach(id: string): Promise<Log | undefined> {
    return Promise.resolve(this.#generations.get(id)?.log);
  }

  release(): void {}

  held(): { streams: number; events: number; bytes: number; expired: number } {
    let events = 0;
    let bytes = 0;
    for (const { log } of this.#generations.values()) {
      events += log.entries.length;
      bytes += log.bytes;
    }
    return { streams: this.#generations.size, events, bytes, expired: this.#expired };
  }

  close(): Promise<void> {
    for (const [id, generation] of this.#generations) this.#free(id, generation);
    return Promise.resolve();
  }

  #finish(generation: Generation, reason: ResumableEndReason): void {
    generation.reason = reason;
    generation.log.push(this.#endBody(reason), true);
    generation.timer = clock.setTimeout(this.#expire, this.#limits.retention, generation);
  }

  #expire = (generation: Generation): void => {
    if (this.#generations.get(generation.id) !== generation) return;
    this.#expired++;
    this.#free(generation.id, generation);
  };

  #free(id: string, generation: Generation): void {
    clock.clearTimeout(generation.timer);
    this.#generations.delete(id);
    generation.log.drop();
  }
}

function noop(): void {}
