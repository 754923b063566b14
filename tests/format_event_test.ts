import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { EventParserStream, formatEvent, type ParsedEvent, type ServerSentEvent } from "../mod.ts";
import { collect, fromChunks } from "./_helpers.ts";

const utf8 = new TextEncoder();

/** Parses frames the way a browser would, keeping retries and comments too. */
async function parse(
  text: string,
): Promise<{ events: ParsedEvent[]; retries: number[]; comments: string[] }> {
  const retries: number[] = [];
  const comments: string[] = [];
  const parser = new EventParserStream({
    onRetry: (ms) => retries.push(ms),
    onComment: (comment) => comments.push(comment),
  });
  const events = await collect(fromChunks([text]).pipeThrough(parser));
  return { events, retries, comments };
}

describe("formatEvent encodes each field", () => {
  const table: [string, ServerSentEvent, string][] = [
    ["a string as is", { data: "hello" }, "data: hello\n\n"],
    ["an empty string as an empty data line", { data: "" }, "data: \n\n"],
    [
      "a Uint8Array as the UTF-8 text it holds",
      { data: utf8.encode("héllo 🎉") },
      "data: héllo 🎉\n\n",
    ],
    ["an empty Uint8Array as an empty data line", { data: new Uint8Array(0) }, "data: \n\n"],
    ["an object as JSON", { data: { a: 1, b: [true, "x"] } }, 'data: {"a":1,"b":[true,"x"]}\n\n'],
    ["null as JSON", { data: null }, "data: null\n\n"],
    ["a number as JSON", { data: 0 }, "data: 0\n\n"],
    ["false as JSON", { data: false }, "data: false\n\n"],
    ["an array as JSON", { data: [1, "a"] }, 'data: [1,"a"]\n\n'],
    [
      "a string inside JSON with its line breaks escaped",
      { data: { s: "a\nb" } },
      'data: {"s":"a\\nb"}\n\n',
    ],
    ["undefined data as no data line", { event: "ping" }, "event: ping\n\n"],
    ["an empty event as a lone blank line", {}, "\n"],
    ["an event type", { event: "update", data: "x" }, "event: update\ndata: x\n\n"],
    ["a string id", { id: "abc", data: "x" }, "id: abc\ndata: x\n\n"],
    ["a numeric id", { id: 42, data: "x" }, "id: 42\ndata: x\n\n"],
    ["a zero id", { id: 0 }, "id: 0\n\n"],
    ["an empty id, which resets the last event id", { id: "" }, "id: \n\n"],
    ["retry", { retry: 3000 }, "retry: 3000\n\n"],
    ["retry 0", { retry: 0 }, "retry: 0\n\n"],
    ["a comment", { comment: "hello" }, ": hello\n\n"],
    ["an empty comment as a bare colon", { comment: "" }, ":\n\n"],
    [
      "a multi-line comment as one line each",
      { comment: "a\nb\r\nc\rd" },
      ": a\n: b\n: c\n: d\n\n",
    ],
    ["empty comment lines as bare colons", { comment: "a\n\nb" }, ": a\n:\n: b\n\n"],
    [
      "every field, comment first and data last",
      { data: "d", event: "e", id: "i", retry: 5, comment: "c" },
      ": c\nevent: e\nid: i\nretry: 5\ndata: d\n\n",
    ],
  ];
  for (const [what, event, frame] of table) {
    it(`formatEvent encodes ${what}`, () => {
      assert.equal(formatEvent(event), frame);
    });
  }
});

