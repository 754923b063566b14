/**
 * Serving a web `Response` on a `node:http` `ServerResponse`, with the two things the obvious
 * `Readable.fromWeb(response.body).pipe(res)` gets wrong: the client's disconnect cancels the
 * body (so a producer's `stream.signal` aborts), and the body is read only as fast as the socket
 * takes it.
 * @module
 */

import type { ServerResponse } from "node:http";
import { clock, type TimerHandle } from "../_clock.ts";

/** Options of {@linkcode writeResponse}. */
export interface WriteResponseOptions {
  /**
   * Aborting it stops the body and ends the response (for example at server shutdown); the
   * client sees a clean end.
   */
  signal?: AbortSignal | undefined;
  /**
   * Milliseconds a write may wait for the socket to drain before the client counts as stalled:
   * the connection is destroyed and the body cancelled. `null`: wait for ever (the body's own
   * bounds, such as `EventStream`'s `writeTimeout`, still apply).
   * @default {30_000}
   */
  writeTimeout?: number | null | undefined;
  /**
   * Called with an error the body threw while being sent; the connection is destroyed so the
   * client sees a cut response, not a complete one.
   * @default {console.error}
   */
  onError?: ((error: unknown) => void) | undefined;
}

/**
 * Headers Node writes itself, and HTTP/2 forbids: a `Response` that carries them would make
 * Node frame the body twice.
 */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding"]);

/**
 * Writes a web `Response` (from `sseResponse`, `broker.response()` or anything else) to a
 * `node:http` `ServerResponse`: status, headers, then the body, chunk by chunk.
 *
 * - **Disconnects**: when the client goes away (`res` closes before the body ends) the body's
 *   reader is cancelled at once, so an `EventStream`'s `signal` aborts and a producer stops.
 * - **Backpressure**: the next chunk is read only after Node has taken the last one
 *   (`res.write()` returned `true` or `'drain'` came), so at most Node's high-water mark is
 *   buffered; a write that does not drain within `writeTimeout` drops the client.
 *
 * The status, statusText and every header are copied, `set-cookie` as separate lines; the
 * hop-by-hop `Connection`, `Keep-Alive` and `Transfer-Encoding` are left to Node. For a `HEAD`
 * request the body is cancelled unread.
 *
 * @param response The response to send; its body is consumed.
 * @param res Node's response object (Express's `res`, Fastify's `reply.raw` after
 *   `reply.hijack()`); nothing may have been written to it yet.
 * @param options A shutdown signal, the write timeout and an error callback.
 * @returns A promise that settles when the response has ended, whichever way: the body ended,
 *   the client left, the signal aborted or the client stalled. It does not reject.
 * @throws {TypeError} When `res` has already sent its headers.
 *
 * @example Serve an SSE producer from `node:http`
 * ```ts ignore
 * // Needs a listening server, so it is not run here; tests/node/adapter_test.ts runs it.
 * import { createServer } from "node:http";
 * import { sseResponse } from "@flume/sse";
 * import { writeResponse } from "@flume/sse/node";
 *
 * createServer((req, res) => {
 *   const response = sseResponse(async (stream) => {
 *     for (let n = 1; !stream.signal.aborted; n++) {
 *       await stream.publish({ n }, { event: "tick", id: n });
 *       await new Promise((resolve) => setTimeout(resolve, 1_000));
 *     }
 *   });
 *   void writeResponse(response, res);
 * }).listen(8000, "127.0.0.1");
 * ```
 */
export function writeResponse(
  response: Response,
  res: ServerResponse,
  options: WriteResponseOptions = {},
): Promise<void> {
  if (res.headersSent) {
    throw new TypeError("Cannot write response: the headers of `res` were already sent");
  }
  const writeTimeout = options.writeTimeout === undefined ? 30_000 : options.writeTimeout;
  if (writeTimeout !== null && !(writeTimeout >= 0 && writeTimeout <= 2_147_483_647)) {
    throw new RangeError(
      `Cannot write response: \`writeTimeout\` must be null or ms in [0, 2147483647], got \`${writeTimeout}\``,
    );
  }
  res.statusCode = response.status;
  if (response.statusText) res.statusMessage = response.statusText;
  for (const [name, value] of response.headers) {
    if (HOP_BY_HOP.has(name) || name === "set-cookie") continue;
    res.setHeader(name, value);
  }
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) res.setHeader("set-cookie", cookies);

  const body = response.body;
  if (body === null || res.req?.method === "HEAD") {
    void body?.cancel().catch(() => {});
    return new Promise((resolve) => {
      res.once("close", () => resolve());
      res.end();
    });
  }
  return new Pump(body, res, writeTimeout, options).done;
}

