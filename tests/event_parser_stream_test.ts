import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  EventParserStream,
  type EventParserStreamOptions,
  EventTooLargeError,
  type ParsedEvent,
} from "../mod.ts";
import { collect, everySplit, fromChunks } from "./_helpers.ts";

const utf8 = new TextEncoder();

interface Outcome {
  events: ParsedEvent[];
  retries: number[];
  comments: string[];
  lastEventId: string;
}

async function parse(
  chunks: readonly (string | Uint8Array)[],
  options: EventParserStreamOptions = {},
): Promise<Outcome> {
  const retries: number[] = [];
  const comments: string[] = [];
  const parser = new EventParserStream({
    ...options,
    onRetry: (ms) => retries.push(ms),
    onComment: (text) => comments.push(text),
  });
  const events = await collect(fromChunks(chunks).pipeThrough(parser));
  return { events, retries, comments, lastEventId: parser.lastEventId };
}

/** Every byte-level cut of `bytes` in two: UTF-8 sequences get cut in the middle too. */
function everyByteSplit(bytes: Uint8Array): [Uint8Array, Uint8Array][] {
  const out: [Uint8Array, Uint8Array][] = [];
  for (let i = 0; i <= bytes.length; i++) out.push([bytes.subarray(0, i), bytes.subarray(i)]);
  return out;
}

function oneByOne<T extends { length: number; slice(start: number, end: number): T }>(
  input: T,
): T[] {
  const out: T[] = [];
  for (let i = 0; i < input.length; i++) out.push(input.slice(i, i + 1));
  return out;
}

const msg = (data: string, lastEventId = ""): ParsedEvent => ({
  type: "message",
  data,
  lastEventId,
});

interface Fixture {
  name: string;
  /** The body, as text or as raw bytes (for invalid UTF-8). */
  input: string | Uint8Array;
  events: ParsedEvent[];
  retries?: number[];
  comments?: string[];
  lastEventId?: string;
  options?: EventParserStreamOptions;
}

/**
 * [spec] https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
 * Each fixture is run whole, cut in two at every point (as text and as bytes, so UTF-8 sequences
 * and CRLF pairs get cut), one character at a time and one byte at a time.
 */
