// The edge example, unchanged, under Cloudflare's workerd and under the runtime's own server
// (Deno Deploy and Bun style), read with our client.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../src/client/mod.ts";
import type { ParsedEvent } from "../mod.ts";
import worker from "../examples/edge/worker.ts";
import { type RunningWorkerd, startWorkerd } from "../examples/edge/serve_workerd.ts";
import { freePort, serve, take, type TestServer } from "./_helpers.ts";

interface Stats {
  live: number;
  started: number;
  ended: number;
  clients: number;
}

async function stats(origin: string): Promise<Stats> {
  const response = await fetch(`${origin}/stats`);
  return await response.json();
}

/** Polls /stats until `condition` holds; returns the stats that satisfied it. */
async function waitForStats(
  origin: string,
  condition: (stats: Stats) => boolean,
  timeout = 5_000,
): Promise<Stats> {
  const deadline = Date.now() + timeout;
  while (true) {
    const current = await stats(origin);
    if (condition(current)) return current;
    if (Date.now() > deadline) {
      throw new Error(`Timed out waiting for /stats, last: ${JSON.stringify(current)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Reads `count` events with our client, then leaves the loop, which cancels the body. */
function read(
  url: string,
  count: number,
  options: Parameters<typeof connect>[1] = {},
): Promise<ParsedEvent[]> {
  return take(connect(url, { backoff: { initial: 50 }, ...options }), count);
}

function suite(name: string, start: () => Promise<{ origin: string; close(): Promise<void> }>) {
  describe(name, () => {
    let origin: string;
    let started: Promise<{ origin: string; close(): Promise<void> }> | undefined;

    // Started by the first test, under its own timeout: Bun ignores the `timeout` option of
    // hooks and gives each 5 s, which a cold workerd start (bundling included) can exceed.
    const test = (title: string, fn: () => Promise<void>): void => {
      it(title, { timeout: 30_000 }, async () => {
        origin = (await (started ??= start())).origin;
        await fn();
      });
    };

    after(async () => {
      await started?.then((server) => server.close(), () => {});
    }, { timeout: 10_000 });

    test("streams a producer's events to the client", async () => {
      const events = await read(`${origin}/clock?interval=20`, 3);
      assert.deepEqual(events.map((e) => [e.type, e.lastEventId]), [
        ["tick", "1"],
        ["tick", "2"],
        ["tick", "3"],
      ]);
      assert.equal(JSON.parse(events[2]!.data).n, 3);
    });

    test("stops the producer when the client goes away, through the body's cancel()", async () => {
      const before = await waitForStats(origin, (s) => s.live === 0);
      const connection = connect(`${origin}/clock?interval=20`);
      for await (const event of connection) if (event.lastEventId === "2") break;
      const after = await waitForStats(origin, (s) => s.live === 0);
      assert.equal(after.started, before.started + 1);
      assert.equal(after.ended, before.ended + 1);
    });

    test("resumes a stream that ended where it stopped, with Last-Event-ID", async () => {
      // Each response carries two events and ends; the client reconnects with the last id.
      const events = await read(`${origin}/clock?interval=10&count=2`, 5);
      assert.deepEqual(events.map((e) => e.lastEventId), ["1", "2", "3", "4", "5"]);
      await waitForStats(origin, (s) => s.live === 0);
    });

    test("fans a publish from another request out to a subscriber, and drops it once it left", async () => {
      const channel = `fanout-${Math.random().toString(36).slice(2)}`;
      const events: ParsedEvent[] = [];
      const opened = Promise.withResolvers<void>();
      const connection = connect(`${origin}/events?channel=${channel}`, {
        onOpen: () => opened.resolve(),
      });
      const reading = (async () => {
        for await (const event of connection) {
          events.push(event);
          if (events.length === 2) break;
        }
      })();
      await opened.promise;
      await waitForStats(origin, (s) => s.clients >= 1);
      for (const text of ["first", "second"]) {
        const response = await fetch(`${origin}/publish?channel=${channel}&event=note`, {
          method: "POST",
          body: text,
        });
        assert.equal(response.status, 204);
      }
      await reading;
      assert.deepEqual(events.map((e) => [e.type, e.data]), [["note", "first"], [
        "note",
        "second",
      ]]);
      await waitForStats(origin, (s) => s.clients === 0);
    });

    test("replays the broker events a client missed, from its Last-Event-ID", async () => {
      const channel = `replay-${Math.random().toString(36).slice(2)}`;
      const publish = async (text: string): Promise<void> => {
        const response = await fetch(`${origin}/publish?channel=${channel}`, {
          method: "POST",
          body: text,
        });
        assert.equal(response.status, 204);
      };
      await publish("one");
      await publish("two");
      await publish("three");
      const [first] = await read(`${origin}/events?channel=${channel}`, 1, {
        // An unknown id: the broker answers with the gap signal and its newest position.
        lastEventId: "nope",
      });
      assert.equal(first?.type, "stream-reset");
      await publish("four");
      await publish("five");
      const missed = await read(`${origin}/events?channel=${channel}`, 2, {
        lastEventId: first!.lastEventId,
      });
      assert.deepEqual(missed.map((e) => e.data), ["four", "five"]);
      await waitForStats(origin, (s) => s.clients === 0);
    });
  });
}

suite("edge worker under Cloudflare's workerd", async () => {
  let lastError: unknown;
  // A free port can be taken between the probe and workerd's bind: try another.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const running: RunningWorkerd = await startWorkerd({ port: await freePort() });
      return running;
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
});

suite("edge worker under the runtime's own server (Deno Deploy and Bun style)", async () => {
  const server: TestServer = await serve((request) => worker.fetch(request));
  return server;
});
