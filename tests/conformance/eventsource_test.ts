import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../../src/client/mod.ts";
import { EventParserStream, type ParsedEvent } from "../../src/event_parser_stream.ts";
import { collect, delay, fromChunks, serve, type TestServer } from "../_helpers.ts";
import { type Browser, launchBrowser, type Page } from "../_browser.ts";
import { CASES, chunkBytes, type ConformanceCase } from "./cases.ts";

/**
 * Every client meets the same three-request script for a case, so that the browser's state after
 * the case can be read off the wire:
 * 1. `retry: 20` and the end of the stream: the reconnection time is kept for the session;
 * 2. the case's bytes, then the end of the stream;
 * 3. the `Last-Event-ID` header the client now sends is recorded, and a 204 ends the session.
 */
interface Session {
  requests: number;
  /** The raw (byte string) `Last-Event-ID` of the third request; `null` when absent. */
  lastEventIdHeader?: string | null;
}

interface BrowserResult {
  events: ParsedEvent[];
  timedOut: boolean;
}

const sessions = new Map<string, Session>();

function caseBody(fixture: ConformanceCase): ReadableStream<Uint8Array> {
  const chunks = chunkBytes(fixture.chunks);
  if (!fixture.pause) {
    const whole = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
    let offset = 0;
    for (const chunk of chunks) {
      whole.set(chunk, offset);
      offset += chunk.length;
    }
    return new Response(whole).body!;
  }
  let index = 0;
  return new ReadableStream({
    async pull(controller) {
      if (index > 0) await delay(fixture.pause!);
      controller.enqueue(chunks[index++]);
      if (index === chunks.length) controller.close();
    },
  }, { highWaterMark: 0 });
}

function handle(request: Request): Response {
  const url = new URL(request.url);
  if (url.pathname === "/") {
    return new Response("<!doctype html><title>conformance</title>", {
      headers: { "content-type": "text/html" },
    });
  }
  const match = url.pathname.match(/^\/case\/(\d+)\/(\w+)$/);
  if (match === null) return new Response("not found", { status: 404 });
  const key = `${match[1]}/${match[2]}`;
  const session = sessions.get(key) ?? { requests: 0 };
  sessions.set(key, session);
  session.requests++;
  const headers = { "content-type": "text/event-stream", "cache-control": "no-store" };
  if (session.requests === 1) return new Response("retry: 20\n", { headers });
  if (session.requests === 2) return new Response(caseBody(CASES[Number(match[1])]!), { headers });
  session.lastEventIdHeader = request.headers.get("last-event-id");
  return new Response(null, { status: 204 });
}

/** Types to listen to: the declared ones, `message`, and any type our parser produced. */
function typesOf(fixture: ConformanceCase, ours: ParsedEvent[]): string[] {
  return [...new Set(["message", ...(fixture.types ?? []), ...ours.map((event) => event.type)])];
}

function runInBrowser(page: Page, url: string, types: string[]): Promise<BrowserResult> {
  return page.evaluate(({ url, types }) =>
    new Promise<BrowserResult>((resolve) => {
      const source = new EventSource(url);
      const events: ParsedEvent[] = [];
      const timer = setTimeout(() => {
        source.close();
        resolve({ events, timedOut: true });
      }, 10_000);
      for (const type of types) {
        source.addEventListener(type, (event) => {
          const { data, lastEventId } = event as MessageEvent;
          events.push({ type: event.type, data, lastEventId });
        });
      }
      source.onerror = () => {
        // The 204 of the third request closes the source for good.
        if (source.readyState === EventSource.CLOSED) {
          clearTimeout(timer);
          resolve({ events, timedOut: false });
        }
      };
    }), { url, types });
}

async function parse(fixture: ConformanceCase): Promise<{ events: ParsedEvent[]; id: string }> {
  const parser = new EventParserStream();
  const events = await collect(fromChunks(chunkBytes(fixture.chunks)).pipeThrough(parser));
  return { events, id: parser.lastEventId };
}

/** The byte string a header carries for `id`: its UTF-8 bytes, trimmed as HTTP trims values. */
function headerOf(id: string): string | null {
  const raw = String.fromCharCode(...new TextEncoder().encode(id)).replace(/^[ \t]+|[ \t]+$/g, "");
  return raw === "" ? null : raw;
}

describe("EventSource conformance: EventParserStream and connect() dispatch what Chromium does", {
  timeout: 120_000,
}, () => {
  let server: TestServer;
  let browserRun: Promise<BrowserResult[]> | undefined;

  /** Runs every case in one Chromium page, once (Bun ignores timeouts given to hooks). */
  function browserResults(): Promise<BrowserResult[]> {
    browserRun ??= (async () => {
      const results: BrowserResult[] = [];
      const browser: Browser = await launchBrowser();
      try {
        const page = await browser.newPage();
        await page.goto(`${server.origin}/`);
        for (let i = 0; i < CASES.length; i++) {
          const ours = await parse(CASES[i]!);
          results.push(
            await runInBrowser(page, `/case/${i}/chromium`, typesOf(CASES[i]!, ours.events)),
          );
        }
      } finally {
        await browser.close();
      }
      return results;
    })();
    return browserRun;
  }

  before(async () => {
    server = await serve(handle);
  });

  after(async () => {
    await browserRun?.catch(() => {});
    await server.close();
  });

  it("the table holds at least 40 cases", () => {
    assert.ok(CASES.length >= 40, `${CASES.length} cases`);
  });

  it("Chromium runs every case and dispatches events in nearly all of them", {
    timeout: 90_000,
  }, async () => {
    const results = await browserResults();
    assert.equal(results.length, CASES.length);
    const silent = results.filter((result) => result.events.length === 0).length;
    assert.ok(silent <= 3, `${silent} cases dispatched nothing in Chromium`);
  });

  CASES.forEach((fixture, i) => {
    it(`${fixture.name}: parser and connect() match Chromium`, { timeout: 15_000 }, async () => {
      const chromium = (await browserResults())[i];
      assert.ok(chromium !== undefined, "Chromium did not run the case");
      assert.equal(chromium.timedOut, false, "Chromium did not finish the case");
      const chromiumSession = sessions.get(`${i}/chromium`)!;
      assert.equal(chromiumSession.requests, 3);

      const parsed = await parse(fixture);
      assert.deepEqual(parsed.events, chromium.events);
      assert.equal(headerOf(parsed.id), chromiumSession.lastEventIdHeader);

      const events: ParsedEvent[] = [];
      const connection = connect(`${server.origin}/case/${i}/client`, {
        inactivityTimeout: 10_000,
        backoff: { jitter: 0, resetAfter: 0 }, // EventSource's schedule: every wait is retry: 20
      });
      for await (const event of connection) events.push(event);
      assert.deepEqual(events, chromium.events);
      const clientSession = sessions.get(`${i}/client`)!;
      assert.equal(clientSession.requests, 3);
      assert.equal(clientSession.lastEventIdHeader, chromiumSession.lastEventIdHeader);
    });
  });
});