const fixtures: Fixture[] = [
  { name: "a single event", input: "data: hello\n\n", events: [msg("hello")] },
  {
    name: "two events",
    input: "data: one\n\ndata: two\n\n",
    events: [msg("one"), msg("two")],
  },
  { name: "LF line ends", input: "data: a\ndata: b\n\n", events: [msg("a\nb")] },
  { name: "CR line ends", input: "data: a\rdata: b\r\r", events: [msg("a\nb")] },
  { name: "CRLF line ends", input: "data: a\r\ndata: b\r\n\r\n", events: [msg("a\nb")] },
  {
    name: "mixed line ends",
    input: "data: a\rdata: b\ndata: c\r\n\ndata: d\n\r",
    events: [msg("a\nb\nc"), msg("d")],
  },
  {
    name: "LF CR as two line ends (a blank line)",
    input: "data: a\n\rdata: b\n\n",
    events: [msg("a"), msg("b")],
  },
  { name: "CR CR as a blank line", input: "data: a\r\rdata: b\r\r", events: [msg("a"), msg("b")] },
  {
    name: "CRLF CRLF as a blank line, not two",
    input: "data: a\r\n\r\ndata: b\r\n\r\n",
    events: [msg("a"), msg("b")],
  },
  { name: "a field without a colon (an empty value)", input: "data\n\n", events: [msg("")] },
  { name: "two bare data lines", input: "data\ndata\n\n", events: [msg("\n")] },
  { name: "an empty data value", input: "data:\n\n", events: [msg("")] },
  { name: "no space after the colon", input: "data:x\n\n", events: [msg("x")] },
  { name: "only one leading space stripped", input: "data:  x\n\n", events: [msg(" x")] },
  { name: "a value of spaces", input: "data:    \n\n", events: [msg("   ")] },
  { name: "a tab not stripped", input: "data:\tx\n\n", events: [msg("\tx")] },
  { name: "trailing spaces kept", input: "data: x  \n\n", events: [msg("x  ")] },
  { name: "colons inside the value kept", input: "data: a: b:c\n\n", events: [msg("a: b:c")] },
  { name: "the trailing LF of data removed", input: "data: a\ndata:\n\n", events: [msg("a\n")] },
  {
    name: "unknown fields ignored",
    input: "foo: bar\ndata: x\nDATA: y\ndata : z\nEvent: nope\n\n",
    events: [msg("x")],
  },
  {
    name: "an event type",
    input: "event: add\ndata: 1\n\n",
    events: [{ type: "add", data: "1", lastEventId: "" }],
  },
  {
    name: "the last event field of a block",
    input: "event: a\nevent: b\ndata: 1\n\n",
    events: [{ type: "b", data: "1", lastEventId: "" }],
  },
  {
    name: "an empty event field as message",
    input: "event:\ndata: 1\n\n",
    events: [msg("1")],
  },
  {
    name: "the event type reset after each dispatch",
    input: "event: a\ndata: 1\n\ndata: 2\n\n",
    events: [{ type: "a", data: "1", lastEventId: "" }, msg("2")],
  },
  {
    name: "the event type reset by a block without data",
    input: "event: a\n\ndata: 2\n\n",
    events: [msg("2")],
  },
  {
    name: "an event type with a leading space kept after the first",
    input: "event:  spaced\ndata: 1\n\n",
    events: [{ type: " spaced", data: "1", lastEventId: "" }],
  },
  {
    name: "ids carried to later events",
    input: "id: 1\ndata: a\n\ndata: b\n\n",
    events: [msg("a", "1"), msg("b", "1")],
    lastEventId: "1",
  },
  {
    name: "an id with NUL ignored",
    input: "id: 1\ndata: a\n\nid: x\0y\ndata: b\n\n",
    events: [msg("a", "1"), msg("b", "1")],
    lastEventId: "1",
  },
  {
    name: "an empty id resetting the last event id",
    input: "id: 5\ndata: a\n\nid\ndata: b\n\nid: 6\ndata: c\n\nid:\ndata: d\n\n",
    events: [msg("a", "5"), msg("b", ""), msg("c", "6"), msg("d", "")],
    lastEventId: "",
  },
  {
    name: "an id-only block setting the last event id",
    input: "data: a\n\nid: 9\n\n",
    events: [msg("a")],
    lastEventId: "9",
  },
  {
    name: "an id whose blank line never came not setting the last event id",
    input: "id: 1\ndata: a\n\nid: 2\n",
    events: [msg("a", "1")],
    lastEventId: "1",
  },
  {
    name: "an id after data in the same block",
    input: "data: a\nid: 3\n\n",
    events: [msg("a", "3")],
    lastEventId: "3",
  },
  {
    name: "an id with spaces and emoji",
    input: "id:  a b 😀\ndata: x\n\n",
    events: [msg("x", " a b 😀")],
    lastEventId: " a b 😀",
  },
  {
    name: "retry with ASCII digits only",
    input:
      "retry: 1000\nretry: 10a\nretry: -1\nretry: 1.5\nretry:\nretry:  20\nretry: \u0661\u0662\nretry: 0\nretry\n\n",
    events: [],
    retries: [1000, 0],
  },
  {
    name: "retry inside an event",
    input: "data: a\nretry: 250\n\n",
    events: [msg("a")],
    retries: [250],
  },
  {
    name: "comments",
    input: ": one\n:two\n:  three\n:\ndata: x\n: four\n\n",
    events: [msg("x")],
    comments: ["one", "two", " three", "", "four"],
  },
  { name: "blank lines alone dispatching nothing", input: "\n\n\r\n\r\r", events: [] },
  { name: "an event type alone dispatching nothing", input: "event: x\n\n", events: [] },
  {
    name: "an event without a blank line not dispatched",
    input: "data: a\n\ndata: b\n",
    events: [msg("a")],
  },
  {
    name: "an unterminated last line not dispatched",
    input: "data: a\n\ndata: b",
    events: [msg("a")],
  },
  { name: "a trailing CR ending the last event", input: "data: a\r\r", events: [msg("a")] },
  { name: "one leading BOM stripped", input: "\ufeffdata: a\n\n", events: [msg("a")] },
  {
    name: "a second leading BOM kept (the line becomes an unknown field)",
    input: "\ufeff\ufeffdata: a\n\ndata: b\n\n",
    events: [msg("b")],
  },
  {
    name: "a BOM after the start kept in the field name",
    input: "data: a\n\n\ufeffdata: b\n\n",
    events: [msg("a")],
  },
  { name: "a BOM inside data kept", input: "data: \ufeffx\n\n", events: [msg("\ufeffx")] },
  {
    name: "multi-byte UTF-8 text",
    input: "event: é\ndata: 漢字 😀 👍🏽\n\n",
    events: [{ type: "é", data: "漢字 😀 👍🏽", lastEventId: "" }],
  },
  {
    name: "U+2028, U+2029 and U+0085 not treated as line ends",
    input: "data: a\u2028b\u2029c\u0085d\n\n",
    events: [msg("a\u2028b\u2029c\u0085d")],
  },
  { name: "NUL inside data kept", input: "data: a\0b\n\n", events: [msg("a\0b")] },
  {
    name: "invalid UTF-8 bytes as replacement characters",
    input: new Uint8Array([...utf8.encode("data: a"), 0xff, 0x62, 0xc3, 0x28, 0x0a, 0x0a]),
    events: [msg("a\ufffdb\ufffd(")],
  },
  {
    name: "a truncated UTF-8 sequence as one replacement character",
    input: new Uint8Array([...utf8.encode("data: "), 0xe2, 0x82, 0x41, 0x0a, 0x0a]),
    events: [msg("\ufffdA")],
  },
  {
    name: "a UTF-8 BOM as bytes stripped once",
    input: new Uint8Array([0xef, 0xbb, 0xbf, ...utf8.encode("data: a\n\n")]),
    events: [msg("a")],
  },
  {
    name: "two UTF-8 BOMs as bytes, the second kept",
    input: new Uint8Array([
      0xef,
      0xbb,
      0xbf,
      0xef,
      0xbb,
      0xbf,
      ...utf8.encode("data: a\n\ndata: b\n\n"),
    ]),
    events: [msg("b")],
  },
  {
    name: "a lastEventId option carried over",
    input: "data: a\n\nid: 2\ndata: b\n\n",
    options: { lastEventId: "1" },
    events: [msg("a", "1"), msg("b", "2")],
    lastEventId: "2",
  },
  {
    name: "a lastEventId option kept when nothing is dispatched",
    input: "data: unterminated\n",
    options: { lastEventId: "7" },
    events: [],
    lastEventId: "7",
  },
];

