// Smoke test of examples/webpush/server.ts through its exported fetch handler.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import server from "../../examples/webpush/server.ts";
import { fakeSubscription } from "./_helpers.ts";

const base = "http://localhost:8000";

describe("examples/webpush/server.ts", () => {
  it("serves the page, the script, the service worker and the public key", async () => {
    const pages: [string, string][] = [
      ["/", "text/html"],
      ["/app.js", "text/javascript"],
      ["/sw.js", "text/javascript"],
    ];
    for (const [path, type] of pages) {
      const response = await server.fetch(new Request(base + path));
      assert.equal(response.status, 200);
      assert.match(response.headers.get("Content-Type")!, new RegExp(type));
      assert.ok((await response.text()).length > 100);
    }
    const key = await (await server.fetch(new Request(`${base}/vapid-public-key`))).text();
    assert.match(key, /^[A-Za-z0-9_-]{87}$/);
  });

  it("stores a valid subscription and refuses an invalid one", async () => {
    const post = (body: unknown): Promise<Response> =>
      server.fetch(
        new Request(`${base}/subscribe?user=ana`, { method: "POST", body: JSON.stringify(body) }),
      );
    const ok = await post(await fakeSubscription());
    assert.equal(ok.status, 201);
    await ok.body?.cancel();
    const bad = await post({ endpoint: "http://evil.example/", keys: {} });
    assert.equal(bad.status, 400);
    assert.match(
      await bad.text(),
      /Cannot parse push subscription: `endpoint` must be an https: URL, got `http:\/\/evil\.example\/`/,
    );
  });

  it("falls back to push for a user with no page open", async () => {
    const response = await server.fetch(
      new Request(`${base}/notify?user=bob`, { method: "POST", body: '{"title":"Hi"}' }),
    );
    assert.deepEqual(await response.json(), { via: "push", delivered: 0, gone: [] });
  });
});
