// The `./node` adapter on real Node servers (node:http, Express, Fastify) on 127.0.0.1: the
// client's disconnect stops a producer within a second (where `Readable.fromWeb(...).pipe(res)`
// leaks it), a client that stops reading is bounded by `writeTimeout`, and Chromium's
// EventSource reads a broker through it. Run with `npm test -- node`.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect as connectSocket } from "node:net";
import { Readable } from "node:stream";
import express from "express";
import Fastify from "fastify";
import { Broker, type EventStream, sseResponse } from "../../mod.ts";
import { toNodeHandler, toRequest, writeResponse } from "../../src/node/mod.ts";
import { withPage } from "../_browser.ts";
import { readEvents, waitFor } from "../_helpers.ts";

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/** A running server on 127.0.0.1 and a free port. */
interface Running {
  origin: string;
  close(): Promise<void>;
}

function listen(server: Server): Promise<Running> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      resolve({
        origin: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** A producer that publishes every 20 ms until its signal aborts, and when it ended. */
function ticker(): { start(stream: EventStream): Promise<void>; endedAt: () => number | null } {
  let endedAt: number | null = null;
  return {
    endedAt: () => endedAt,
    async start(stream) {
      try {
        for (let n = 1; !stream.signal.aborted; n++) {
          await stream.publish(String(n), { id: n });
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      } catch {
        // A send refused because the stream closed: the client left.
      } finally {
        endedAt = performance.now();
      }
    },
  };
}

/** Reads two events, then leaves; returns when it left. */
async function readTwoAndLeave(url: string): Promise<number> {
  const controller = new AbortController();
  const response = await fetch(url, { signal: controller.signal });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const events = await readEvents(response, 2);
  assert.deepEqual(events.map((e) => e.data), ["1", "2"]);
  const left = performance.now();
  controller.abort();
  return left;
}

/** The three servers under test, each serving `handler` at `/events`. */
const servers: [string, (handler: (request: Request) => Response) => Promise<Running>][] = [
  ["node:http", (handler) => listen(createServer(toNodeHandler(handler)))],
  ["Express", (handler) => {
    const app = express();
    app.get("/events", toNodeHandler(handler));
    return listen(createServer(app));
  }],
  ["Fastify", async (handler) => {
    const app = Fastify();
    app.get("/events", (request, reply) => {
      reply.hijack();
      return writeResponse(handler(toRequest(request.raw, reply.raw)), reply.raw);
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    const { port } = app.server.address() as { port: number };
    return {
      origin: `http://127.0.0.1:${port}`,
      close: async () => {
        app.server.closeAllConnections();
        await app.close();
      },
    };
  }],
];

describe("writeResponse: a client that leaves stops the producer", () => {
  for (const [name, start] of servers) {
    it(`${name}: the producer ends within 1 s of the client leaving`, async () => {
      const producer = ticker();
      const server = await start(() => sseResponse((stream) => producer.start(stream)));
      try {
        const left = await readTwoAndLeave(`${server.origin}/events`);
        await waitFor(() => producer.endedAt() !== null, 5_000, "the producer to end");
        const after = producer.endedAt()! - left;
        assert.ok(after < 1_000, `the producer ended ${after.toFixed(0)} ms after the client left`);
      } finally {
        await server.close();
      }
    });
  }

  it("control: Readable.fromWeb(body).pipe(res) keeps the producer running after the client left", async () => {
    // The bridge the issue found leaking; this shows the test above can fail.
    const producer = ticker();
    const cleanUp = new AbortController();
    const server = await listen(createServer((_req, res) => {
      const response = sseResponse((stream) => producer.start(stream), { signal: cleanUp.signal });
      res.writeHead(200, Object.fromEntries(response.headers));
      Readable.fromWeb(response.body! as import("node:stream/web").ReadableStream)
        .on("error", () => {})
        .pipe(res);
    }));
    try {
      await readTwoAndLeave(`${server.origin}/events`);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.equal(producer.endedAt(), null, "the naive bridge stopped the producer after all");
      // Nothing outlives the test.
      cleanUp.abort();
      await waitFor(() => producer.endedAt() !== null, 10_000, "the producer to end");
    } finally {
      await server.close();
    }
  });
});

describe("writeResponse: a client that stops reading", () => {
  /** Opens a GET on a raw socket and never reads from it. */
  function stalledClient(origin: string): Promise<() => void> {
    const { port } = new URL(origin);
    return new Promise((resolve) => {
      const socket = connectSocket(Number(port), "127.0.0.1", () => {
        socket.pause();
        socket.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
        resolve(() => socket.destroy());
      });
      socket.on("error", () => {});
    });
  }

  const bigEvent = "x".repeat(64 * 1024);

  it("a stalled client is dropped by the stream's writeTimeout, with bounded buffering", async () => {
    let published = 0;
    let endedAt: number | null = null;
    const server = await listen(createServer(toNodeHandler(() =>
      sseResponse(async (stream) => {
        try {
          while (!stream.signal.aborted) {
            await stream.publish(bigEvent);
            published += bigEvent.length;
          }
        } catch {
          // The stream ended under the send.
        } finally {
          endedAt = performance.now();
        }
      }, { writeTimeout: 500, bufferBytes: 256 * 1024 }), { writeTimeout: null })));
    const leave = await stalledClient(server.origin);
    try {
      const started = performance.now();
      await waitFor(() => endedAt !== null, 10_000, "the stalled stream to end");
      const took = endedAt! - started;
      // The socket's and the kernel's buffers fill first, then 500 ms without a read.
      assert.ok(took >= 500 && took < 8_000, `ended after ${took.toFixed(0)} ms`);
      // Loopback kernel buffers take a few MiB; an unbounded bridge would take everything.
      assert.ok(published < 32 * 1024 * 1024, `${published} bytes published into a stalled client`);
    } finally {
      leave();
      await server.close();
    }
  });

  it("any other body is cancelled and the connection dropped by the adapter's writeTimeout", async () => {
    let pulled = 0;
    let cancelled: number | null = null;
    const chunk = new Uint8Array(64 * 1024);
    const server = await listen(createServer(toNodeHandler(() =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            pulled += chunk.length;
            controller.enqueue(chunk);
          },
          cancel() {
            cancelled = performance.now();
          },
        }, { highWaterMark: 0 }),
      ), { writeTimeout: 300 })));
    const leave = await stalledClient(server.origin);
    try {
      const started = performance.now();
      await waitFor(() => cancelled !== null, 10_000, "the body to be cancelled");
      assert.ok(cancelled! - started >= 300, "cancelled before the write timeout");
      assert.ok(pulled < 32 * 1024 * 1024, `${pulled} bytes read for a stalled client`);
    } finally {
      leave();
      await server.close();
    }
  });
});

describe("toNodeHandler", () => {
  let server: Running;
  let handler: (request: Request) => Response | Promise<Response> = () =>
    new Response(null, { status: 404 });
  const errors: unknown[] = [];

  before(async () => {
    server = await listen(createServer(toNodeHandler((request) => handler(request), {
      onError: (error) => errors.push(error),
    })));
  });

  after(() => server.close());

  it("passes method, URL, headers and body in, and status, statusText and headers out", async () => {
    handler = async (request) => {
      const headers = new Headers({ "x-echo": request.headers.get("x-test") ?? "" });
      headers.append("set-cookie", "a=1");
      headers.append("set-cookie", "b=2");
      return new Response(`${request.method} ${request.url} ${await request.text()}`, {
        status: 201,
        statusText: "Made",
        headers,
      });
    };
    const response = await fetch(`${server.origin}/path?q=1`, {
      method: "POST",
      body: "hello",
      headers: { "x-test": "yes" },
    });
    assert.equal(response.status, 201);
    assert.equal(response.statusText, "Made");
    assert.equal(response.headers.get("x-echo"), "yes");
    assert.deepEqual(response.headers.getSetCookie(), ["a=1", "b=2"]);
    assert.equal(await response.text(), `POST ${server.origin}/path?q=1 hello`);
  });

  it("answers 500 and reports a handler that throws", async () => {
    const boom = new Error("boom");
    handler = () => {
      throw boom;
    };
    const response = await fetch(server.origin);
    assert.equal(response.status, 500);
    await response.body?.cancel();
    assert.ok(errors.includes(boom));
  });

  it("request.signal aborts when the client leaves: broker.response() drops the subscriber", async () => {
    const broker = new Broker({ heartbeat: null });
    handler = (request) => broker.response("news", request);
    const controller = new AbortController();
    const response = await fetch(server.origin, { signal: controller.signal });
    assert.equal(broker.clientCount("news"), 1);
    const reading = readEvents(response, 1);
    await broker.publish("news", "hello");
    assert.deepEqual((await reading).map((e) => e.data), ["hello"]);
    controller.abort();
    await waitFor(() => broker.clientCount("news") === 0, 1_000, "the subscriber to go");
    await broker.close();
  });

  it("Chromium's EventSource reads through node:http, resumes with Last-Event-ID, and its leaving stops the producer", async () => {
    const lastEventIds: (string | null)[] = [];
    let aborted = false;
    handler = (request) => {
      if (new URL(request.url).pathname !== "/events") {
        return new Response(
          `<!doctype html><script>
            window.seen = [];
            const source = new EventSource("/events");
            source.addEventListener("story", (e) => window.seen.push([e.data, e.lastEventId]));
          </script>`,
          { headers: { "content-type": "text/html" } },
        );
      }
      lastEventIds.push(request.headers.get("last-event-id"));
      if (lastEventIds.length === 1) {
        // The first connection ends after two events: EventSource comes back 50 ms later.
        return sseResponse(async (stream) => {
          await stream.send({ retry: 50 });
          await stream.publish("one", { event: "story", id: 1 });
          await stream.publish("two", { event: "story", id: 2 });
        });
      }
      return sseResponse(async (stream) => {
        await stream.publish("three", { event: "story", id: 3 });
        await new Promise((resolve) => stream.signal.addEventListener("abort", resolve));
        aborted = true;
      });
    };
    await withPage(async (page, pageErrors) => {
      await page.goto(server.origin);
      await page.waitForFunction(() =>
        (globalThis as unknown as { seen: unknown[] }).seen.length === 3
      );
      const seen = await page.evaluate(() => (globalThis as unknown as { seen: unknown[] }).seen);
      assert.deepEqual(seen, [["one", "1"], ["two", "2"], ["three", "3"]]);
      assert.deepEqual(lastEventIds, [null, "2"]);
      assert.deepEqual(pageErrors, []);
      await page.close();
      await waitFor(() => aborted, 1_000, "the producer to see the page leave");
    });
  });
});