describe("EventParserStream follows the event stream interpretation rules", () => {
  for (const fixture of fixtures) {
    const expected: Outcome = {
      events: fixture.events,
      retries: fixture.retries ?? [],
      comments: fixture.comments ?? [],
      lastEventId: fixture.lastEventId ?? fixture.options?.lastEventId ?? "",
    };
    const bytes = typeof fixture.input === "string" ? utf8.encode(fixture.input) : fixture.input;

    it(`EventParserStream parses ${fixture.name}`, async () => {
      assert.deepEqual(await parse([fixture.input], fixture.options), expected);
    });

    if (typeof fixture.input === "string") {
      const text = fixture.input;
      it(`EventParserStream parses ${fixture.name} cut at every point of the text`, async () => {
        for (const [head, tail] of everySplit(text)) {
          assert.deepEqual(
            await parse([head, tail], fixture.options),
            expected,
            `cut at ${head.length}: ${JSON.stringify(head)} | ${JSON.stringify(tail)}`,
          );
        }
      });
      it(`EventParserStream parses ${fixture.name} one character at a time`, async () => {
        assert.deepEqual(await parse(oneByOne(text), fixture.options), expected);
      });
    }

    it(`EventParserStream parses ${fixture.name} cut at every byte`, async () => {
      for (const [head, tail] of everyByteSplit(bytes)) {
        assert.deepEqual(
          await parse([head, tail], fixture.options),
          expected,
          `cut at byte ${head.length}`,
        );
      }
    });
    it(`EventParserStream parses ${fixture.name} one byte at a time`, async () => {
      assert.deepEqual(await parse(oneByOne(bytes), fixture.options), expected);
    });
  }
});

