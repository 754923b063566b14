/**
 * Generations in Redis, so that any worker can start, read and cancel any of them (see
 * `_scripts.ts` for the keys). A worker with readers of a generation keeps one mirror of it, a
 * {@linkcode Log} that one fetch loop fills from the stream in Redis: a hundred readers on a
 * worker cost one `XRANGE` per wake-up, not a hundred. Pub/sub only wakes the loop (the stream
 * is the truth), so a missed message delays a reader by at most `poll` ms, never loses an event.
 * @module
 */

import { clock, type TimerHandle } from "../_clock.ts";
import type { RedisBridgeAdapter } from "../redis/redis_bridge_adapter.ts";
import { Log, type ResumableEndReason } from "./_log.ts";
import { APPEND, END, READ, RENEW, scriptSha, START } from "./_scripts.ts";
import type { AppendOutcome, EndBody, ResumableStatus, StartOutcome, Store } from "./_store.ts";

/** The settings of a Redis store. */
export interface RedisLimits {
  retention: number;
  maxEvents: number;
  maxBytes: number;
  prefix: string;
  lease: number;
  poll: number;
}

/** What one read of a generation returns. */
interface ReadReply {
  token: string;
  state: "running" | "ended";
  reason: ResumableEndReason | undefined;
  /** The last seq stored. */
  last: number;
  entries: { seq: number; body: string; end: boolean }[];
}

/** Entries fetched per `XRANGE`. */
const PAGE = 1_000;

interface Mirror {
  log: Log;
  readers: number;
  /** The last seq fetched. */
  head: number;
  fetching: boolean;
  /** A wake-up came while fetching: fetch again. */
  again: boolean;
  timer: TimerHandle | undefined;
  /**
   * Resolves once the first fetch has read everything there was: `true`, or `false` when the
   * generation does not exist (or the mirror was dropped); rejects when Redis failed.
   */
  ready: Promise<boolean>;
  /** Settles `ready`; undefined once it has. */
  settle: ((outcome: boolean | Error) => void) | undefined;
}

/** A store in Redis, shared by every worker that uses the same prefix. */
export class RedisStore implements Store {
  readonly #adapter: RedisBridgeAdapter;
  readonly #limits: RedisLimits;
  readonly #endBody: EndBody;
  readonly #channel: string;
  readonly #owner = crypto.randomUUID();
  readonly #shas = new Map<string, Promise<string>>();
  readonly #mirrors = new Map<string, Mirror>();
  readonly #onError: (error: unknown) => void;
  #unlisten: (() => Promise<void>) | undefined;
  #closed = false;

  constructor(
    adapter: RedisBridgeAdapter,
    limits: RedisLimits,
    endBody: EndBody,
    onError: (error: unknown) => void,
  ) {
    this.#adapter = adapter;
    this.#limits = limits;
    this.#endBody = endBody;
    this.#channel = `${limits.prefix}events`;
    this.#onError = onError;
  }

