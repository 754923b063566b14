import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { EventSource } from "eventsource";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { connect } from "../../src/client/mod.ts";
import { sseResponse } from "../../src/sse_response.ts";
import type { ParsedEvent } from "../../src/event_parser_stream.ts";
import { serve, waitFor } from "../_helpers.ts";
import { launchBrowser } from "../_browser.ts";

/** Three events after `lastId`: odd ids are named `tick`, every data has two lines. */
function eventsAfter(lastId: number): { id: string; event?: string; data: string }[] {
  return [1, 2, 3].map((step) => {
    const n = lastId + step;
    const event = { id: String(n), data: `line ${n}\nsecond é` };
    return n % 2 === 1 ? { ...event, event: "tick" } : event;
  });
}

/** What an EventSource dispatches for `eventsAfter(0)` then `eventsAfter(3)`. */
const SIX: ParsedEvent[] = [...eventsAfter(0), ...eventsAfter(3)].map((event) => ({
  type: event.event ?? "message",
  data: event.data,
  lastEventId: event.id,
}));

/** Our server: each connection resumes after `Last-Event-ID`, sends three events and ends. */
async function flumeServer(
  lastIds: (string | null)[],
  extra: (request: Request) => Response | undefined = () => undefined,
) {
  return await serve((request) => {
    const answer = extra(request);
    if (answer !== undefined) return answer;
    const lastId = request.headers.get("last-event-id");
    lastIds.push(lastId);
    return sseResponse(async (stream) => {
      await stream.send({ retry: 20 });
      for (const event of eventsAfter(Number(lastId ?? 0))) await stream.send(event);
    }, { heartbeat: null });
  });
}

describe("interop", () => {
  it("the npm eventsource client reads our server and resumes with Last-Event-ID", async () => {
    const lastIds: (string | null)[] = [];
    const server = await flumeServer(lastIds);
    const source = new EventSource(`${server.origin}/`);
    try {
      const events: ParsedEvent[] = [];
      const record = (event: MessageEvent): void => {
        events.push({ type: event.type, data: event.data, lastEventId: event.lastEventId });
      };
      source.addEventListener("message", record);
      source.addEventListener("tick", record);
      await waitFor(() => events.length >= 6, 5_000, "six events");
      source.close();
      assert.deepEqual(events.slice(0, 6), SIX);
      assert.deepEqual(lastIds.slice(0, 2), [null, "3"]);
    } finally {
      source.close();
      await server.close();
    }
  });

  it("@microsoft/fetch-event-source in Chromium reads our server, headers included", {
    timeout: 60_000,
  }, async () => {
    const lastIds: (string | null)[] = [];
    const tokens: (string | null)[] = [];
    const library = new URL(
      "../../node_modules/@microsoft/fetch-event-source/lib/esm/",
      import.meta.url,
    );
    const modules = new Map<string, string>();
    for (const name of ["index", "fetch", "parse"]) {
      modules.set(name, await readFile(new URL(`${name}.js`, library), "utf8"));
    }
    const server = await flumeServer(lastIds, (request) => {
      const path = new URL(request.url).pathname;
      if (path === "/") {
        return new Response("<!doctype html>", { headers: { "content-type": "text/html" } });
      }
      // The ESM build imports "./fetch" and "./parse" without an extension.
      const file = path.match(/^\/fes\/(\w+?)(\.js)?$/);
      if (file !== null && modules.has(file[1]!)) {
        return new Response(modules.get(file[1]!), {
          headers: { "content-type": "text/javascript" },
        });
      }
      if (path !== "/stream") return new Response("not found", { status: 404 });
      tokens.push(request.headers.get("x-token"));
      return undefined;
    });
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(`${server.origin}/`);
      const events = await page.evaluate(async () => {
        const { fetchEventSource } = await import(`${location.origin}/fes/index.js`);
        const out: { type: string; data: string; lastEventId: string }[] = [];
        await fetchEventSource("/stream", {
          headers: { "X-Token": "secret" },
          openWhenHidden: true,
          onmessage(message: { event: string; data: string; id: string }) {
            // Unlike EventSource it also reports blocks without data (our opening comment and
            // the retry-only frame) as empty messages; those are not events.
            if (message.data === "" && message.event === "") return;
            out.push({
              type: message.event || "message",
              data: message.data,
              lastEventId: message.id,
            });
          },
          onerror(error: unknown) {
            throw error; // no retry: the first connection is what is compared
          },
        });
        return out;
      });
      // It does not reconnect after a clean end (its known gap): one connection, three events.
      assert.deepEqual(events, SIX.slice(0, 3));
      assert.deepEqual(tokens, ["secret"]);
      assert.deepEqual(lastIds, [null]);
    } finally {
      await browser.close();
      await server.close();
    }
  });

  it("connect() reads Hono's streamSSE and resumes with Last-Event-ID", async () => {
    const lastIds: (string | undefined)[] = [];
    const app = new Hono();
    app.get("/events", (c) => {
      const lastId = c.req.header("last-event-id");
      lastIds.push(lastId);
      return streamSSE(c, async (stream) => {
        for (const event of eventsAfter(Number(lastId ?? 0))) {
          await stream.writeSSE({ ...event, retry: 20 });
        }
      });
    });
    const server = await serve((request) => app.fetch(request));
    try {
      const events: ParsedEvent[] = [];
      const connection = connect(`${server.origin}/events`);
      for await (const event of connection) {
        events.push(event);
        if (events.length === 6) break;
      }
      assert.deepEqual(events, SIX);
      assert.deepEqual(lastIds, [undefined, "3"]);
      assert.equal(connection.lastEventId, "6");
    } finally {
      await server.close();
    }
  });
});
