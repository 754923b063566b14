/**
 * `tail -f` in the browser: streams the lines appended to a file as Server-Sent Events. Each
 * event's id is the byte offset after its line, so a browser that reconnects resumes exactly
 * where it stopped, without a line lost or repeated. Works on Deno and Bun alike: the file is
 * polled with `node:fs/promises`, which both provide.
 *
 * Run: `deno run -A examples/tail_file.ts [FILE]` or `bun examples/tail_file.ts [FILE]`.
 * Without a FILE it tails a temporary file that it appends a line to every second; with one,
 * try `echo hello >> FILE`. Set `PORT` to change the port (8000 by default), `HOST` to listen elsewhere than 127.0.0.1.
 *
 * @module
 */
import { mkdtemp, open, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { type EventStream, sseResponse } from "../mod.ts";

/** How often the file size is checked. */
const POLL_MS = 250;
/** How much of the end of the file a new client gets first. */
const BACKLOG_BYTES = 4096;
const LF = 0x0a;

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>tail -f</title>
<h1>tail -f <code id="file"></code></h1>
<p>Status: <b id="status">connecting</b></p>
<pre id="lines"></pre>
<script>
  const status = document.getElementById("status");
  const lines = document.getElementById("lines");
  const source = new EventSource("/events");
  source.onopen = () => status.textContent = "open";
  source.onerror = () => status.textContent = "reconnecting";
  source.addEventListener("file", (event) => document.getElementById("file").textContent = event.data);
  source.addEventListener("line", (event) => lines.append(event.data + "\\n"));
  source.addEventListener("truncated", () => lines.append("--- the file was truncated ---\\n"));
</script>`;

/** Resolves after `ms`, or at once when `signal` aborts; leaves no timer or listener behind. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Streams the lines of `path` from byte `offset` on, until the client goes away. Each client
 * polls on its own, which keeps the example short; many clients of one file would share a single
 * poller through a `Broker`.
 */
async function tail(stream: EventStream, path: string, offset: number): Promise<void> {
  // Invalid UTF-8 in the file becomes U+FFFD: an event's text must be valid.
  const decoder = new TextDecoder();
  await stream.publish(path, { event: "file" });
  const file = await open(path, "r");
  try {
    let pending = new Uint8Array(0);
    while (!stream.signal.aborted) {
      const { size } = await stat(path);
      if (size < offset) {
        // Truncated or replaced: start over from its beginning.
        offset = 0;
        pending = new Uint8Array(0);
        await stream.publish(null, { event: "truncated", id: 0 });
      }
      if (size === offset) {
        await sleep(POLL_MS, stream.signal);
        continue;
      }
      const chunk = new Uint8Array(Math.min(size - offset, 65_536));
      const { bytesRead } = await file.read(chunk, 0, chunk.length, offset);
      offset += bytesRead;
      const bytes = new Uint8Array(pending.length + bytesRead);
      bytes.set(pending);
      bytes.set(chunk.subarray(0, bytesRead), pending.length);
      // Only whole lines are sent; the id is the offset right after each one.
      let start = 0;
      const lineEnd = offset - bytes.length;
      for (let i = bytes.indexOf(LF); i !== -1; i = bytes.indexOf(LF, start)) {
        let line = decoder.decode(bytes.subarray(start, i));
        if (line.endsWith("\r")) line = line.slice(0, -1);
        start = i + 1;
        await stream.publish(line, { event: "line", id: lineEnd + start });
      }
      pending = bytes.slice(start);
    }
  } finally {
    await file.close();
  }
}

/** Where a client starts: after the last line it saw, or near the end of the file. */
async function startOffset(request: Request, path: string): Promise<number> {
  const { size } = await stat(path);
  const last = Number(request.headers.get("last-event-id") ?? NaN);
  if (Number.isSafeInteger(last) && last >= 0 && last <= size) return last;
  if (size <= BACKLOG_BYTES) return 0;
  // Skip the partial line that the backlog cut.
  const file = await open(path, "r");
  try {
    const head = new Uint8Array(BACKLOG_BYTES);
    const { bytesRead } = await file.read(head, 0, BACKLOG_BYTES, size - BACKLOG_BYTES);
    const firstLF = head.subarray(0, bytesRead).indexOf(LF);
    return firstLF === -1 ? size : size - BACKLOG_BYTES + firstLF + 1;
  } finally {
    await file.close();
  }
}

async function handler(request: Request, path: string): Promise<Response> {
  const { pathname } = new URL(request.url);
  if (pathname === "/events") {
    const offset = await startOffset(request, path);
    return sseResponse((stream) => tail(stream, path, offset));
  }
  if (pathname === "/") {
    return new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } });
  }
  return new Response("Not found", { status: 404 });
}

/** A temporary file that gets a line every second, for a demo without arguments. */
async function demoFile(): Promise<string> {
  const path = join(await mkdtemp(join(tmpdir(), "flume-tail-")), "demo.log");
  await writeFile(path, "");
  let n = 0;
  setInterval(() => {
    n++;
    void writeFile(path, `line ${n} at ${new Date().toISOString()}\n`, { flag: "a" });
  }, 1000);
  return path;
}

const path = process.argv[2] ?? await demoFile();
await stat(path); // fail at once, with the runtime's message, for a file that is not there
const port = Number(process.env.PORT ?? 8000);
const hostname = process.env.HOST ?? "127.0.0.1";
// deno-lint-ignore no-explicit-any
const runtime = globalThis as any;
const fetch = (request: Request): Promise<Response> => handler(request, path);
if (runtime.Bun) {
  const server = runtime.Bun.serve({ hostname, port, fetch });
  console.log(`Tailing ${path} on ${server.url}`);
} else {
  runtime.Deno.serve({
    hostname,
    port,
    onListen: (addr: { hostname: string; port: number }) =>
      console.log(`Tailing ${path} on http://${addr.hostname}:${addr.port}/`),
  }, fetch);
}
