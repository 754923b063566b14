// What connect() sends outside a browser, and what it reports when a custom fetch hands back a
// response it cannot read.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../../src/client/mod.ts";
import { openBody, scripted, SSE, take } from "./_server.ts";

describe("connect request headers", () => {
  it("connect sends Cache-Control: no-cache on Deno and Bun, as browsers do for EventSource", async () => {
    const server = await scripted([() => new Response(openBody("data: x\n\n"), { headers: SSE })]);
    try {
      await take(connect(server.origin), 1);
      assert.equal(server.requests[0]!.headers.get("cache-control"), "no-cache");
    } finally {
      await server.close();
    }
  });

  it("connect keeps a Cache-Control header the caller gives", async () => {
    const server = await scripted([() => new Response(openBody("data: x\n\n"), { headers: SSE })]);
    try {
      await take(connect(server.origin, { headers: { "Cache-Control": "max-age=0" } }), 1);
      assert.equal(server.requests[0]!.headers.get("cache-control"), "max-age=0");
    } finally {
      await server.close();
    }
  });
});

describe("connect with a custom fetch", () => {
  it("connect reports through onError, then throws, a response whose body is not a stream", async () => {
    const errors: unknown[] = [];
    let calls = 0;
    // A hand-made response object, as a test double or an adapter might return.
    const fetchLike = (): Promise<Response> => {
      calls++;
      return Promise.resolve({
        status: 200,
        headers: new Headers(SSE),
        body: "data: x\n\n",
      } as unknown as Response);
    };
    const connection = connect("http://127.0.0.1:1/", {
      fetch: fetchLike,
      onError: (error) => errors.push(error),
      backoff: { initial: 10 },
    });
    await assert.rejects(
      async () => {
        for await (const _ of connection) break;
      },
      (error: unknown) => {
        assert.ok(error instanceof TypeError);
        assert.equal(
          error.message,
          "Cannot read event stream: the response body is not a ReadableStream, got `string`",
        );
        return true;
      },
    );
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof TypeError);
    assert.equal(calls, 1, "a body that cannot be read is not retried");
  });
});
