import type { Bridge, BridgeEvent, BridgeReplay } from "../bridge.ts";
import { adapterFor } from "./_adapters.ts";
import { decodeMessage, decodePayload, encodePayload } from "./_message.ts";
import { HEAD_SCRIPT, PUBLISH_SCRIPT, REPLAY_SCRIPT, scriptSha } from "./_scripts.ts";
import { RedisBridgeError } from "./redis_bridge_error.ts";

/**
 * What the bridge needs from a Redis client it does not know: two connections, one for
 * commands and one subscribed. Pass it as `adapter` to use any client.
 *
 * @example An adapter over node-redis, as the bridge builds it itself
 * ```ts
 * import type { RedisBridgeAdapter } from "@flume/sse/redis";
 * import type { createClient } from "redis";
 *
 * type Client = ReturnType<typeof createClient>;
 * function adapter(client: Client, subscriber: Client): RedisBridgeAdapter {
 *   return {
 *     command: (args) => client.sendCommand(args),
 *     ready: () => client.isReady && subscriber.isReady,
 *     async listen(channel, listener) {
 *       const onMessage = (message: string) => listener.message(message);
 *       const onReady = () => listener.connected();
 *       const onError = (error: unknown) => listener.error(error);
 *       client.on("ready", onReady).on("error", onError);
 *       subscriber.on("ready", onReady).on("error", onError);
 *       await subscriber.subscribe(channel, onMessage);
 *       return async () => {
 *         client.off("ready", onReady).off("error", onError);
 *         subscriber.off("ready", onReady).off("error", onError);
 *         await subscriber.unsubscribe(channel, onMessage);
 *       };
 *     },
 *   };
 * }
 * ```
 */
export interface RedisBridgeAdapter {
  /**
   * Sends one command on the command connection, e.g. `["EVALSHA", sha, "2", ...]`.
   * @param args The command and its arguments.
   * @returns The reply: arrays as arrays, integers as numbers or strings, nil as `null`.
   */
  command(args: string[]): Promise<unknown>;
  /**
   * Whether both connections are up: when not, the bridge refuses a publish at once rather
   * than let the client queue it for a reconnect that may never come.
   * @returns Whether both connections are up.
   */
  ready(): boolean;
  /**
   * Subscribes the subscriber connection to `channel`, and keeps it subscribed across
   * reconnects.
   * @param channel The Redis channel.
   * @param listener Where messages, reconnects and connection errors go.
   * @returns A function that undoes all of it: unsubscribes and removes every listener.
   */
  listen(channel: string, listener: RedisBridgeListener): Promise<() => Promise<void>>;
}

/** What a {@linkcode RedisBridgeAdapter} tells the bridge. */
export interface RedisBridgeListener {
  /** A message arrived on the channel. */
  message(text: string): void;
  /** A connection (either one) is up again after a reconnect, subscription included. */
  connected(): void;
  /** A connection failed; the client is expected to reconnect by itself. */
  error(error: unknown): void;
}

/** Options of {@linkcode redisBridge}. */
export interface RedisBridgeOptions {
  /**
   * The command connection: a connected client of npm `redis` (`createClient()`), `ioredis`
   * (`new Redis()`) or Bun's `RedisClient`. The bridge only sends commands on it, and leaves
   * connecting and quitting to you.
   */
  client?: object;
  /**
   * A second connection of the same kind, for the subscription (a subscribed Redis connection
   * can run no other command), e.g. `client.duplicate()`.
   */
  subscriber?: object;
  /** Any other client, instead of `client` and `subscriber`. */
  adapter?: RedisBridgeAdapter;
  /**
   * Put in front of every key and of the channel, so that several apps share one Redis. On a
   * Redis Cluster, make it a hash tag (`"{myapp}:"`) so that all keys land on one slot.
   * @default {"flume:"}
   */
  prefix?: string;
  /**
   * Milliseconds to wait for Redis to answer a command and for a published event to come back
   * on the subscription; beyond it the publish or replay rejects.
   * @default {5_000}
   */
  timeout?: number;
  /**
   * Gets what has no caller: a malformed message on the channel, events this worker missed,
   * connection errors (once per outage).
   * @default {console.error}
   */
  onError?(error: RedisBridgeError): void;
}

interface Waiter {
  epoch: string;
  seq: number;
  /** The number of epoch changes seen when it was made: a newer epoch settles it. */
  generation: number;
  deadline: number;
  resolve(): void;
  timeout(): void;
}

