import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect, ConnectError } from "../../src/client/mod.ts";
import { delay, waitFor } from "../_helpers.ts";
import { openBody, scripted, SSE, take, withVirtualClock } from "./_server.ts";

describe("connect", () => {
  it("connect yields events as EventSource dispatches them", async () => {
    const server = await scripted([() =>
      new Response(
        openBody("event: greet\nid: 1\ndata: hello\n\n: comment\ndata: a\ndata: b\n\nid\n\n"),
        { headers: SSE },
      )]);
    try {
      const events = await take(connect(server.origin, { backoff: { initial: 10 } }), 2);
      assert.deepEqual(events, [
        { type: "greet", data: "hello", lastEventId: "1" },
        { type: "message", data: "a\nb", lastEventId: "1" },
      ]);
    } finally {
      await server.close();
    }
  });

  it("connect sends Accept, the given headers and no Last-Event-ID on a fresh start", async () => {
    const server = await scripted([() => new Response(openBody("data: x\n\n"), { headers: SSE })]);
    try {
      await take(connect(server.origin, { headers: { "X-Token": "abc" } }), 1);
      const headers = server.requests[0]!.headers;
      assert.equal(headers.get("accept"), "text/event-stream");
      assert.equal(headers.get("x-token"), "abc");
      assert.equal(headers.get("last-event-id"), null);
    } finally {
      await server.close();
    }
  });

  it("connect sends the lastEventId option on the first request", async () => {
    const server = await scripted([() => new Response(openBody("data: x\n\n"), { headers: SSE })]);
    try {
      const [event] = await take(connect(server.origin, { lastEventId: "41" }), 1);
      assert.equal(server.requests[0]!.headers.get("last-event-id"), "41");
      assert.equal(event!.lastEventId, "41");
    } finally {
      await server.close();
    }
  });

  it("connect encodes a non-ASCII Last-Event-ID as UTF-8 bytes", async () => {
    const id = "é✓😀";
    const server = await scripted([
      () => new Response(`retry: 1\nid: ${id}\ndata: one\n\n`, { headers: SSE }),
      () => new Response(openBody("data: two\n\n"), { headers: SSE }),
    ]);
    try {
      await take(connect(server.origin), 2);
      const raw = server.requests[1]!.headers.get("last-event-id")!;
      const bytes = Uint8Array.from(raw, (char) => char.charCodeAt(0));
      assert.equal(new TextDecoder().decode(bytes), id);
    } finally {
      await server.close();
    }
  });

  it("connect leaves out a Last-Event-ID that HTTP cannot carry", async () => {
    const server = await scripted([
      () => new Response("retry: 1\nid: a\u0001b\ndata: one\n\n", { headers: SSE }),
      () => new Response(openBody("data: two\n\n"), { headers: SSE }),
    ]);
    try {
      const events = await take(connect(server.origin), 2);
      assert.equal(events[0]!.lastEventId, "a\u0001b");
      assert.equal(server.requests[1]!.headers.get("last-event-id"), null);
    } finally {
      await server.close();
    }
  });

  it("connect calls a headers function before every reconnect", async () => {
    const server = await scripted([
      () => new Response("retry: 1\ndata: one\n\n", { headers: SSE }),
      () => new Response(openBody("data: two\n\n"), { headers: SSE }),
    ]);
    let calls = 0;
    try {
      await take(
        connect(server.origin, {
          headers: async () => {
            await delay(1);
            return { Authorization: `Bearer token-${++calls}` };
          },
        }),
        2,
      );
      assert.deepEqual(server.requests.map((request) => request.headers.get("authorization")), [
        "Bearer token-1",
        "Bearer token-2",
      ]);
    } finally {
      await server.close();
    }
  });

  it("connect resends the method and body of a POST on every reconnect", async () => {
    const bodies: string[] = [];
    const server = await scripted([
      async (request) => {
        bodies.push(`${request.method} ${await request.text()}`);
        return new Response("retry: 1\ndata: one\n\n", { headers: SSE });
      },
      async (request) => {
        bodies.push(`${request.method} ${await request.text()}`);
        return new Response(openBody("data: two\n\n"), { headers: SSE });
      },
    ]);
    try {
      await take(connect(server.origin, { method: "POST", body: '{"q":1}' }), 2);
      assert.deepEqual(bodies, ['POST {"q":1}', 'POST {"q":1}']);
    } finally {
      await server.close();
    }
  });

  it("connect ends normally for good on a 204 response", async () => {
    const server = await scripted([() => new Response(null, { status: 204 })]);
    try {
      await withVirtualClock(async (clock) => {
        const connection = connect(server.origin, { backoff: { initial: 1 } });
        assert.deepEqual(await take(connection, 5), []);
        assert.equal(connection.state, "closed");
        assert.equal(clock.pending, 0, "no reconnect is scheduled");
        await clock.advance(60_000);
        assert.equal(server.requests.length, 1);
      });
    } finally {
      await server.close();
    }
  });

  it("connect throws a ConnectError with the status on a non-2xx answer, with no reconnect", async () => {
    const server = await scripted([() => new Response("nope", { status: 401 })]);
    const errors: unknown[] = [];
    try {
      await withVirtualClock(async (clock) => {
        const connection = connect(server.origin, {
          backoff: { initial: 1 },
          onError: (error) => errors.push(error),
        });
        await assert.rejects(take(connection, 1), (error: unknown) => {
          assert.ok(error instanceof ConnectError);
          assert.equal(error.name, "ConnectError");
          assert.equal(error.status, 401);
          assert.equal(error.response.status, 401);
          assert.equal(
            error.message,
            "Cannot connect to event stream: status must be 2xx, got `401`",
          );
          return true;
        });
        assert.equal(errors.length, 1);
        assert.equal(connection.state, "closed");
        assert.equal(clock.pending, 0, "no reconnect is scheduled");
        await clock.advance(60_000);
        assert.equal(server.requests.length, 1);
      });
    } finally {
      await server.close();
    }
  });

  it("connect throws a ConnectError on a content type other than text/event-stream", async () => {
    const server = await scripted([
      () => new Response("data: x\n\n", { headers: { "content-type": "text/plain" } }),
    ]);
    try {
      await withVirtualClock(async (clock) => {
        await assert.rejects(take(connect(server.origin, { backoff: { initial: 1 } }), 1), {
          name: "ConnectError",
          status: 200,
          message:
            "Cannot connect to event stream: content type must be `text/event-stream`, got `text/plain`",
        });
        assert.equal(clock.pending, 0, "no reconnect is scheduled");
        await clock.advance(60_000);
        assert.equal(server.requests.length, 1);
      });
    } finally {
      await server.close();
    }
  });

  it("connect accepts a content type with parameters and odd case", async () => {
    const server = await scripted([() =>
      new Response(openBody("data: x\n\n"), {
        headers: { "content-type": "Text/Event-Stream ; charset=utf-8" },
      })]);
    try {
      assert.equal((await take(connect(server.origin), 1))[0]!.data, "x");
    } finally {
      await server.close();
    }
  });

  it("connect reports open, error and retry hooks and its state in order", async () => {
    const log: string[] = [];
    const server = await scripted([
      () => new Response("data: one\n\n", { headers: SSE }),
      () => new Response(openBody("data: two\n\n"), { headers: SSE }),
    ]);
    try {
      const connection = connect(server.origin, {
        backoff: { initial: 1 },
        onOpen: (response) => {
          log.push(`open ${response.status} ${connection.state}`);
        },
        onError: (error) => log.push(`error ${String(error)}`),
        onRetry: ({ attempt }) => log.push(`retry ${attempt} ${connection.state}`),
      });
      assert.equal(connection.state, "connecting");
      for await (const event of connection) {
        log.push(`event ${event.data} ${connection.state}`);
        if (event.data === "two") break;
      }
      assert.equal(connection.state, "closed");
      assert.deepEqual(log, [
        "open 200 open",
        "event one open",
        "retry 1 connecting",
        "open 200 open",
        "event two open",
      ]);
    } finally {
      await server.close();
    }
  });

  it("connect ends the iteration with the error an onOpen hook throws", async () => {
    let cancelled = false;
    const server = await scripted([
      () => new Response(openBody("data: x\n\n", () => cancelled = true), { headers: SSE }),
    ]);
    try {
      await assert.rejects(
        take(
          connect(server.origin, {
            onOpen: () => {
              throw new Error("Refused by app");
            },
          }),
          1,
        ),
        { message: "Refused by app" },
      );
      await waitFor(() => cancelled, 2_000, "the body to be cancelled");
    } finally {
      await server.close();
    }
  });

  it("connect ends at once when its signal aborts during a read, and cancels the body", async () => {
    let cancelled = false;
    const server = await scripted([
      () => new Response(openBody("data: x\n\n", () => cancelled = true), { headers: SSE }),
    ]);
    try {
      const controller = new AbortController();
      const events: string[] = [];
      const iterating = (async () => {
        for await (const event of connect(server.origin, { signal: controller.signal })) {
          events.push(event.data);
        }
      })();
      await waitFor(() => events.length === 1, 2_000, "the first event");
      controller.abort();
      await iterating;
      await waitFor(() => cancelled, 2_000, "the body to be cancelled");
      assert.equal(server.requests.length, 1);
    } finally {
      await server.close();
    }
  });

  it("connect does not start when its signal is already aborted", async () => {
    const server = await scripted([() => new Response(openBody("data: x\n\n"), { headers: SSE })]);
    try {
      assert.deepEqual(await take(connect(server.origin, { signal: AbortSignal.abort() }), 1), []);
      assert.equal(server.requests.length, 0);
    } finally {
      await server.close();
    }
  });

  it("connect stops giving out parsed events once closed mid-chunk", async () => {
    const server = await scripted([
      () =>
        new Response(openBody("id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: c\n\n"), {
          headers: SSE,
        }),
    ]);
    try {
      const connection = connect(server.origin);
      const seen: string[] = [];
      for await (const event of connection) {
        seen.push(event.data);
        assert.equal(connection.lastEventId, event.lastEventId);
        if (event.data === "a") connection.close();
      }
      assert.deepEqual(seen, ["a"]);
      assert.equal(connection.lastEventId, "1");
    } finally {
      await server.close();
    }
  });

  it("connect passes Bun's timeout: false to fetch so a quiet stream is not cut", async () => {
    const inits: (RequestInit | undefined)[] = [];
    const server = await scripted([() => new Response(openBody("data: x\n\n"), { headers: SSE })]);
    try {
      await take(
        connect(server.origin, {
          fetch: (request, init) => {
            inits.push(init);
            return fetch(request, init);
          },
        }),
        1,
      );
      assert.equal((inits[0] as { timeout?: unknown }).timeout, false);
    } finally {
      await server.close();
    }
  });

  it("connect can be iterated only once", () => {
    const connection = connect("http://127.0.0.1:9/");
    connection[Symbol.asyncIterator]();
    assert.throws(() => connection[Symbol.asyncIterator](), {
      name: "TypeError",
      message: "Cannot iterate connection: it is already being iterated",
    });
    connection.close();
  });

  it("connect refuses out-of-range options and a bad URL", () => {
    assert.throws(() => connect("http://127.0.0.1/", { backoff: { jitter: 2 } }), {
      name: "RangeError",
      message: "Cannot connect: `backoff.jitter` must be a number from 0 to 1, got `2`",
    });
    assert.throws(() => connect("http://127.0.0.1/", { backoff: { factor: 0.5 } }), RangeError);
    assert.throws(() => connect("http://127.0.0.1/", { inactivityTimeout: 0 }), RangeError);
    assert.throws(() => connect("http://127.0.0.1/", { backoff: { resetAfter: -1 } }), {
      name: "RangeError",
      message:
        "Cannot connect: `backoff.resetAfter` must be a number from 0 to 2147483647, got `-1`",
    });
    assert.throws(() => connect("http://127.0.0.1/", { maxEventSize: 0 }), RangeError);
    assert.throws(() => connect("not a url"), TypeError);
  });

  it("ConnectError takes (message, options) and carries the response, status and cause", () => {
    const response = new Response(null, { status: 503 });
    const cause = new Error("upstream");
    const error = new ConnectError(
      "Cannot connect to event stream: status must be 2xx, got `503`",
      {
        response,
        cause,
      },
    );
    assert.ok(error instanceof Error);
    assert.equal(error.name, "ConnectError");
    assert.equal(error.status, 503);
    assert.equal(error.response, response);
    assert.equal(error.cause, cause);
    assert.equal("cause" in new ConnectError("m", { response }), false);
  });
});
