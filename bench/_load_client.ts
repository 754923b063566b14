/**
 * The load client of `stream_bench.ts`, run as its own process so that it never competes with
 * the server for the same event loop: it reads one response body as fast as it can and counts
 * frames by finding blank lines (LF LF) in the raw bytes. No decoding, no parsing: the client
 * must be cheap, and its CPU time is reported to show it is not the bottleneck.
 *
 * Usage: `deno run -A bench/_load_client.ts URL SECONDS` or `bun bench/_load_client.ts URL SECONDS`.
 * Prints one JSON line: `{ frames, bytes, reads, ms, cpuMs }`.
 * @module
 */
import process from "node:process";

const [url, seconds = "5"] = process.argv.slice(2);
const controller = new AbortController();
// The bound: whatever the server does, the client stops reading after this long.
const timer = setTimeout(() => controller.abort(), Number(seconds) * 1000);

const response = await fetch(url, { signal: controller.signal });
const reader = response.body!.getReader();
const cpuStart = process.cpuUsage();
const start = performance.now();
let frames = 0;
let bytes = 0;
let reads = 0;
let lastWasLF = false;
try {
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    reads++;
    // A blank line split across two reads: LF at the end of one, LF at the start of the next.
    if (lastWasLF && value[0] === 10) frames++;
    let i = value.indexOf(10);
    while (i !== -1) {
      if (value[i + 1] === 10) {
        frames++;
        i = value.indexOf(10, i + 2);
      } else {
        i = value.indexOf(10, i + 1);
      }
    }
    lastWasLF = value[value.byteLength - 1] === 10 && value[value.byteLength - 2] !== 10;
  }
} catch (error) {
  if (!controller.signal.aborted) throw error;
}
const ms = performance.now() - start;
const cpu = process.cpuUsage(cpuStart);
clearTimeout(timer);
console.log(JSON.stringify({ frames, bytes, reads, ms, cpuMs: (cpu.user + cpu.system) / 1000 }));