describe("EventParserStream chunking", () => {
  it("EventParserStream joins a CRLF split across chunks with empty chunks between", async () => {
    const outcome = await parse([
      "data: a\r",
      "",
      new Uint8Array(0),
      "\n",
      "\r",
      "",
      "\ndata: b\n\n",
    ]);
    assert.deepEqual(outcome.events, [msg("a"), msg("b")]);
  });

  it("EventParserStream treats a CR at a chunk end followed by text as a line end", async () => {
    const outcome = await parse(["data: a\r", "data: b\r", "\r"]);
    assert.deepEqual(outcome.events, [msg("a\nb")]);
  });

  it("EventParserStream joins a CR that ends a chunk with the LF that starts the next", async () => {
    const outcome = await parse(["data: a\r", "\ndata: b\r\n\r\n"]);
    assert.deepEqual(outcome.events, [msg("a\nb")]);
    const crOnlyChunk = await parse(["data: a\n", "data: b\r", "\n\n"]);
    assert.deepEqual(crOnlyChunk.events, [msg("a\nb")]);
  });

  it("EventParserStream accepts string and Uint8Array chunks in one stream", async () => {
    const outcome = await parse([utf8.encode("data: a"), "\n", utf8.encode("\ndata: "), "b\n\n"]);
    assert.deepEqual(outcome.events, [msg("a"), msg("b")]);
  });

  it("EventParserStream decodes an emoji split across three byte chunks", async () => {
    const emoji = utf8.encode("😀");
    const outcome = await parse([
      utf8.encode("data: "),
      emoji.subarray(0, 1),
      emoji.subarray(1, 3),
      emoji.subarray(3),
      utf8.encode("\n\n"),
    ]);
    assert.deepEqual(outcome.events, [msg("😀")]);
  });

  it("EventParserStream turns an incomplete UTF-8 sequence at the end into a replacement character", async () => {
    const parser = new EventParserStream();
    const writer = parser.writable.getWriter();
    const reading = collect(parser.readable);
    await writer.write(utf8.encode("data: a\n\n"));
    await writer.write(new Uint8Array([0xe2, 0x82]));
    await writer.close();
    // The replacement character lands in a line that never ends: nothing more is dispatched.
    assert.deepEqual(await reading, [msg("a")]);
  });

  it("EventParserStream handles a very long line within the limit fed in many chunks", async () => {
    const data = "x".repeat(1_000_000);
    const chunks: string[] = ["data: "];
    for (let i = 0; i < data.length; i += 1000) chunks.push(data.slice(i, i + 1000));
    chunks.push("\n\n");
    const outcome = await parse(chunks, { maxEventSize: 1_000_100 });
    assert.equal(outcome.events.length, 1);
    assert.equal(outcome.events[0]!.data, data);
  });

  it("EventParserStream handles a very long line with the default limit in one chunk", async () => {
    const data = "y".repeat(4_000_000);
    const outcome = await parse([`data: ${data}\n\n`]);
    assert.equal(outcome.events[0]!.data.length, data.length);
  });
});

describe("EventParserStream limits", () => {
  it("EventParserStream errors with EventTooLargeError when a line without an end exceeds maxEventSize", async () => {
    const stream = fromChunks(["data: ", "x".repeat(60), "x".repeat(60)])
      .pipeThrough(new EventParserStream({ maxEventSize: 100 }));
    await assert.rejects(collect(stream), (error: unknown) => {
      assert.ok(error instanceof EventTooLargeError);
      assert.ok(error instanceof RangeError);
      assert.equal(error.name, "EventTooLargeError");
      assert.equal(error.limit, 100);
      assert.match(error.message, /^Cannot parse event stream: /);
      return true;
    });
  });

  it("EventParserStream errors with EventTooLargeError when many data lines exceed maxEventSize", async () => {
    const lines = Array.from({ length: 20 }, () => "data: 0123456789\n").join("");
    const stream = fromChunks([lines, "\n"]).pipeThrough(
      new EventParserStream({ maxEventSize: 100 }),
    );
    await assert.rejects(collect(stream), EventTooLargeError);
  });

  it("EventParserStream dispatches events below maxEventSize that add up to more", async () => {
    const text = Array.from({ length: 50 }, (_, i) => `data: ${String(i).padStart(40, "0")}\n\n`);
    const outcome = await parse([text.join("")], { maxEventSize: 100 });
    assert.equal(outcome.events.length, 50);
  });

  it("EventParserStream refuses a maxEventSize that is not positive", () => {
    for (const maxEventSize of [0, -1, NaN]) {
      assert.throws(() => new EventParserStream({ maxEventSize }), RangeError);
    }
  });
});

describe("EventParserStream lastEventId getter", () => {
  it("EventParserStream updates lastEventId at dispatch points only", async () => {
    const parser = new EventParserStream({ lastEventId: "start" });
    assert.equal(parser.lastEventId, "start");
    const writer = parser.writable.getWriter();
    const reader = parser.readable.getReader();

    // A pending read lifts the backpressure, so each write is parsed as soon as it is made.
    let next = reader.read();
    await writer.write("id: 1\ndata: a\n\n");
    assert.deepEqual((await next).value, msg("a", "1"));
    assert.equal(parser.lastEventId, "1");

    next = reader.read();
    // An id whose block has not ended yet is not in force.
    await writer.write("id: 2\ndata: b\n");
    assert.equal(parser.lastEventId, "1");
    await writer.write("\n");
    assert.deepEqual((await next).value, msg("b", "2"));
    assert.equal(parser.lastEventId, "2");

    next = reader.read();
    // An id-only block is a dispatch point too, as for EventSource.
    await writer.write("id: 3\n\n");
    assert.equal(parser.lastEventId, "3");
    await writer.write("id\n\n");
    assert.equal(parser.lastEventId, "");
    await writer.write("id: 4\n");
    await writer.close();
    assert.equal((await next).done, true);
    assert.equal(parser.lastEventId, "", "an id cut off by the end of the stream is not in force");
  });
});
