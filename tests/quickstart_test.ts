// The README's quick starts, run as written: the Deno one under `deno run --allow-net --allow-env`
// (the permissions its first line names), the Bun one under `bun`. Only two things change, both
// outside the snippet's logic: `@flume/sse` points at this checkout, and the port is a free one.
// A client then reads two ticks over real HTTP, and leaves.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { delay, freePort, runtime } from "./_helpers.ts";

const root = new URL("../", import.meta.url);

/** The code block under the README heading `### <title>`. */
async function quickStart(title: string): Promise<string> {
  const readme = await readFile(new URL("README.md", root), "utf8");
  const section = readme.split(`\n### ${title}\n`)[1];
  const block = section && /```ts\n([\s\S]*?)\n```/.exec(section)?.[1];
  assert.ok(block, `README has a \`### ${title}\` quick start`);
  return block;
}

/** Reads the stream until `count` events with an id came, then leaves. */
async function readTicks(url: string, count: number): Promise<string> {
  const response = await fetch(url);
  assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    while ((text.match(/^id: /gm) ?? []).length < count) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
  } finally {
    await reader.cancel();
  }
  return text;
}

const which = runtime === "deno" ? "Deno" : runtime === "bun" ? "Bun" : undefined;

describe(`The README's ${which ?? "runtime"} quick start`, { skip: which === undefined }, () => {
  it("serves a tick every second on 127.0.0.1, as written", { timeout: 60_000 }, async () => {
    const code = await quickStart(which!);
    const written = runtime === "deno" ? /port: 8000/ : /port: 3000/;
    assert.match(code, written, "the port the README's curl line uses");
    assert.match(
      code,
      /HOST"?\)? \?\? "127\.0\.0\.1"/,
      "listens on 127.0.0.1 unless HOST says otherwise",
    );
    const port = await freePort();
    const dir = await mkdtemp(join(tmpdir(), "flume-quickstart-"));
    const file = join(dir, "server.ts");
    await writeFile(
      file,
      code
        .replace(`from "@flume/sse"`, `from ${JSON.stringify(new URL("mod.ts", root).href)}`)
        .replace(written, `port: ${port}`),
    );
    const argv = runtime === "deno" ? ["run", "--allow-net", "--allow-env", file] : [file];
    const child = spawn(process.execPath, argv, { env: { ...process.env, NO_COLOR: "1" } });
    let stderr = "";
    child.stderr.on("data", (chunk: Uint8Array) => stderr += new TextDecoder().decode(chunk));
    try {
      const url = `http://127.0.0.1:${port}/`;
      let text: string | undefined;
      for (let tries = 0; text === undefined; tries++) {
        try {
          text = await readTicks(url, 2);
        } catch (error) {
          if (tries > 200 || child.exitCode !== null) {
            throw new Error(`the quick start did not serve: ${String(error)}\n${stderr}`);
          }
          await delay(100);
        }
      }
      assert.equal(
        text,
        ':\n\nevent: tick\nid: 1\ndata: {"n":1}\n\nevent: tick\nid: 2\ndata: {"n":2}\n\n',
      );
    } finally {
      child.kill("SIGTERM");
      await rm(dir, { recursive: true, force: true });
    }
  });
});
