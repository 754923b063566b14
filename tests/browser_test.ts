import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  EventParserStream,
  EventStream,
  type ParsedEvent,
  type ServerSentEvent,
  sseResponse,
} from "../mod.ts";
import { collect, fromChunks, runtime, serve } from "./_helpers.ts";
import { type Page, withPage } from "./_browser.ts";

interface Recorded {
  opened: boolean;
  records: ParsedEvent[];
  failed?: boolean;
}

/** The page: `record(path, names)` opens an EventSource and resolves at the `end` event. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Flume EventSource test</title>
<script>
  window.record = (path, names) => new Promise((resolve) => {
    const source = new EventSource(path);
    const records = [];
    let opened = false;
    const push = (e) => records.push({ type: e.type, data: e.data, lastEventId: e.lastEventId });
    source.onopen = () => { opened = true; };
    source.onmessage = push;
    for (const name of names) source.addEventListener(name, push);
    source.addEventListener("end", () => {
      source.close();
      resolve({ opened, records });
    });
    source.onerror = () => {
      source.close();
      resolve({ opened, records, failed: true });
    };
  });
  window.timeToOpen = (path) => new Promise((resolve) => {
    const source = new EventSource(path);
    const started = performance.now();
    const timer = setTimeout(() => { source.close(); resolve(-1); }, 15000);
    source.onopen = () => {
      clearTimeout(timer);
      source.close();
      resolve(performance.now() - started);
    };
  });
</script>`;

const MEGABYTE = Array.from({ length: 1_048_576 }, (_, i) => String.fromCharCode(32 + (i % 95)))
  .join("");

/** What is sent, and what the browser must hand over for it (`null`: no event). */
const CASES: [ServerSentEvent, ParsedEvent | null][] = [
  [{ data: "plain" }, { type: "message", data: "plain", lastEventId: "" }],
  [{ data: "multi\nline\ntext" }, { type: "message", data: "multi\nline\ntext", lastEventId: "" }],
  [{ data: "cr\ronly\rbreaks" }, { type: "message", data: "cr\nonly\nbreaks", lastEventId: "" }],
  [{ data: "crlf\r\nbreaks\r\n" }, { type: "message", data: "crlf\nbreaks\n", lastEventId: "" }],
  [{ data: "😀 🇫🇷 👍🏽 𝄞 漢字" }, { type: "message", data: "😀 🇫🇷 👍🏽 𝄞 漢字", lastEventId: "" }],
  [{ data: "" }, { type: "message", data: "", lastEventId: "" }],
  [{ data: "\n" }, { type: "message", data: "\n", lastEventId: "" }],
  [{ data: " leading space" }, { type: "message", data: " leading space", lastEventId: "" }],
  [{ data: "  two leading" }, { type: "message", data: "  two leading", lastEventId: "" }],
  [{ data: ":colon first" }, { type: "message", data: ":colon first", lastEventId: "" }],
  [
    { data: "a\u2028b\u2029c\u0085d\0e" },
    { type: "message", data: "a\u2028b\u2029c\u0085d\0e", lastEventId: "" },
  ],
  [
    { data: { json: true, list: [1, "a\nb"], nested: { u: "ü😀" } } },
    {
      type: "message",
      data: '{"json":true,"list":[1,"a\\nb"],"nested":{"u":"ü😀"}}',
      lastEventId: "",
    },
  ],
  [{ data: MEGABYTE }, { type: "message", data: MEGABYTE, lastEventId: "" }],
  [{ event: "update", data: "named" }, { type: "update", data: "named", lastEventId: "" }],
  [{ event: "😀", data: "emoji name" }, { type: "😀", data: "emoji name", lastEventId: "" }],
  [{ event: " spaced", data: "spaced name" }, {
    type: " spaced",
    data: "spaced name",
    lastEventId: "",
  }],
  [{ id: "id-1", data: "with id" }, { type: "message", data: "with id", lastEventId: "id-1" }],
  [{ data: "keeps id" }, { type: "message", data: "keeps id", lastEventId: "id-1" }],
  [{ id: 42, data: "numeric id" }, { type: "message", data: "numeric id", lastEventId: "42" }],
  [{ id: " é 😀", data: "unicode id" }, {
    type: "message",
    data: "unicode id",
    lastEventId: " é 😀",
  }],
  [{ id: "only" }, null],
  [{ data: "after id-only" }, { type: "message", data: "after id-only", lastEventId: "only" }],
  [{ id: "", data: "reset id" }, { type: "message", data: "reset id", lastEventId: "" }],
  [{ comment: "a comment\nover two lines" }, null],
  [{ event: "update" }, null],
  [{ data: "type was reset" }, { type: "message", data: "type was reset", lastEventId: "" }],
  [{ retry: 5000, data: "with retry" }, { type: "message", data: "with retry", lastEventId: "" }],
];
const NAMES = ["update", "😀", " spaced"];

