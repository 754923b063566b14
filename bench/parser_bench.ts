/**
 * Parsing throughput: our `EventParserStream` against `eventsource-parser` on one corpus (see
 * `_corpus.ts`), bytes in, events out, cut three ways. Prints `RESULT` rows for `run.mjs`.
 *
 * Run alone: `deno run -A bench/parser_bench.ts [--quick]` or `bun bench/parser_bench.ts`.
 * @module
 */
import { EventParserStream } from "../mod.ts";
import { Parser } from "../src/_parser.ts";
import { createParser } from "eventsource-parser";
import { EventSourceParserStream } from "eventsource-parser/stream";
import { chunk, chunkPerEvent, type Corpus, makeCorpus } from "./_corpus.ts";
import { median, quick, report, round } from "./_report.ts";

interface Tally {
  events: number;
  chars: number;
}

/** One way to parse the chunks; resolves with what it dispatched. */
type Impl = (chunks: readonly Uint8Array[]) => Tally | Promise<Tally>;

function source(chunks: readonly Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]);
      else controller.close();
    },
  });
}

async function drain(stream: ReadableStream<{ data: string }>): Promise<Tally> {
  const reader = stream.getReader();
  const tally = { events: 0, chars: 0 };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return tally;
    tally.events++;
    tally.chars += value.data.length;
  }
}

// Streams: public API against public API, bytes in, a reader pulling events out.
const streamImpls: Record<string, Impl> = {
  ours: (chunks) => drain(source(chunks).pipeThrough(new EventParserStream())),
  // The peer's documented stream usage: it takes text, so a TextDecoderStream goes in front.
  peerStream: (chunks) =>
    drain(
      source(chunks).pipeThrough(new TextDecoderStream()).pipeThrough(
        new EventSourceParserStream(),
      ),
    ),
  // The peer's engine in one TransformStream with its own decoder: the fastest stream a user of
  // eventsource-parser can build (one stream stage instead of two).
  peerEngineStream: (chunks) => {
    const decoder = new TextDecoder();
    let parser!: ReturnType<typeof createParser>;
    const transform = new TransformStream<Uint8Array, { data: string }>({
      start(controller) {
        parser = createParser({ onEvent: (event) => controller.enqueue(event) });
      },
      transform(chunk) {
        parser.feed(decoder.decode(chunk, { stream: true }));
      },
      flush() {
        parser.feed(decoder.decode());
      },
    });
    return drain(source(chunks).pipeThrough(transform));
  },
  // Decoding only: the cost every byte-in parser pays before it looks at a line.
  floor: (chunks) => {
    const decoder = new TextDecoder();
    let chars = 0;
    const transform = new TransformStream<Uint8Array, { data: string }>({
      transform(chunk) {
        chars += decoder.decode(chunk, { stream: true }).length;
      },
    });
    return drain(source(chunks).pipeThrough(transform)).then(() => ({ events: 0, chars }));
  },
};

// Engines: a plain loop, no streams: where the parse code itself spends its time.
const engineImpls: Record<string, Impl> = {
  ours: (chunks) => {
    const tally = { events: 0, chars: 0 };
    const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
    const parser = new Parser({
      onEvent(event) {
        tally.events++;
        tally.chars += event.data.length;
      },
      maxEventSize: 16_777_216,
    });
    for (const chunk of chunks) parser.feed(decoder.decode(chunk, { stream: true }));
    parser.feed(decoder.decode());
    parser.end();
    return tally;
  },
  peer: (chunks) => {
    const tally = { events: 0, chars: 0 };
    const decoder = new TextDecoder();
    const parser = createParser({
      onEvent(event) {
        tally.events++;
        tally.chars += event.data.length;
      },
    });
    for (const chunk of chunks) parser.feed(decoder.decode(chunk, { stream: true }));
    parser.feed(decoder.decode());
    return tally;
  },
  floor: (chunks) => {
    const decoder = new TextDecoder();
    let chars = 0;
    for (const chunk of chunks) chars += decoder.decode(chunk, { stream: true }).length;
    return { events: 0, chars };
  },
};

/** Times every implementation in interleaved rounds; returns the median MB/s of each. */
async function measure(
  impls: Record<string, Impl>,
  chunks: readonly Uint8Array[],
  corpus: Corpus,
): Promise<{ rates: Record<string, number>; rounds: number }> {
  const names = Object.keys(impls);
  const budget = quick ? 150 : 2_000;
  const times: Record<string, number[]> = {};
  const spent: Record<string, number> = {};
  for (const name of names) {
    times[name] = [];
    spent[name] = 0;
    // Warm-up pass, which also checks that the implementation reads the corpus right.
    const tally = await impls[name](chunks);
    if (name !== "floor" && (tally.events !== corpus.events || tally.chars !== corpus.dataChars)) {
      throw new Error(
        `Cannot benchmark \`${name}\`: got ${tally.events} events / ${tally.chars} chars, ` +
          `expected ${corpus.events} / ${corpus.dataChars}`,
      );
    }
  }
  let rounds = 0;
  // Interleaved, so that drift (GC, CPU frequency, the other process) hits all alike.
  while (rounds < 3 || (names.some((name) => spent[name] < budget) && rounds < 60)) {
    for (const name of names) {
      const start = performance.now();
      await impls[name](chunks);
      const ms = performance.now() - start;
      times[name].push(ms);
      spent[name] += ms;
    }
    rounds++;
  }
  const rates: Record<string, number> = {};
  const mb = corpus.bytes.byteLength / 1e6;
  for (const name of names) rates[name] = mb / (median(times[name]) / 1000);
  return { rates, rounds };
}

const corpus = makeCorpus(quick ? 1024 * 1024 : 4 * 1024 * 1024);
const cuts: [string, Uint8Array[]][] = [
  ["16–112 B chunks", chunk(corpus.bytes, 16, 112)],
  ["one event per chunk", chunkPerEvent(corpus.bytes)],
  ["64 KiB chunks", chunk(corpus.bytes, 65_536, 65_536)],
];

for (const [cut, chunks] of cuts) {
  const { rates, rounds } = await measure(streamImpls, chunks, corpus);
  const peerIsEngine = rates.peerEngineStream > rates.peerStream;
  report({
    bench: "parser",
    case: `stream, ${cut}`,
    unit: "MB/s",
    ours: round(rates.ours),
    floor: round(rates.floor),
    peer: round(Math.max(rates.peerStream, rates.peerEngineStream)),
    note: `peer: ${
      peerIsEngine
        ? "createParser in one TransformStream"
        : "TextDecoderStream + EventSourceParserStream"
    } (other path ${round(Math.min(rates.peerStream, rates.peerEngineStream))}); ` +
      `${chunks.length} chunks, median of ${rounds}`,
  });
}

for (const [cut, chunks] of cuts) {
  const { rates, rounds } = await measure(engineImpls, chunks, corpus);
  report({
    bench: "parser",
    case: `engine, ${cut}`,
    unit: "MB/s",
    ours: round(rates.ours),
    floor: round(rates.floor),
    peer: round(rates.peer),
    note: `no streams: \`Parser.feed\` vs \`createParser().feed\`; median of ${rounds}`,
  });
}
