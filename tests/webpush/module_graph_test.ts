// The core and Web Push stay apart: importing `@flume/sse` never loads Web Push, and Web Push
// loads nothing from the core (it reaches a Broker through a structural type only).

import { describe, it } from "node:test";
import assert from "node:assert/strict";

async function localGraph(entry: URL): Promise<string[]> {
  const seen = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const url = queue.pop()!;
    if (seen.has(url.href)) continue;
    seen.add(url.href);
    const source = await (await fetch(url)).text();
    for (const match of source.matchAll(/^(?:import|export)[^;]*?from\s+"(\.[^"]+)"/gms)) {
      queue.push(new URL(match[1]!, url));
    }
  }
  return [...seen];
}

const root = new URL("../../", import.meta.url);

describe("module graph", () => {
  it("the core entry loads no file of src/webpush", async () => {
    const files = await localGraph(new URL("mod.ts", root));
    assert.ok(files.length > 1);
    assert.deepEqual(files.filter((file) => file.includes("/src/webpush/")), []);
  });

  it("the webpush entry loads only files of src/webpush", async () => {
    const files = await localGraph(new URL("src/webpush/mod.ts", root));
    assert.ok(files.length > 5);
    assert.deepEqual(files.filter((file) => !file.includes("/src/webpush/")), []);
  });
});