/** One body on its way to one socket. */
class Pump {
  readonly done: Promise<void>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #res: ServerResponse;
  readonly #writeTimeout: number | null;
  readonly #signal: AbortSignal | undefined;
  readonly #onError: (error: unknown) => void;
  #resolve!: () => void;
  #finished = false;
  /** Resolves the wait for `'drain'` (or for the end that makes it moot). */
  #drained: (() => void) | undefined;
  #timer: TimerHandle | undefined;

  constructor(
    body: ReadableStream<Uint8Array>,
    res: ServerResponse,
    writeTimeout: number | null,
    options: WriteResponseOptions,
  ) {
    this.done = new Promise((resolve) => this.#resolve = resolve);
    this.#reader = body.getReader();
    this.#res = res;
    this.#writeTimeout = writeTimeout;
    this.#signal = options.signal;
    // deno-lint-ignore no-console
    this.#onError = options.onError ?? ((error) => console.error(error));
    res.on("close", this.#onClose);
    res.on("drain", this.#onDrain);
    if (this.#signal?.aborted) {
      this.#stop(this.#signal.reason, false);
      return;
    }
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    // The headers now, not with the first chunk: an event stream may stay quiet for a while,
    // and a client (EventSource) waits for them before it reports the connection open.
    res.flushHeaders();
    void this.#run();
  }

  async #run(): Promise<void> {
    const res = this.#res;
    try {
      while (!this.#finished) {
        const { done, value } = await this.#reader.read();
        if (this.#finished) return;
        if (done) {
          this.#finish();
          res.end();
          return;
        }
        if (!res.write(value)) await this.#drain();
      }
    } catch (error) {
      if (this.#finished) return;
      // The body failed part-way: a cut connection tells the client the response is incomplete,
      // where a clean end would pass it off as whole.
      this.#onError(error);
      this.#finish();
      res.destroy();
    }
  }

  /** Waits for Node to take what it buffers, or drops the client after `writeTimeout`. */
  #drain(): Promise<void> {
    return new Promise((resolve) => {
      this.#drained = resolve;
      if (this.#writeTimeout !== null) {
        this.#timer = clock.setTimeout(Pump.#stalled, this.#writeTimeout, this);
      }
    });
  }

  static #stalled(pump: Pump): void {
    pump.#timer = undefined;
    const reason = new Error(
      `Cannot write response: the client read nothing for ${pump.#writeTimeout} ms`,
    );
    pump.#stop(reason, true);
  }

  readonly #onDrain = (): void => {
    clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    const drained = this.#drained;
    this.#drained = undefined;
    drained?.();
  };

  /** `'close'` before the end: the client left (or the socket broke). */
  readonly #onClose = (): void => {
    if (this.#finished) {
      this.#cleanUp();
      this.#resolve();
      return;
    }
    this.#stop(new Error("Cannot write response: the client closed the connection"), true);
  };

  readonly #onAbort = (): void => {
    this.#stop(this.#signal?.reason, false);
  };

  /** Ends the pump early: cancels the body (a producer's signal aborts) and ends `res`. */
  #stop(reason: unknown, destroy: boolean): void {
    if (this.#finished) return;
    this.#finish();
    this.#reader.cancel(reason).catch(() => {});
    const res = this.#res;
    if (destroy) res.destroy();
    else if (!res.writableEnded) res.end();
    if (res.closed) {
      this.#cleanUp();
      this.#resolve();
    }
  }

  #finish(): void {
    this.#finished = true;
    clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#onDrain();
  }

  #cleanUp(): void {
    this.#res.off("close", this.#onClose);
    this.#res.off("drain", this.#onDrain);
  }
}