describe("formatEvent splits multi-line data on CRLF, CR and LF only", () => {
  const table: [string, string, string][] = [
    ["LF", "a\nb", "data: a\ndata: b\n\n"],
    ["CRLF", "a\r\nb", "data: a\ndata: b\n\n"],
    ["CR", "a\rb", "data: a\ndata: b\n\n"],
    ["mixed", "a\r\nb\rc\nd", "data: a\ndata: b\ndata: c\ndata: d\n\n"],
    ["LF CR as two breaks", "a\n\rb", "data: a\ndata: \ndata: b\n\n"],
    ["a leading break", "\nx", "data: \ndata: x\n\n"],
    ["a trailing break", "x\n", "data: x\ndata: \n\n"],
    ["a lone break", "\n", "data: \ndata: \n\n"],
    ["blank lines inside", "a\n\n\nb", "data: a\ndata: \ndata: \ndata: b\n\n"],
    ["a Uint8Array with CRLF", "a\r\nb", "data: a\ndata: b\n\n"],
  ];
  for (const [what, data, frame] of table) {
    it(`formatEvent splits data on ${what}`, () => {
      const input = what.startsWith("a Uint8Array") ? utf8.encode(data) : data;
      assert.equal(formatEvent({ data: input }), frame);
    });
  }

  for (const [name, char] of [["U+2028", "\u2028"], ["U+2029", "\u2029"], ["U+0085", "\u0085"]]) {
    it(`formatEvent keeps ${name} inside a data line`, () => {
      assert.equal(formatEvent({ data: `a${char}b` }), `data: a${char}b\n\n`);
      assert.equal(formatEvent({ comment: `a${char}b` }), `: a${char}b\n\n`);
      assert.equal(formatEvent({ data: `a${char}b\nc` }), `data: a${char}b\ndata: c\n\n`);
      assert.equal(formatEvent({ comment: `a${char}b\nc` }), `: a${char}b\n: c\n\n`);
    });
  }
});

describe("formatEvent writes `field: value` with the space", () => {
  it("formatEvent keeps a value's own leading space, which the parser's removal of one spares", async () => {
    const frame = formatEvent({ event: " spaced", id: " 7", data: "  two spaces" });
    assert.equal(frame, "event:  spaced\nid:  7\ndata:   two spaces\n\n");
    const { events } = await parse(frame);
    assert.deepEqual(events, [{ type: " spaced", data: "  two spaces", lastEventId: " 7" }]);
  });

  it("formatEvent keeps a data value that starts with a colon or looks like a field", async () => {
    const frame = formatEvent({ data: ":not a comment\ndata: nested\nevent: fake" });
    assert.equal(frame, "data: :not a comment\ndata: data: nested\ndata: event: fake\n\n");
    const { events, comments } = await parse(frame);
    assert.deepEqual(comments, []);
    assert.deepEqual(events, [{
      type: "message",
      data: ":not a comment\ndata: nested\nevent: fake",
      lastEventId: "",
    }]);
  });
});

describe("formatEvent refuses field injection", () => {
  const injections: [string, ServerSentEvent][] = [
    ["an event with LF", { event: "x\ndata: injected", data: "y" }],
    ["an event with CR", { event: "x\rdata: injected", data: "y" }],
    ["an event with CRLF", { event: "x\r\n\r\ndata: injected", data: "y" }],
    ["an event that is a lone LF", { event: "\n" }],
    ["an id with LF", { id: "1\nevent: injected", data: "y" }],
    ["an id with CR", { id: "1\revent: injected", data: "y" }],
    ["an id with CRLF", { id: "1\r\n\r\ndata: injected" }],
  ];
  for (const [what, event] of injections) {
    it(`formatEvent throws a TypeError for ${what}`, () => {
      assert.throws(() => formatEvent(event), (error: unknown) => {
        assert.ok(error instanceof TypeError);
        assert.match(error.message, /^Cannot encode event: `(event|id)` contains a line break$/);
        return true;
      });
    });
  }
});

