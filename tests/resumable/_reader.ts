/**
 * A client of a resumable stream for the tests: reads a response's events over real HTTP and
 * drops the connection where told, as a browser that reloads would.
 * @module
 */
import { EventParserStream, type ParsedEvent } from "../../mod.ts";

/** What one connection got. */
export interface Visit {
  status: number;
  events: ParsedEvent[];
  /** Whether the body ended by itself (not dropped by us). */
  ended: boolean;
  lastEventId: string;
}

/**
 * GETs `url` with `lastEventId`, reads events until `dropAfter` of them arrived (then drops the
 * connection) or the body ends.
 */
export async function visit(
  url: string,
  lastEventId: string,
  dropAfter = Infinity,
): Promise<Visit> {
  const controller = new AbortController();
  const headers: Record<string, string> = lastEventId ? { "Last-Event-ID": lastEventId } : {};
  const response = await fetch(url, { headers, signal: controller.signal });
  const events: ParsedEvent[] = [];
  if (response.status !== 200 || !response.body) {
    await response.body?.cancel();
    return { status: response.status, events, ended: true, lastEventId };
  }
  const parser = new EventParserStream({ lastEventId });
  const reader = response.body.pipeThrough(parser).getReader();
  let ended = false;
  try {
    while (events.length < dropAfter) {
      const { done, value } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      events.push(value);
    }
  } finally {
    if (!ended) {
      controller.abort();
      await reader.cancel().catch(() => {});
    }
  }
  // Not `parser.lastEventId`: the pipe reads ahead of what this client took before dropping.
  return { status: 200, events, ended, lastEventId: events.at(-1)?.lastEventId ?? lastEventId };
}

/** A small seeded random generator, so that a failure can be replayed. */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}