const ID = /^([0-9a-z]{1,16})-([0-9]{1,15})$/;
const MAX_ID_LENGTH = 256;

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
 * @param options The two connections (or an adapter), the key prefix, the timeout, `onError`.
 * @returns The bridge, for `new Broker({ bridge })`.
 * @throws {TypeError} The clients are not of a known kind, or are one connection.
 * @throws {RangeError} `timeout` is not a positive integer.
 *
 * @example Share a broker between workers with npm `redis`
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
  return new RedisBridge(options);
}

class RedisBridge implements Bridge {
  readonly #adapter: RedisBridgeAdapter;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #meta: string;
  readonly #timeout: number;
  readonly #onError: (error: RedisBridgeError) => void;
  /**
   * The epoch this bridge starts in Redis when there is none: whoever comes first wins. Made on
   * first use: Cloudflare Workers refuse random values at module scope.
   */
  #candidateValue: string | undefined;
  readonly #shas = new Map<string, Promise<string>>();
  #deliver: (event: BridgeEvent) => void = noop;
  #lost: () => void = noop;
  #listening: Promise<() => Promise<void>> | undefined;
  /** The HEAD script of the last (re)connect: publishes wait for it. */
  #head: Promise<void> = Promise.resolve();
  #epoch: string | undefined;
  #seq = 0;
  #generation = 0;
  #waiters: Waiter[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #down = false;
  #closed = false;

  constructor(options: RedisBridgeOptions) {
    if (options.adapter) this.#adapter = options.adapter;
    else {
      if (!options.client || !options.subscriber) {
        throw new TypeError(
          "Cannot create Redis bridge: pass `client` and `subscriber` (two connections), or an `adapter`",
        );
      }
      this.#adapter = adapterFor(options.client, options.subscriber);
    }
    const prefix = options.prefix ?? "flume:";
    if (typeof prefix !== "string") {
      throw new TypeError("Cannot create Redis bridge: `prefix` must be a string");
    }
    this.#prefix = prefix;
    this.#channel = `${prefix}events`;
    this.#meta = `${prefix}meta`;
    const timeout = options.timeout ?? 5_000;
    if (!Number.isSafeInteger(timeout) || timeout <= 0) {
      throw new RangeError(
        `Cannot create Redis bridge: \`timeout\` must be a positive integer, got \`${
          String(timeout)
        }\``,
      );
    }
    this.#timeout = timeout;
    this.#onError = options.onError ?? ((error) => console.error("Redis bridge:", error));
  }