describe("formatEvent refuses input the wire cannot carry", () => {
  const typeErrors: [string, ServerSentEvent][] = [
    ["an id with NUL", { id: "a\0b" }],
    ["a lone high surrogate in data", { data: "a\ud800b" }],
    ["a lone low surrogate in data", { data: "a\udc00" }],
    ["a reversed surrogate pair in data", { data: "\udc00\ud800" }],
    ["a lone surrogate in event", { event: "\ud83d" }],
    ["a lone surrogate in id", { id: "x\udfff" }],
    ["a lone surrogate in comment", { comment: "\ud800" }],
    ["a lone surrogate on a later line of data", { data: "ok\n\ud800" }],
    ["invalid UTF-8 bytes", { data: new Uint8Array([0x61, 0xff, 0x62]) }],
    ["a truncated UTF-8 sequence", { data: new Uint8Array([0xe2, 0x82]) }],
    ["an overlong UTF-8 encoding", { data: new Uint8Array([0xc0, 0x80]) }],
    ["a UTF-8 encoded surrogate", { data: new Uint8Array([0xed, 0xa0, 0x80]) }],
    ["a function as data", { data: () => 1 }],
    ["a symbol as data", { data: Symbol("s") }],
    ["a non-string event", { event: 1 as unknown as string }],
    ["a non-string comment", { comment: null as unknown as string }],
    ["an object id", { id: {} as unknown as string }],
  ];
  for (const [what, event] of typeErrors) {
    it(`formatEvent throws a TypeError for ${what}`, () => {
      assert.throws(() => formatEvent(event), (error: unknown) => {
        assert.ok(error instanceof TypeError, `expected a TypeError, got ${error}`);
        assert.match(error.message, /^Cannot encode event: /);
        return true;
      });
    });
  }

  it("formatEvent throws a TypeError with the cause for circular data", () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    assert.throws(() => formatEvent({ data: circular }), (error: unknown) => {
      assert.ok(error instanceof TypeError);
      assert.ok(error.cause instanceof TypeError, "the JSON error is the cause");
      assert.equal(error.message, "Cannot encode event: `data` cannot be encoded as JSON");
      return true;
    });
  });

  it("formatEvent throws a TypeError with the cause for a BigInt", () => {
    for (const data of [10n, { n: 10n }]) {
      assert.throws(() => formatEvent({ data }), (error: unknown) => {
        assert.ok(error instanceof TypeError);
        assert.ok(error.cause instanceof Error, "the JSON error is the cause");
        return true;
      });
    }
  });

  it("formatEvent keeps the UTF-8 decoding error as the cause of invalid bytes", () => {
    assert.throws(() => formatEvent({ data: new Uint8Array([0xff]) }), (error: unknown) => {
      assert.ok(error instanceof TypeError);
      assert.equal(error.message, "Cannot encode event: `data` bytes are not valid UTF-8");
      assert.ok(error.cause instanceof Error);
      return true;
    });
  });

  const rangeErrors: [string, ServerSentEvent][] = [
    ["a negative retry", { retry: -1 }],
    ["a fractional retry", { retry: 1.5 }],
    ["a NaN retry", { retry: NaN }],
    ["an infinite retry", { retry: Infinity }],
    ["a retry beyond the safe integers", { retry: 2 ** 53 }],
    ["a string retry", { retry: "100" as unknown as number }],
    ["a NaN id", { id: NaN }],
    ["an infinite id", { id: -Infinity }],
  ];
  for (const [what, event] of rangeErrors) {
    it(`formatEvent throws a RangeError for ${what}`, () => {
      assert.throws(() => formatEvent(event), (error: unknown) => {
        assert.ok(error instanceof RangeError, `expected a RangeError, got ${error}`);
        assert.match(error.message, /^Cannot encode event: `(retry|id)` must be /);
        return true;
      });
    });
  }

  it("formatEvent throws a TypeError for something that is not an object", () => {
    for (const value of [null, undefined, "data", 1]) {
      assert.throws(() => formatEvent(value as unknown as ServerSentEvent), TypeError);
    }
  });

  it("formatEvent accepts well-formed text that escapes nothing: NUL in data, emoji, BOM", () => {
    assert.equal(formatEvent({ data: "a\0b" }), "data: a\0b\n\n");
    assert.equal(formatEvent({ data: "😀" }), "data: 😀\n\n");
    assert.equal(formatEvent({ data: "\ufeffx" }), "data: \ufeffx\n\n");
  });

  it("formatEvent escapes a lone surrogate inside JSON data, which stays lossless", async () => {
    const frame = formatEvent({ data: { s: "\ud800" } });
    assert.equal(frame, 'data: {"s":"\\ud800"}\n\n');
    const { events } = await parse(frame);
    assert.deepEqual(JSON.parse(events[0]!.data), { s: "\ud800" });
  });
});