/** A raw body with every kind of line end, a BOM and fields the parser must ignore. */
const RAW = "\ufeffdata: cr\rdata: only\r\rdata: crlf\r\ndata: lines\r\n\r\n" +
  "data: lf\n\nid: ok\ndata: a\n\nid: bad\0id\ndata: b\n\n" +
  "event: update\rdata: mixed\r\n\n: comment\nunknown: field\ndata\n\n" +
  "data:no space\ndata:  two spaces\n\nretry: 1x\ndata: c\n\n" +
  "\ufeffdata: late BOM\n\nevent: end\ndata\n\n";

async function record(page: Page, path: string, names: string[]): Promise<Recorded> {
  return await page.evaluate(
    ([path, names]) =>
      (globalThis as unknown as {
        record(path: string, names: string[]): Promise<Recorded>;
      }).record(path, names),
    [path, names] as const,
  );
}

function handler(request: Request): Response {
  switch (new URL(request.url).pathname) {
    case "/":
      return new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } });
    case "/events":
      return sseResponse(async (stream) => {
        for (const [event] of CASES) await stream.send(event);
        await stream.publish("", { event: "end" });
      });
    case "/quiet":
      return new EventStream({ heartbeat: null }).response();
    case "/raw":
      return new Response(RAW, { headers: { "content-type": "text/event-stream" } });
    default:
      return new Response("Not found", { status: 404 });
  }
}

describe(`Chromium's EventSource against a ${runtime} server`, () => {
  it("EventSource receives every tricky payload intact", { timeout: 60_000 }, async () => {
    const server = await serve(handler);
    try {
      await withPage(async (page, errors) => {
        await page.goto(`${server.origin}/`);
        const { opened, records, failed } = await record(page, "/events", NAMES);
        assert.equal(failed, undefined, "the connection failed");
        assert.equal(opened, true);
        const expected = CASES.flatMap(([, parsed]) => parsed ? [parsed] : []);
        assert.equal(records.length, expected.length);
        for (const [i, want] of expected.entries()) {
          const got = records[i]!;
          // Compare the megabyte apart, so a mismatch does not print it whole.
          if (want.data.length > 1000) {
            assert.equal(got.data.length, want.data.length, `event ${i}: length`);
            assert.ok(got.data === want.data, `event ${i}: the 1 MB data differs`);
            assert.deepEqual({ ...got, data: "" }, { ...want, data: "" });
          } else assert.deepEqual(got, want, `event ${i}`);
        }
        assert.deepEqual(errors, []);
      });
    } finally {
      await server.close();
    }
  });

  it("EventSource fires onopen at once on a quiet stream", { timeout: 60_000 }, async () => {
    const server = await serve(handler);
    try {
      await withPage(async (page) => {
        await page.goto(`${server.origin}/`);
        const took = await page.evaluate(() =>
          (globalThis as unknown as { timeToOpen(path: string): Promise<number> }).timeToOpen(
            "/quiet",
          )
        );
        // The stream never sends an event nor a heartbeat: without the opening comment onopen
        // would not fire at all, so "fired" is the property; 15 s only tells never from slow.
        assert.ok(took >= 0, "onopen did not fire within 15 s");
      });
    } finally {
      await server.close();
    }
  });

  it(
    "EventParserStream reads a raw body exactly as EventSource does",
    { timeout: 60_000 },
    async () => {
      const parsed = await collect(fromChunks([RAW]).pipeThrough(new EventParserStream()));
      const server = await serve(handler);
      try {
        await withPage(async (page) => {
          await page.goto(`${server.origin}/`);
          const { records, failed } = await record(page, "/raw", NAMES);
          assert.equal(failed, undefined, "the connection failed");
          assert.deepEqual(parsed.at(-1)?.type, "end");
          assert.deepEqual(records, parsed.slice(0, -1));
          assert.ok(records.length >= 6, "the fixture exercises several events");
        });
      } finally {
        await server.close();
      }
    },
  );
});