  async open(deliver: (event: BridgeEvent) => void, lost?: () => void): Promise<void> {
    this.#deliver = deliver;
    this.#lost = lost ?? noop;
    this.#listening = this.#adapter.listen(this.#channel, {
      message: this.#onMessage,
      connected: this.#onConnected,
      error: this.#onConnectionError,
    });
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
      [this.#meta, this.#channel, this.#streamKey(event.channel)],
      [this.#candidate, payload, String(history), id ?? ""],
    );
    const [epoch, seq] = parseHead(reply, "publish event");
    // Resolve only once the event came back through the subscription and went to `deliver`:
    // local subscribers then have it queued, in the same order as everywhere.
    await this.#wait(epoch, seq, "publish");
    return {
      channel: event.channel,
      seq,
      id: id ?? (history > 0 ? `${epoch}-${seq}` : undefined),
      body: event.body,
    };
  }

  async replay(
    channels: readonly string[],
    lastEventId: string,
    _history: number,
  ): Promise<BridgeReplay> {
    await this.#ready("replay events");
    const usable = lastEventId.length <= MAX_ID_LENGTH;
    const ours = usable ? ID.exec(lastEventId) : null;
    const reply = await this.#call(
      "replay events",
      REPLAY_SCRIPT,
      [this.#meta, this.#streamKey(null), ...channels.map((c) => this.#streamKey(c))],
      [
        this.#candidate,
        usable ? lastEventId : "",
        ours?.[1] ?? "",
        ours?.[2] ?? "",
        this.#channel,
      ],
    );
    const [epoch, headSeq] = parseHead(reply, "replay events");
    const [, , known, gapList, flat] = reply as unknown[];
    const head = { seq: headSeq, id: `${epoch}-${headSeq}` };
    let result: BridgeReplay;
    if (Number(known) !== 1) result = { events: [], gaps: [...channels], head };
    else result = this.#replayed(channels, epoch, gapList, flat, head);
    // The broker drops live events up to `head` for this client, so every one of them must
    // have gone through `deliver` before it gets the replay: the subscription can lag behind
    // the command connection.
    if (headSeq > 0) await this.#wait(epoch, headSeq, "replay");
    return result;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#deliver = noop;
    this.#lost = noop;
    const waiters = this.#waiters;
    this.#waiters = [];
    clearTimeout(this.#timer);
    for (const waiter of waiters) waiter.timeout();
    const unlisten = await this.#listening?.catch(noop);
    if (!unlisten) return;
    try {
      await this.#within(unlisten(), "unsubscribe");
    } catch (error) {
      this.#report(error);
    }
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
      if (Number(n) === 1) channels.forEach((c) => gaps.add(c));
      else if (channels[Number(n) - 2] !== undefined) gaps.add(channels[Number(n) - 2]);
    }
    const events: BridgeEvent[] = [];
    const entries = Array.isArray(flat) ? flat : [];
    for (let i = 0; i + 1 < entries.length; i += 2) {
      const seq = Number(entries[i]);
      const event = decodePayload(String(entries[i + 1]), 0, epoch, seq);
      if (typeof event === "string") {
        this.#report(
          new RedisBridgeError("malformed", `Cannot replay event ${seq}: ${event}`),
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

  async #ready(action: string): Promise<void> {
    if (this.#closed) {
      throw new RedisBridgeError("closed", `Cannot ${action}: the bridge is closed`);
    }
    if (!this.#listening) {
      throw new RedisBridgeError("closed", `Cannot ${action}: the bridge is not open`);
    }
    try {
      await this.#listening;
    } catch (error) {
      throw new RedisBridgeError(
        "unavailable",
        `Cannot ${action}: the subscription failed: ${messageOf(error)}`,
        { cause: error },
      );
    }
    await this.#head;
    if (!this.#adapter.ready()) {
      throw new RedisBridgeError("unavailable", `Cannot ${action}: Redis is unreachable`);
    }
  }

  /** Runs a script by its hash, loading it on the first `NOSCRIPT` (a restarted Redis). */
  async #call(action: string, script: string, keys: string[], args: string[]): Promise<unknown> {
    let sha = this.#shas.get(script);
    if (!sha) this.#shas.set(script, sha = scriptSha(script));
    const tail = [String(keys.length), ...keys, ...args];
    try {
      const reply = await this.#within(
        this.#adapter.command(["EVALSHA", await sha, ...tail]).catch((error: unknown) => {
          if (!messageOf(error).startsWith("NOSCRIPT")) throw error;
          return this.#adapter.command(["EVAL", script, ...tail]);
        }),
        action,
      );
      // Ours became the epoch: the next one (after Redis loses it) must differ.
      if (Array.isArray(reply) && reply[0] === this.#candidateValue) {
        this.#candidateValue = undefined;
      }
      return reply;
    } catch (error) {
      if (error instanceof RedisBridgeError) throw error;
      throw new RedisBridgeError("unavailable", `Cannot ${action}: ${messageOf(error)}`, {
        cause: error,
      });
    }
  }

  #within<T>(promise: Promise<T>, action: string): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new RedisBridgeError(
              "timeout",
              `Cannot ${action}: Redis did not answer within ${this.#timeout} ms`,
            ),
          ),
        this.#timeout,
      );
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  /** Runs the HEAD script: a new epoch if Redis changed, and a checkpoint on the channel. */
  async #runHead(): Promise<[string, number]> {
    const reply = await this.#call("check position", HEAD_SCRIPT, [this.#meta, this.#channel], [
      this.#candidate,
    ]);
    return parseHead(reply, "check position");
  }

  /** Resolves once live delivery has reached `seq` of `epoch` (or moved on to a newer epoch). */
  #wait(epoch: string, seq: number, what: "publish" | "replay" | "open"): Promise<void> {
    if (this.#settled(epoch, seq, this.#generation)) return Promise.resolve();
    if (this.#closed) {
      return Promise.reject(
        new RedisBridgeError("closed", "Cannot wait for event: the bridge is closed"),
      );
    }
    return new Promise((resolve, reject) => {
      this.#waiters.push({
        epoch,
        seq,
        generation: this.#generation,
        deadline: Date.now() + this.#timeout,
        resolve,
        timeout: () => {
          if (this.#closed) {
            reject(new RedisBridgeError("closed", `Cannot ${what}: the bridge is closed`));
            return;
          }
          reject(
            new RedisBridgeError(
              "timeout",
              `Cannot confirm ${what}: event ${seq} did not come back on the Redis subscription within ${this.#timeout} ms`,
            ),
          );
          // The subscription is down or far behind: this worker's clients are missing events.
          if (what === "publish") this.#missed(`event ${seq} did not come back in time`);
        },
      });
      if (this.#waiters.length === 1) this.#arm();
    });
  }

  #settled(epoch: string, seq: number, generation: number): boolean {
    return (this.#epoch === epoch && this.#seq >= seq) ||
      (this.#epoch !== epoch && generation < this.#generation);
  }

  /** One timer for the oldest waiter: waiters come in order, so deadlines do too. */
  #arm(): void {
    clearTimeout(this.#timer);
    const first = this.#waiters[0];
    if (!first) return;
    this.#timer = setTimeout(() => {
      const now = Date.now();
      while (this.#waiters.length > 0 && this.#waiters[0].deadline <= now) {
        this.#waiters.shift()!.timeout();
      }
      this.#arm();
    }, Math.max(0, first.deadline - Date.now()));
  }

  #settle(): void {
    const waiters = this.#waiters;
    let n = 0;
    while (n < waiters.length) {
      const waiter = waiters[n];
      if (!this.#settled(waiter.epoch, waiter.seq, waiter.generation)) break;
      waiter.resolve();
      n++;
    }
    if (n === 0) return;
    waiters.splice(0, n);
    this.#arm();
  }

  #onMessage = (text: string): void => {
    if (this.#closed) return;
    const message = decodeMessage(text);
    if (typeof message === "string") {
      this.#report(
        new RedisBridgeError(
          "malformed",
          `Cannot deliver message from \`${this.#channel}\`: ${message}: ${
            JSON.stringify(String(text).slice(0, 80))
          }`,
        ),
      );
      return;
    }
    const { epoch } = message;
    const seq = message.kind === "head" ? message.seq : message.event.seq;
    if (this.#epoch !== undefined) {
      let wrong: string | undefined;
      if (epoch !== this.#epoch) {
        // A new epoch always comes with a checkpoint first (see the scripts).
        if (message.kind === "event") wrong = `its epoch is not \`${this.#epoch}\``;
        else this.#missed(`Redis started epoch \`${epoch}\` (it lost its data or restarted)`);
      } else if (message.kind === "event" && seq <= this.#seq) {
        wrong = `event ${this.#seq} was delivered already`;
      } else if (seq < this.#seq) {
        this.#missed(`Redis went back from event ${this.#seq} to ${seq}`);
      } else if (message.kind === "event" ? seq > this.#seq + 1 : seq !== this.#seq) {
        this.#missed(`events ${this.#seq + 1} to ${seq} did not arrive`);
      }
      if (wrong !== undefined) {
        this.#report(
          new RedisBridgeError("malformed", `Cannot deliver event ${seq}: ${wrong}`),
        );
        return;
      }
    }
    if (epoch !== this.#epoch) {
      this.#epoch = epoch;
      this.#generation++;
    }
    this.#seq = seq;
    if (message.kind === "event") {
      try {
        this.#deliver(message.event);
      } catch (error) {
        this.#report(error);
      }
    }
    this.#settle();
  };

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
      new RedisBridgeError("unavailable", `Redis connection failed: ${messageOf(error)}`, {
        cause: error,
      }),
    );
  };

  #missed(why: string): void {
    this.#report(
      new RedisBridgeError(
        "lost",
        `Cannot deliver every event: ${why}; this worker's clients are disconnected to resume from their Last-Event-ID`,
      ),
    );
    try {
      this.#lost();
    } catch (error) {
      this.#report(error);
    }
  }

  #report = (error: unknown): void => {
    try {
      this.#onError(
        error instanceof RedisBridgeError
          ? error
          : new RedisBridgeError("unavailable", messageOf(error), { cause: error }),
      );
    } catch {
      // A throwing onError must not break delivery.
    }
  };
}

function parseHead(reply: unknown, action: string): [string, number] {
  const [epoch, seq] = Array.isArray(reply) ? reply : [];
  const n = Number(seq);
  if (typeof epoch !== "string" || !Number.isSafeInteger(n) || n < 0) {
    throw new RedisBridgeError(
      "unavailable",
      `Cannot ${action}: unexpected reply from Redis: ${JSON.stringify(reply)?.slice(0, 80)}`,
    );
  }
  return [epoch, n];
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