describe("formatEvent output parses back to its input", () => {
  /** What a browser hands over: line breaks become LF, the only one the format can carry. */
  const roundTrips: [string, string][] = [
    ["plain text", "hello"],
    ["an empty string", ""],
    ["one leading space", " x"],
    ["several leading spaces", "   x"],
    ["trailing spaces", "x   "],
    ["only spaces", "   "],
    ["a tab first", "\tx"],
    ["a colon first", ":x"],
    ["a line that looks like a field", "data: x"],
    ["LF lines", "a\nb\nc"],
    ["a leading LF", "\nx"],
    ["a trailing LF", "x\n"],
    ["only LFs", "\n\n\n"],
    ["blank lines inside", "a\n\nb"],
    ["emoji outside the BMP", "😀 👍🏽 🇫🇷"],
    ["CJK and accents", "漢字 é ñ ü"],
    ["U+2028, U+2029 and U+0085", "a\u2028b\u2029c\u0085d"],
    ["a NUL", "a\0b"],
    ["a BOM first", "\ufeffx"],
    ["a long line", "x".repeat(100_000)],
    ["JSON text", '{"a":"b\\nc"}'],
  ];
  for (const [what, data] of roundTrips) {
    it(`formatEvent then EventParserStream gives back ${what}`, async () => {
      const { events } = await parse(formatEvent({ data }));
      assert.deepEqual(events, [{ type: "message", data, lastEventId: "" }]);
    });
  }

  const normalized: [string, string, string][] = [
    ["CRLF lines", "a\r\nb", "a\nb"],
    ["CR lines", "a\rb\rc", "a\nb\nc"],
    ["a trailing CR", "x\r", "x\n"],
    ["mixed breaks", "a\r\nb\rc\nd", "a\nb\nc\nd"],
  ];
  for (const [what, data, expected] of normalized) {
    it(`formatEvent then EventParserStream gives back ${what} as LF lines`, async () => {
      const { events } = await parse(formatEvent({ data }));
      assert.deepEqual(events, [{ type: "message", data: expected, lastEventId: "" }]);
    });
  }

  it("formatEvent then EventParserStream gives back JSON values", async () => {
    const values = [null, 0, -1.5, true, [1, [2]], { nested: { deep: ["x\ny", "😀"] } }];
    const text = values.map((data) => formatEvent({ data })).join("");
    const { events } = await parse(text);
    assert.deepEqual(events.map((event) => JSON.parse(event.data)), values);
  });

  it("formatEvent then EventParserStream gives back a Uint8Array's text", async () => {
    const { events } = await parse(formatEvent({ data: utf8.encode("bytes ✓\nline 2") }));
    assert.deepEqual(events.map((event) => event.data), ["bytes ✓\nline 2"]);
  });

  it("formatEvent then EventParserStream gives back event names, ids, retry and comments", async () => {
    const input: ServerSentEvent[] = [
      { event: "update", id: "1", data: "a" },
      { event: "😀 emoji name", id: 2, data: "b" },
      { id: "", data: "c" },
      { retry: 1500 },
      { comment: "first\nsecond" },
      { comment: " spaced" },
      { id: "id only" },
      { event: "ignored without data" },
      { data: "d" },
    ];
    const { events, retries, comments } = await parse(input.map(formatEvent).join(""));
    assert.deepEqual(events, [
      { type: "update", data: "a", lastEventId: "1" },
      { type: "😀 emoji name", data: "b", lastEventId: "2" },
      { type: "message", data: "c", lastEventId: "" },
      { type: "message", data: "d", lastEventId: "id only" },
    ]);
    assert.deepEqual(retries, [1500]);
    assert.deepEqual(comments, ["first", "second", " spaced"]);
  });
});
