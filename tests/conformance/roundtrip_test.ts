import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../../src/client/mod.ts";
import { formatEvent, type ServerSentEvent } from "../../src/format_event.ts";
import type { ParsedEvent } from "../../src/event_parser_stream.ts";
import { serve } from "../_helpers.ts";
import { launchBrowser } from "../_browser.ts";

/** Payloads the wire format makes tricky: spaces, line breaks, colons, NUL, non-ASCII. */
const PAYLOADS: ServerSentEvent[] = [
  { data: " leading space" },
  { data: "  two leading spaces" },
  { data: "trailing space " },
  { data: "" },
  { data: "\n" },
  { data: "a\r\nb\rc\nd" },
  { data: "\r" },
  { data: "data: looks like a field" },
  { data: ":colon first" },
  { data: "a:b::c" },
  { data: "\u2028 and \u0085 stay" },
  { data: "emoji 😀 and 𝄞" },
  { data: "nul \0 inside" },
  { data: "\ttab first" },
  { data: { nested: ["x\ny", 1, null], quote: '"' } },
  { data: null },
  { data: new TextEncoder().encode("bytes é") },
  { event: "custom type", data: "named" },
  { event: " spaced", data: "spaced name" },
  { id: "é✓ 😀", data: "non-ASCII id" },
  { id: 0, data: "numeric id" },
  { data: "id carried over" },
  { id: "", data: "id reset" },
  { comment: "a comment\nof two lines", data: "after a comment" },
  { id: "only-id" },
  { data: "after an id-only frame" },
  { data: "x".repeat(100_000) },
];

/** What EventSource must dispatch for the payloads, derived from the input. */
function expected(payloads: ServerSentEvent[]): ParsedEvent[] {
  const out: ParsedEvent[] = [];
  let lastEventId = "";
  for (const payload of payloads) {
    if (payload.id !== undefined) lastEventId = String(payload.id);
    if (payload.data === undefined) continue;
    const text = typeof payload.data === "string"
      ? payload.data
      : payload.data instanceof Uint8Array
      ? new TextDecoder().decode(payload.data)
      : JSON.stringify(payload.data);
    out.push({
      type: payload.event ?? "message",
      data: text.replace(/\r\n|\r/g, "\n"),
      lastEventId,
    });
  }
  return out;
}

describe("round trip: formatEvent output parsed by Chromium and connect() equals the input", () => {
  it("Chromium's EventSource and connect() dispatch every tricky payload as given", {
    timeout: 60_000,
  }, async () => {
    const body = formatEvent({ retry: 20 }) + PAYLOADS.map(formatEvent).join("");
    const served = new Map<string, number>();
    const server = await serve((request) => {
      const url = new URL(request.url);
      if (url.pathname === "/") {
        return new Response("<!doctype html>", { headers: { "content-type": "text/html" } });
      }
      const count = (served.get(url.pathname) ?? 0) + 1;
      served.set(url.pathname, count);
      // The reconnect after the stream ends is told to stop.
      if (count > 1) return new Response(null, { status: 204 });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    });
    const browser = await launchBrowser();
    try {
      const want = expected(PAYLOADS);
      const types = [...new Set(want.map((event) => event.type))];
      const page = await browser.newPage();
      await page.goto(`${server.origin}/`);
      const chromium = await page.evaluate(
        ({ types }) =>
          new Promise<ParsedEvent[]>((resolve, reject) => {
            const source = new EventSource("/chromium");
            const events: ParsedEvent[] = [];
            const timer = setTimeout(() => reject(new Error("EventSource did not finish")), 10_000);
            for (const type of types) {
              source.addEventListener(type, (event) => {
                const { data, lastEventId } = event as MessageEvent;
                events.push({ type: event.type, data, lastEventId });
              });
            }
            source.onerror = () => {
              if (source.readyState !== EventSource.CLOSED) return;
              clearTimeout(timer);
              resolve(events);
            };
          }),
        { types },
      );
      assert.deepEqual(chromium, want);

      const ours: ParsedEvent[] = [];
      for await (const event of connect(`${server.origin}/client`)) ours.push(event);
      assert.deepEqual(ours, want);
    } finally {
      await browser.close();
      await server.close();
    }
  });
});
