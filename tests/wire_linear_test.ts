/**
 * The line splitting of `src/_wire.ts` on every line ending, on both of its paths (a short text is
 * split as a string, a long one as bytes), against a plain reference; and the frame size limit.
 * Timing is measured in bench/ (parser_bench.ts, "formatEvent" rows), not asserted here.
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { formatEvent } from "../src/format_event.ts";
import { commentFrame, encodeBody, encodeEvent, MAX_FRAME_LENGTH } from "../src/_wire.ts";

/** What the wire must carry: one `prefix + line` per line, split on CRLF, CR and LF only. */
function reference(text: string, prefix: string, empty: string): string {
  return text.split(/\r\n|\r|\n/).map((line) => line === "" ? empty : `${prefix}${line}\n`).join(
    "",
  );
}

const dataFrame = (text: string): string => reference(text, "data: ", "data: \n") + "\n";

/** Deterministic pseudo-random text of `length` units drawn from `alphabet`. */
function mix(alphabet: readonly string[], length: number, seed = 7): string {
  let state = seed;
  let out = "";
  while (out.length < length) {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    out += alphabet[state % alphabet.length];
  }
  return out;
}

const ENDINGS: [string, string][] = [["LF", "\n"], ["CRLF", "\r\n"], ["CR", "\r"]];
// Around the length where the string path hands over to the byte path (4,096), and well past it.
const LENGTHS = [0, 1, 4_095, 4_096, 4_097, 65_537, 1_048_576];

describe("formatEvent splits data on every line ending, short or long", () => {
  for (const [name, ending] of ENDINGS) {
    for (const length of LENGTHS) {
      it(`${length} characters of ${name} only`, () => {
        const data = ending.repeat(Math.ceil(length / ending.length));
        const frame = formatEvent({ data });
        assert.equal(frame, dataFrame(data));
        // Every line break makes one empty data line, and one more for the end.
        assert.equal(frame.length, 7 * (data.length / ending.length + 1) + 1);
      });
      it(`${length} characters of text and ${name}, with empty lines and non-ASCII text`, () => {
        const data = mix(["a", "é", "🎉", " ", ending, ending + ending, "data: x"], length);
        assert.equal(formatEvent({ data }), dataFrame(data));
      });
    }
  }

  for (const length of LENGTHS) {
    it(`${length} characters of mixed LF, CRLF, lone CR and LF CR`, () => {
      const data = mix(["\n", "\r\n", "\r", "\n\r", "x", "\u2028", "\u0085"], length);
      assert.equal(formatEvent({ data }), dataFrame(data));
    });
  }

  it("a long text that starts and ends with text, or with a line break", () => {
    const middle = "line\r\n".repeat(2_000);
    for (const data of [`a${middle}z`, `\n${middle}`, `${middle}\r`, `\r\n${middle}\r\n`]) {
      assert.equal(formatEvent({ data }), dataFrame(data));
    }
  });

  it("a long Uint8Array of line breaks as the text it holds", () => {
    const text = "é\r\n\n\r".repeat(5_000);
    assert.equal(formatEvent({ data: new TextEncoder().encode(text) }), dataFrame(text));
  });

  it("a long text with a CR right before the end, and a lone CR at the very end", () => {
    const data = "x".repeat(5_000) + "\r\n\r";
    assert.equal(formatEvent({ data }), "data: " + "x".repeat(5_000) + "\ndata: \ndata: \n\n");
  });
});

describe("comments and stored bodies split the same way", () => {
  for (const length of [3, 4_097, 1_048_576]) {
    it(`a comment of ${length} characters with empty lines keeps ":" for them`, () => {
      const text = mix(["note", "\n", "\r\n", "\r", "é"], length);
      const expected = reference(text, ": ", ":\n") + "\n";
      assert.equal(commentFrame(text), expected);
      assert.equal(encodeEvent({ comment: text }), expected);
    });
  }

  it("encodeBody of a long text with every line ending", () => {
    const data = mix(["\n", "\r\n", "\r", "a"], 70_000);
    assert.equal(encodeBody("tick", data), `event: tick\n${dataFrame(data)}`);
  });

  it("10 MB of line breaks encodes (70 MB of empty data lines)", () => {
    const frame = formatEvent({ data: "\n".repeat(10_000_000) });
    assert.equal(frame.length, 70_000_008);
    assert.ok(frame.startsWith("data: \ndata: \n"));
    assert.ok(frame.endsWith("data: \ndata: \n\n"));
  });
});

describe(`a frame is at most ${MAX_FRAME_LENGTH} characters`, () => {
  it("a frame of exactly the limit is encoded, one more character is refused", () => {
    const data = "x".repeat(MAX_FRAME_LENGTH - 8); // "data: " + data + "\n\n"
    assert.equal(formatEvent({ data }).length, MAX_FRAME_LENGTH);
    assert.throws(
      () => formatEvent({ data: data + "x" }),
      new RangeError(
        `Cannot encode event: the frame would exceed ${MAX_FRAME_LENGTH} characters, got \`${
          MAX_FRAME_LENGTH + 1
        }\``,
      ),
    );
  });

  it("20 MB of line breaks (a 140 MB frame) is refused before it is built", () => {
    assert.throws(
      () => formatEvent({ data: "\n".repeat(20_000_000) }),
      new RangeError(
        `Cannot encode event: the frame would exceed ${MAX_FRAME_LENGTH} characters, got \`140000007\``,
      ),
    );
  });

  it("long JSON data, a long comment and a long stored body are refused alike", () => {
    const long = "x".repeat(MAX_FRAME_LENGTH);
    assert.throws(() => formatEvent({ data: [long] }), RangeError);
    assert.throws(() => formatEvent({ comment: long }), RangeError);
    assert.throws(() => encodeBody("tick", long), RangeError);
    // Each part within the limit, the frame beyond it.
    const half = "x".repeat(MAX_FRAME_LENGTH / 2);
    assert.throws(() => formatEvent({ comment: half, data: half }), RangeError);
  });
});
