import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  EventEncoderStream,
  EventParserStream,
  formatEvent,
  type ServerSentEvent,
} from "../mod.ts";
import { collect, fromChunks } from "./_helpers.ts";

const decoder = new TextDecoder();

describe("EventEncoderStream", () => {
  it("EventEncoderStream writes one UTF-8 frame per event, in order", async () => {
    const events: ServerSentEvent[] = [
      { data: "a" },
      { event: "e", id: 1, data: { x: "😀" } },
      { comment: "c" },
      { retry: 10 },
      { data: "multi\nline" },
    ];
    const chunks = await collect(fromChunks(events).pipeThrough(new EventEncoderStream()));
    assert.equal(chunks.length, events.length);
    for (const [i, chunk] of chunks.entries()) {
      assert.ok(chunk instanceof Uint8Array);
      assert.equal(decoder.decode(chunk), formatEvent(events[i]!));
    }
  });

  it("EventEncoderStream output parses back through EventParserStream", async () => {
    const events: ServerSentEvent[] = [
      { data: " leading space", id: "1" },
      { event: "json", data: { nested: ["a\r\nb"] } },
      { data: "🇫🇷\u2028" },
    ];
    const parsed = await collect(
      fromChunks(events).pipeThrough(new EventEncoderStream()).pipeThrough(new EventParserStream()),
    );
    assert.deepEqual(parsed, [
      { type: "message", data: " leading space", lastEventId: "1" },
      { type: "json", data: '{"nested":["a\\r\\nb"]}', lastEventId: "1" },
      { type: "message", data: "🇫🇷\u2028", lastEventId: "1" },
    ]);
  });

  it("EventEncoderStream errors the stream with the TypeError of an event it cannot encode", async () => {
    const encoder = new EventEncoderStream();
    const chunks: string[] = [];
    const reading = (async () => {
      for await (const chunk of encoder.readable as unknown as AsyncIterable<Uint8Array>) {
        chunks.push(decoder.decode(chunk));
      }
    })();
    const writer = encoder.writable.getWriter();
    await writer.write({ data: "ok" });
    await assert.rejects(writer.write({ event: "bad\ndata: injected", data: "x" }), TypeError);
    await assert.rejects(reading, TypeError);
    assert.deepEqual(chunks, ["data: ok\n\n"], "nothing of the bad event was written");
  });

  it("EventEncoderStream errors the stream with the RangeError of a bad retry", async () => {
    const stream = fromChunks<ServerSentEvent>([{ retry: -5 }]).pipeThrough(
      new EventEncoderStream(),
    );
    await assert.rejects(collect(stream), RangeError);
  });
});
