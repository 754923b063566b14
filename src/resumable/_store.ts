/**
 * What `ResumableStreams` needs of a place to keep generations: the memory store
 * (`_memory_store.ts`) and the Redis store (`_redis_store.ts`) both give it, so that the
 * producer and reader logic is written once.
 * @module
 */

import type { Log, ResumableEndReason } from "./_log.ts";

/** What `start` found: the generation is new (and this call runs it), or what it was. */
export type StartOutcome = "started" | "running" | "ended" | "full";

/** What an append did: stored everything, or nothing more can be stored and why. */
export type AppendOutcome = "ok" | "limit" | "ended";

/** A generation's state as `status()` reports it. */
export interface ResumableStatus {
  /** `"running"` until the end marker is stored, then `"ended"` until it expires. */
  state: "running" | "ended";
  /** The events stored, the end marker included. */
  events: number;
  /** How it ended; undefined while running. */
  reason: ResumableEndReason | undefined;
}

/** The end marker's body for a reason, as the wire owner encodes it. */
export type EndBody = (reason: ResumableEndReason) => string;

/** A store of generations. */
export interface Store {
  /** Connects (the Redis store subscribes); every other call waits for it. */
  open(onCancel: (id: string) => void): Promise<void>;
  /** Creates the generation under `id` with `token` unless one exists. */
  start(id: string, token: string): Promise<StartOutcome>;
  /** Keeps a running generation's lease while its producer runs here; returns the release. */
  hold(id: string, onLost: () => void): () => void;
  /** Appends bodies in order; past a limit it stores the `limit` end marker instead. */
  append(id: string, bodies: string[]): Promise<AppendOutcome>;
  /** Stores the end marker of a running generation; false when it had ended already. */
  end(id: string, reason: ResumableEndReason): Promise<boolean>;
  /** The state of a generation, or undefined when there is none. */
  status(id: string): Promise<ResumableStatus | undefined>;
  /** The log of a generation for a reader, or undefined when there is none; `release` after. */
  attach(id: string): Promise<Log | undefined>;
  /** The reader of `log` is done with it. */
  release(id: string, log: Log): void;
  /** What the store holds on this worker. */
  held(): { streams: number; events: number; bytes: number; expired: number };
  /** Frees everything held on this worker and stops every timer. */
  close(): Promise<void>;
}