  async open(onCancel: (id: string) => void): Promise<void> {
    this.#unlisten = await this.#adapter.listen(this.#channel, {
      message: (text) => {
        const id = text.slice(2);
        if (text.startsWith("c ")) onCancel(id);
        else this.#kick(id);
      },
      // Back after a reconnect: messages may have been missed, so every mirror reads again.
      connected: () => {
        for (const id of this.#mirrors.keys()) this.#kick(id);
      },
      error: this.#onError,
    });
  }

  async start(id: string, token: string): Promise<StartOutcome> {
    const { lease, retention } = this.#limits;
    const reply = await this.#call(START, id, [
      token,
      this.#owner,
      String(lease),
      String(lease + retention),
      this.#endBody("lost"),
      String(retention),
      this.#channel,
      id,
    ]);
    return String(reply) as StartOutcome;
  }

  hold(id: string, onLost: () => void): () => void {
    const { lease, retention } = this.#limits;
    let timer: TimerHandle | undefined;
    let held = true;
    const renew = async (): Promise<void> => {
      let kept = true;
      try {
        const reply = await this.#call(RENEW, id, [
          this.#owner,
          String(lease),
          String(lease + retention),
        ]);
        kept = Number(reply) === 1;
      } catch (error) {
        // Redis is unreachable: try again at the next turn; the lease may still hold.
        this.#onError(error);
      }
      if (!held) return;
      if (!kept) return onLost();
      timer = clock.setTimeout(tick, lease / 3, undefined);
    };
    const tick = (): void => void renew();
    timer = clock.setTimeout(tick, lease / 3, undefined);
    return () => {
      held = false;
      clock.clearTimeout(timer);
    };
  }

  async append(id: string, bodies: string[]): Promise<AppendOutcome> {
    const { maxEvents, maxBytes, lease, retention } = this.#limits;
    const reply = await this.#call(APPEND, id, [
      String(maxEvents),
      String(maxBytes),
      String(lease + retention),
      this.#endBody("limit"),
      String(retention),
      this.#channel,
      id,
      ...bodies,
    ]);
    return String(reply) as AppendOutcome;
  }

  async end(id: string, reason: ResumableEndReason): Promise<boolean> {
    const reply = await this.#call(END, id, [
      this.#endBody(reason),
      reason,
      String(this.#limits.retention),
      this.#channel,
      id,
    ]);
    return Number(reply) === 1;
  }

  async status(id: string): Promise<ResumableStatus | undefined> {
    const reply = await this.#read(id, Number.MAX_SAFE_INTEGER, 1);
    if (!reply) return undefined;
    return {
      state: reply.state,
      events: reply.last,
      reason: reply.reason,
    };
  }

  async attach(id: string): Promise<Log | undefined> {
    let mirror = this.#mirrors.get(id);
    if (!mirror) {
      let settle!: (outcome: boolean | Error) => void;
      const ready = new Promise<boolean>((resolve, reject) => {
        settle = (outcome) => outcome instanceof Error ? reject(outcome) : resolve(outcome);
      });
      // Rejections are handled by the readers that await it; none may be left unhandled.
      ready.catch(() => {});
      mirror = {
        // The token is known after the first read; a placeholder until then.
        log: new Log(""),
        readers: 0,
        head: 0,
        fetching: false,
        again: false,
        timer: undefined,
        ready,
        settle,
      };
      this.#mirrors.set(id, mirror);
      this.#fetch(id, mirror);
    }
    mirror.readers++;
    let found: boolean;
    try {
      found = await mirror.ready;
    } catch (error) {
      this.release(id, mirror.log);
      throw error;
    }
    if (found && !mirror.log.gone) return mirror.log;
    this.release(id, mirror.log);
    return undefined;
  }

  release(id: string, log: Log): void {
    const mirror = this.#mirrors.get(id);
    if (!mirror || mirror.log !== log || --mirror.readers > 0) return;
    this.#drop(id, mirror);
  }

  held(): { streams: number; events: number; bytes: number; expired: number } {
    let events = 0;
    let bytes = 0;
    for (const { log } of this.#mirrors.values()) {
      events += log.entries.length;
      bytes += log.bytes;
    }
    return { streams: this.#mirrors.size, events, bytes, expired: 0 };
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const [id, mirror] of this.#mirrors) this.#drop(id, mirror);
    const unlisten = this.#unlisten;
    this.#unlisten = undefined;
    await unlisten?.();
  }

  #drop(id: string, mirror: Mirror): void {
    this.#settle(mirror, false);
    clock.clearTimeout(mirror.timer);
    mirror.timer = undefined;
    if (this.#mirrors.get(id) === mirror) this.#mirrors.delete(id);
    mirror.log.drop();
  }

  #kick(id: string): void {
    const mirror = this.#mirrors.get(id);
    if (mirror) this.#fetch(id, mirror);
  }

  /**
   * Reads what the mirror has not yet, page after page, until Redis has no more; then sleeps
   * until a message or `poll` ms (a missed message, or a worker that died without ending it).
   */
  #settle(mirror: Mirror, outcome: boolean | Error): void {
    const settle = mirror.settle;
    mirror.settle = undefined;
    settle?.(outcome);
  }

  #fetch(id: string, mirror: Mirror): void {
    if (mirror.fetching) {
      mirror.again = true;
      return;
    }
    mirror.fetching = true;
    clock.clearTimeout(mirror.timer);
    mirror.timer = undefined;
    const loop = async (): Promise<void> => {
      let failed: Error | undefined;
      do {
        mirror.again = false;
        let reply: ReadReply | undefined;
        try {
          reply = await this.#read(id, mirror.head, PAGE);
        } catch (error) {
          failed = error instanceof Error ? error : new Error(String(error));
          break;
        }
        if (this.#mirrors.get(id) !== mirror) return;
        if (!reply) {
          this.#drop(id, mirror);
          return;
        }
        if (mirror.head === 0 && mirror.log.entries.length === 0) {
          mirror.log.token = reply.token;
        }
        for (const entry of reply.entries) {
          if (entry.seq !== mirror.head + 1) continue;
          mirror.head = entry.seq;
          mirror.log.push(entry.body, entry.end);
        }
        if (reply.entries.length === PAGE) mirror.again = true;
      } while (mirror.again && !mirror.log.ended);
      mirror.fetching = false;
      if (failed && mirror.settle) {
        // The first read failed: the readers waiting for it answer 503, not a wrong 404.
        this.#settle(mirror, failed);
        this.#drop(id, mirror);
        return;
      }
      // A later failure: the readers keep what they have and the next poll tries again.
      if (failed) this.#onError(failed);
      this.#settle(mirror, true);
      if (!mirror.log.ended && !this.#closed) {
        mirror.timer = clock.setTimeout(this.#poll, this.#limits.poll, [id, mirror] as const);
      }
    };
    void loop();
  }

  #poll = ([id, mirror]: readonly [string, Mirror]): void => {
    mirror.timer = undefined;
    if (this.#mirrors.get(id) === mirror) this.#fetch(id, mirror);
  };

  async #read(id: string, after: number, count: number): Promise<ReadReply | undefined> {
    const reply = await this.#call(READ, id, [
      String(after),
      String(count),
      this.#endBody("lost"),
      String(this.#limits.retention),
      this.#channel,
      id,
    ]);
    if (!Array.isArray(reply)) return undefined;
    const [token, state, reason, last] = reply.map(String);
    const entries: { seq: number; body: string; end: boolean }[] = [];
    for (let i = 4; i + 2 < reply.length; i += 3) {
      const seq = Number(reply[i]);
      entries.push({ seq, body: String(reply[i + 1]), end: String(reply[i + 2]) === "1" });
    }
    return {
      token: token!,
      state: state === "e" ? "ended" : "running",
      reason: reason ? reason as ResumableEndReason : undefined,
      last: Number(last),
      entries,
    };
  }

  /** Runs a script by its hash on the keys of `id`, loading it on the first `NOSCRIPT`. */
  async #call(script: string, id: string, args: string[]): Promise<unknown> {
    // A client queues commands while it reconnects: refuse at once rather than leave a reader
    // (or a producer) waiting for a Redis that may not come back.
    if (!this.#adapter.ready()) throw new Error("Cannot reach Redis: the connection is down");
    let sha = this.#shas.get(script);
    if (!sha) this.#shas.set(script, sha = scriptSha(script));
    const base = this.#limits.prefix + id;
    const tail = ["3", `${base}:m`, `${base}:l`, `${base}:o`, ...args];
    return await this.#adapter.command(["EVALSHA", await sha, ...tail]).catch(
      (error: unknown) => {
        if (!String((error as Error)?.message ?? error).startsWith("NOSCRIPT")) throw error;
        return this.#adapter.command(["EVAL", script, ...tail]);
      },
    );
  }
}
