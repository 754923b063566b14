// examples/node_hono.ts, served by @hono/node-server as the example itself does.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../../src/client/mod.ts";
import type { ParsedEvent } from "../../mod.ts";
import { app, broker } from "../../examples/node_hono.ts";
import { waitFor } from "../_helpers.ts";
import { type NodeTestServer, serveNode } from "./_serve.ts";

describe("Hono example on @hono/node-server", () => {
  let server: NodeTestServer;

  before(async () => {
    server = await serveNode(app.fetch);
  });

  after(async () => {
    await broker.close();
    await server.close();
  });

  it("delivers a POST /publish to the subscribers of that channel", async () => {
    const events: ParsedEvent[] = [];
    let markOpen!: () => void;
    const opened = new Promise<void>((resolve) => markOpen = resolve);
    const reading = (async () => {
      for await (
        const event of connect(`${server.origin}/events/news`, { onOpen: () => markOpen() })
      ) {
        events.push(event);
        break;
      }
    })();
    await opened;
    const response = await fetch(`${server.origin}/publish/news?event=headline`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ title: "hello from Hono" }),
    });
    assert.equal(response.status, 204);
    await reading;
    assert.equal(events[0]?.type, "headline");
    assert.deepEqual(JSON.parse(events[0]!.data), { title: "hello from Hono" });
    assert.match(events[0]!.lastEventId, /\S/);
    await waitFor(() => broker.clientCount() === 0, 5_000, "the client to be removed");
  });

  it("refuses a publish without a JSON body", async () => {
    const response = await fetch(`${server.origin}/publish/news`, { method: "POST", body: "{" });
    assert.equal(response.status, 400);
    await response.body?.cancel();
  });

  it("streams a countdown from a producer until it ends", { timeout: 10_000 }, async () => {
    const response = await fetch(`${server.origin}/countdown/1`);
    const text = await response.text();
    assert.equal(
      text,
      ':\n\nevent: count\nid: 1\ndata: {"n":1}\n\nevent: count\nid: 0\ndata: {"n":0}\n\n',
    );
  });
});
