/**
 * `McpEventStore`: the `EventStore` of the Model Context Protocol TypeScript SDK's Streamable
 * HTTP server transport, kept in a {@linkcode ResumableStreams} (in memory, or in Redis). It
 * matches the SDK's interface by its shape: nothing here imports the SDK.
 * @module
 */

import { END_EVENT, type ResumableStreams, type ResumableWriter } from "./resumable_streams.ts";

/** The id of an MCP stream, as the SDK's transport names it (`StreamId`). */
export type McpStreamId = string;

/** The id of a stored MCP event (`EventId`): `<token>-<seq>/<stream id>`. */
export type McpEventId = string;

/** A JSON-RPC message as the SDK hands it over (`JSONRPCMessage`); stored as JSON. */
export type McpMessage = object;

/** Options of {@linkcode McpEventStore}. */
export interface McpEventStoreOptions {
  /**
   * Prefix of the generation ids, so that streams of different sessions never meet: the SDK
   * names every session's standalone GET stream `_GET_stream`. Give each session's transport
   * its own store with the session id here, or use one store per `ResumableStreams` per session.
   * @default {""}
   */
  scope?: string | undefined;
  /**
   * Whether a message is the last of its stream: its generation then ends (`complete`) and is
   * kept for the retention time. A stream whose last message never comes ends on `close()`.
   * @default {a JSON-RPC response (`result` or `error` with an `id`, no `method`)}
   */
  endsStream?: ((message: McpMessage) => boolean) | undefined;
}

interface Open {
  writer: ResumableWriter;
  finish: () => void;
}

/**
 * An MCP SDK `EventStore` (for `StreamableHTTPServerTransport` and
 * `WebStandardStreamableHTTPServerTransport`) backed by {@linkcode ResumableStreams}: each MCP
 * stream is one generation (`scope` + stream id) that this store produces, ended by the
 * stream's JSON-RPC response. `replayEventsAfter` sends exactly the events stored after the
 * client's `Last-Event-ID` (read from the store itself, so from Redis on any worker), bounded
 * by the instance's `maxEvents`, `maxBytes` and `retention`.
 *
 * Replay fails (the transport answers 500) for an id this store did not make, and for a stream
 * that is gone (never stored here, or expired after its retention).
 *
 * @example Store a request's stream, then replay it after its first event
 * ```ts
 * import assert from "node:assert/strict";
 * import { McpEventStore, ResumableStreams } from "@flume/sse/resumable";
 *
 * const resumable = new ResumableStreams();
 * const store = new McpEventStore(resumable, { scope: "session-1:" });
 * const progress = (n: number) => ({
 *   jsonrpc: "2.0",
 *   method: "notifications/progress",
 *   params: { progressToken: 1, progress: n },
 * });
 * const first = await store.storeEvent("s1", progress(1));
 * await store.storeEvent("s1", progress(2));
 * await store.storeEvent("s1", { jsonrpc: "2.0", id: 1, result: { content: [] } });
 * assert.equal(await store.getStreamIdForEventId(first), "s1");
 *
 * const replayed: unknown[] = [];
 * const stream = await store.replayEventsAfter(first, {
 *   send: async (_id, message) => void replayed.push(message),
 * });
 * assert.equal(stream, "s1");
 * assert.deepEqual(replayed, [progress(2), { jsonrpc: "2.0", id: 1, result: { content: [] } }]);
 * await store.close();
 * await resumable.close();
 * ```
 */
export class McpEventStore {
  readonly #resumable: ResumableStreams;
  readonly #scope: string;
  readonly #endsStream: (message: McpMessage) => boolean;
  readonly #open = new Map<McpStreamId, Promise<Open>>();

  /**
   * Creates the store over `resumable` (which stays yours to close).
   * @param resumable Where the events are kept.
   * @param options The scope of stream ids, and what ends a stream.
   * @throws {TypeError} `scope` is not a string.
   */
  constructor(resumable: ResumableStreams, options: McpEventStoreOptions = {}) {
    const scope = options.scope ?? "";
    if (typeof scope !== "string") {
      throw new TypeError(
        `Cannot create McpEventStore: \`scope\` must be a string, got \`${typeof scope}\``,
      );
    }
    this.#resumable = resumable;
    this.#scope = scope;
    this.#endsStream = options.endsStream ?? isResponse;
  }

