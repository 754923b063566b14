/**
 * The shared parser corpus: a deterministic mix of what real event streams carry, and ways to cut
 * it into chunks. Every parser benchmark reads exactly these bytes, so results compare.
 *
 * Mix (by event count): 50% short JSON tokens with `event` and `id` (LLM-style deltas), 25%
 * medium lines (150–1000 B), 2% long single lines (4–16 KiB), 18% multi-line data (2–9 lines),
 * 5% comments and `retry`. A few events hold non-ASCII text, so chunk cuts also land inside UTF-8
 * sequences. Line ends come in runs of about 256 KiB: three runs of LF, then one of CRLF, as
 * separate servers would send them.
 * @module
 */

/** A corpus and what a correct parser must report for it. */
export interface Corpus {
  /** The whole stream as UTF-8. */
  bytes: Uint8Array;
  /** Events with data (what both parsers dispatch). */
  events: number;
  /** Sum of the UTF-16 lengths of every dispatched event's data. */
  dataChars: number;
}

/** A small deterministic PRNG (mulberry32), so every run and runtime sees the same corpus. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = [
  "stream",
  "event",
  "token",
  "delta",
  "price",
  "ACME",
  "hello",
  "world",
  "café",
  "naïve",
  "日本語",
  "données",
  "🚀",
  "ok",
  "value",
  "update",
];

function text(rand: () => number, length: number): string {
  let out = "";
  while (out.length < length) {
    // Mostly ASCII: non-ASCII words are rare, as in most JSON payloads.
    const word = rand() < 0.9 ? WORDS[(rand() * 8) | 0] : WORDS[(rand() * WORDS.length) | 0];
    out += word + " ";
  }
  return out.slice(0, length).replace(/\s$/, "x");
}

/**
 * Builds the corpus.
 * @param size Approximate size in bytes.
 * @param seed The PRNG seed.
 * @returns The bytes and the expected event count and data length.
 */
export function makeCorpus(size = 4 * 1024 * 1024, seed = 1): Corpus {
  const rand = random(seed);
  const parts: string[] = [];
  let bytes = 0;
  let events = 0;
  let dataChars = 0;
  let id = 0;
  let runBytes = 0;
  let run = 0;
  const encoder = new TextEncoder();
  while (bytes < size) {
    const eol = run % 4 === 3 ? "\r\n" : "\n";
    const pick = rand();
    let lines: string[];
    let data: string[] | null;
    if (pick < 0.5) {
      const value = `{"i":${id},"delta":"${text(rand, 4 + ((rand() * 24) | 0))}"}`;
      data = [value];
      lines = ["event: delta", `id: ${id++}`, `data: ${value}`];
    } else if (pick < 0.75) {
      const value = `{"i":${id},"body":"${text(rand, 150 + ((rand() * 850) | 0))}"}`;
      data = [value];
      lines = [`data: ${value}`];
    } else if (pick < 0.77) {
      const value = text(rand, 4096 + ((rand() * 12288) | 0));
      data = [value];
      lines = ["event: blob", `data: ${value}`];
    } else if (pick < 0.95) {
      data = [];
      const count = 2 + ((rand() * 8) | 0);
      for (let i = 0; i < count; i++) data.push(text(rand, 20 + ((rand() * 180) | 0)));
      lines = [`id: ${id++}`, ...data.map((line) => `data: ${line}`)];
    } else {
      data = null;
      lines = rand() < 0.5 ? [": keepalive"] : ["retry: 3000"];
    }
    const frame = lines.join(eol) + eol + eol;
    parts.push(frame);
    if (data !== null) {
      events++;
      // Joined with LF, whatever the line ends on the wire.
      dataChars += data.reduce((sum, line) => sum + line.length, 0) + data.length - 1;
    }
    const length = encoder.encode(frame).byteLength;
    bytes += length;
    runBytes += length;
    if (runBytes >= 256 * 1024) {
      runBytes = 0;
      run++;
    }
  }
  return { bytes: encoder.encode(parts.join("")), events, dataChars };
}

/**
 * Cuts bytes into chunks whose sizes are drawn uniformly from `[min, max]`.
 * @param bytes What to cut.
 * @param min Smallest chunk.
 * @param max Largest chunk.
 * @param seed The PRNG seed.
 * @returns Views into `bytes`.
 */
export function chunk(bytes: Uint8Array, min: number, max: number, seed = 2): Uint8Array[] {
  const rand = random(seed);
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.byteLength;) {
    const size = min + Math.floor(rand() * (max - min + 1));
    out.push(bytes.subarray(i, Math.min(i + size, bytes.byteLength)));
    i += size;
  }
  return out;
}

/**
 * Cuts bytes after every blank line: one event per chunk, as a server that flushes each event
 * delivers them to a fast reader.
 * @param bytes What to cut.
 * @returns Views into `bytes`.
 */
export function chunkPerEvent(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < bytes.byteLength; i++) {
    // LF LF, or CR LF CR LF: both end with LF preceded by a line end.
    if (bytes[i] === 10 && (bytes[i - 1] === 10 || (bytes[i - 1] === 13 && bytes[i - 2] === 10))) {
      out.push(bytes.subarray(start, i + 1));
      start = i + 1;
    }
  }
  if (start < bytes.byteLength) out.push(bytes.subarray(start));
  return out;
}
