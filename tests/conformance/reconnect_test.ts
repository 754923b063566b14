import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../../src/client/mod.ts";
import type { ParsedEvent } from "../../src/event_parser_stream.ts";
import { serve } from "../_helpers.ts";
import { launchBrowser } from "../_browser.ts";

const ID = "é✓ 😀";

interface Visit {
  /** When the first response's body ended, as the server saw it. */
  endedAt?: number;
  /** When the reconnect arrived. */
  reconnectAt?: number;
  /** The raw (byte string) `Last-Event-ID` of the reconnect. */
  lastEventId?: string | null;
  requests: number;
}

describe("reconnection: Chromium and connect() agree", () => {
  it(
    "both send the same UTF-8 Last-Event-ID and wait the server's retry: 300 before reconnecting",
    {
      timeout: 60_000,
    },
    async () => {
      const visits = new Map<string, Visit>();
      const server = await serve((request) => {
        const url = new URL(request.url);
        if (url.pathname === "/") {
          return new Response("<!doctype html>", { headers: { "content-type": "text/html" } });
        }
        const visit = visits.get(url.pathname) ?? { requests: 0 };
        visits.set(url.pathname, visit);
        if (++visit.requests === 1) {
          const frame = new TextEncoder().encode(`retry: 300\nid: ${ID}\ndata: first\n\n`);
          let sent = false;
          const body = new ReadableStream<Uint8Array>({
            pull(controller) {
              if (sent) {
                visit.endedAt = Date.now();
                return controller.close();
              }
              sent = true;
              controller.enqueue(frame);
            },
          });
          return new Response(body, { headers: { "content-type": "text/event-stream" } });
        }
        visit.reconnectAt = Date.now();
        visit.lastEventId = request.headers.get("last-event-id");
        return new Response(null, { status: 204 });
      });
      const browser = await launchBrowser();
      try {
        const page = await browser.newPage();
        await page.goto(`${server.origin}/`);
        const chromium = await page.evaluate(() =>
          new Promise<ParsedEvent[]>((resolve, reject) => {
            const source = new EventSource("/chromium");
            const events: ParsedEvent[] = [];
            const timer = setTimeout(() => reject(new Error("EventSource did not finish")), 10_000);
            source.onmessage = (event) => {
              events.push({ type: event.type, data: event.data, lastEventId: event.lastEventId });
            };
            source.onerror = () => {
              if (source.readyState !== EventSource.CLOSED) return;
              clearTimeout(timer);
              resolve(events);
            };
          })
        );
        const ours: ParsedEvent[] = [];
        // jitter: 0 waits exactly the reconnection time, as EventSource does.
        const client = connect(`${server.origin}/client`, { backoff: { jitter: 0 } });
        for await (const event of client) ours.push(event);

        const want = [{ type: "message", data: "first", lastEventId: ID }];
        assert.deepEqual(chromium, want);
        assert.deepEqual(ours, want);
        const browserVisit = visits.get("/chromium")!;
        const clientVisit = visits.get("/client")!;
        const utf8 = String.fromCharCode(...new TextEncoder().encode(ID));
        assert.equal(browserVisit.lastEventId, utf8);
        assert.equal(clientVisit.lastEventId, browserVisit.lastEventId);
        for (
          const [who, visit] of [["Chromium", browserVisit], ["connect()", clientVisit]] as const
        ) {
          const waited = visit.reconnectAt! - visit.endedAt!;
          assert.equal(visit.requests, 2);
          assert.ok(waited >= 290 && waited < 10_000, `${who} reconnected after ${waited} ms`);
        }
      } finally {
        await browser.close();
        await server.close();
      }
    },
  );
});