  /**
   * Stores one message of a stream, starting the stream's generation with its first message.
   * @param streamId The MCP stream.
   * @param message The JSON-RPC message.
   * @returns Its event id, once it is stored.
   * @throws {Error} The stream has ended already, or runs on another worker.
   */
  async storeEvent(streamId: McpStreamId, message: McpMessage): Promise<McpEventId> {
    let open = this.#open.get(streamId);
    if (!open) {
      open = this.#start(streamId);
      this.#open.set(streamId, open);
      open.catch(() => this.#open.delete(streamId));
    }
    const { writer, finish } = await open;
    const id = await writer.send({ data: message });
    if (this.#endsStream(message) && this.#open.get(streamId) === open) {
      this.#open.delete(streamId);
      finish();
    }
    return `${id}/${streamId}`;
  }

  /**
   * The stream an event id of this store belongs to.
   * @param eventId The id.
   * @returns The stream id, or undefined when this store did not make the id.
   */
  getStreamIdForEventId(eventId: McpEventId): Promise<McpStreamId | undefined> {
    return Promise.resolve(parseEventId(eventId)?.streamId);
  }

  /**
   * Sends every message of the stream stored after `lastEventId`, in order, each once.
   * @param lastEventId The client's `Last-Event-ID`.
   * @param callbacks `send(eventId, message)`, awaited for each.
   * @returns The stream id.
   * @throws {RangeError} `lastEventId` is not an id this store made (or not of this stream).
   * @throws {Error} The stream is gone: never stored, or expired after its retention.
   */
  async replayEventsAfter(
    lastEventId: McpEventId,
    { send }: { send: (eventId: McpEventId, message: McpMessage) => Promise<void> },
  ): Promise<McpStreamId> {
    const parsed = parseEventId(lastEventId);
    if (!parsed) {
      throw new RangeError(
        `Cannot replay events: not an event id of this store, got \`${lastEventId.slice(0, 256)}\``,
      );
    }
    const { streamId, generationEventId } = parsed;
    const events = await this.#resumable.events(this.#scope + streamId, {
      lastEventId: generationEventId,
    });
    if (!events) {
      throw new Error(
        `Cannot replay events: no stream \`${streamId}\` (never started, or expired after its retention)`,
      );
    }
    for await (const event of events) {
      if (event.event === END_EVENT) continue;
      await send(`${event.id}/${streamId}`, JSON.parse(event.data) as McpMessage);
    }
    return streamId;
  }

  /**
   * Ends every stream this store still produces (as `complete`: the transport is done with
   * them), and waits until their end markers are stored. Call it when the session closes.
   * @returns A promise that resolves then.
   */
  async close(): Promise<void> {
    const open = [...this.#open.entries()];
    this.#open.clear();
    await Promise.allSettled(open.map(async ([streamId, opening]) => {
      (await opening).finish();
      await this.#resumable.finished(this.#scope + streamId);
    }));
  }

  async #start(streamId: McpStreamId): Promise<Open> {
    let opened: Open | undefined;
    const outcome = await this.#resumable.start(
      this.#scope + streamId,
      (writer) =>
        new Promise<void>((resolve) => {
          // `start()` calls the producer before it returns "started".
          opened = { writer, finish: resolve };
          writer.signal.addEventListener("abort", () => resolve(), { once: true });
        }),
    );
    if (outcome !== "started" || !opened) {
      throw new Error(`Cannot store event: the stream \`${streamId}\` is ${outcome} already`);
    }
    return opened;
  }
}

/** A JSON-RPC response: the last message of a request's stream. */
function isResponse(message: McpMessage): boolean {
  return message !== null && typeof message === "object" && "id" in message &&
    !("method" in message) && ("result" in message || "error" in message);
}

function parseEventId(
  eventId: unknown,
): { streamId: string; generationEventId: string } | undefined {
  if (typeof eventId !== "string") return undefined;
  const slash = eventId.indexOf("/");
  if (slash < 1 || slash === eventId.length - 1) return undefined;
  return { generationEventId: eventId.slice(0, slash), streamId: eventId.slice(slash + 1) };
}
