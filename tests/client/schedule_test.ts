/**
 * The client's timing on a virtual clock (tests/_clock.ts) against real servers: reconnect
 * delays, backoff growth and resets, inactivity timeouts. Only time is virtual; each test asserts
 * the exact schedule (the timers pending, their due times, the requests made at each step).
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect, type RetryInfo } from "../../src/client/mod.ts";
import { serve, waitFor } from "../_helpers.ts";
import type { VirtualClock } from "../_clock.ts";
import { follow, heldBody, openBody, scripted, SSE, withVirtualClock } from "./_server.ts";

/** Real time allowed for real I/O to catch up with a step of virtual time (both cores busy). */
const IO = 20_000;

/**
 * Waits (in real time) for reconnect number `n` to be scheduled, checks that exactly one timer,
 * due `delay` ms from now, is pending, and advances the clock to it.
 */
async function expectRetry(
  clock: VirtualClock,
  retries: RetryInfo[],
  n: number,
  expected: { attempt: number; delay: number },
): Promise<void> {
  await waitFor(() => retries.length >= n, IO, `reconnect #${n} to be scheduled`);
  const info = retries[n - 1]!;
  assert.deepEqual({ attempt: info.attempt, delay: info.delay }, expected, `reconnect #${n}`);
  assert.deepEqual(clock.dueTimes, [clock.now() + expected.delay]);
  await clock.advance(expected.delay);
}

describe("connect on a virtual clock", () => {
  it("connect reconnects with Last-Event-ID exactly the server's retry after a clean end", async () => {
    const server = await scripted([
      () => new Response("retry: 50\nid: 7\ndata: one\n\n", { headers: SSE }),
      () => new Response(openBody("id: 8\ndata: two\n\n"), { headers: SSE }),
    ]);
    try {
      await withVirtualClock(async (clock) => {
        const retries: RetryInfo[] = [];
        const reading = follow(
          connect(server.origin, {
            backoff: { jitter: 0 },
            onRetry: (info) => retries.push(info),
          }),
          2,
        );
        await waitFor(() => retries.length === 1, IO, "the reconnect to be scheduled");
        assert.deepEqual(retries, [{ attempt: 1, delay: 50, error: undefined }]);
        assert.deepEqual(clock.dueTimes, [50]);
        await clock.advance(49);
        assert.equal(server.requests.length, 1, "no reconnect before the retry time");
        await clock.advance(1);
        const events = await reading.done;
        assert.deepEqual(events.map((event) => [event.data, event.lastEventId]), [
          ["one", "7"],
          ["two", "8"],
        ]);
        assert.equal(server.requests.length, 2);
        assert.equal(server.requests[1]!.headers.get("last-event-id"), "7");
        assert.equal(clock.pending, 0);
      });
    } finally {
      await server.close();
    }
  });

  it("connect waits out a 503's Retry-After (at least that long), then reconnects", async () => {
    const server = await scripted([
      () => new Response("busy\n", { status: 503, headers: { "retry-after": "3" } }),
      () => new Response("busy\n", { status: 429, headers: { "retry-after": "1" } }),
      () => new Response(openBody("data: in\n\n"), { headers: SSE }),
    ]);
    try {
      await withVirtualClock(async (clock) => {
        const retries: RetryInfo[] = [];
        const errors: unknown[] = [];
        const reading = follow(
          connect(server.origin, {
            backoff: { initial: 100, jitter: 0 },
            onRetry: (info) => retries.push(info),
            onError: (error) => errors.push(error),
          }),
          1,
        );
        await expectRetry(clock, retries, 1, { attempt: 1, delay: 3_000 });
        // The second wait is the backoff's (100 × 2 = 200) or Retry-After's, whichever is longer.
        await expectRetry(clock, retries, 2, { attempt: 2, delay: 1_000 });
        const events = await reading.done;
        assert.deepEqual(events.map((event) => event.data), ["in"]);
        assert.equal(server.requests.length, 3);
        assert.equal(errors.length, 2);
        assert.match(String(errors[0]), /busy \(status 503\), retry after 3000 ms/);
      });
    } finally {
      await server.close();
    }
  });

  it("connect retries a network error on the first connect after the initial delay", async () => {
    const server = await scripted([() => new Response(openBody("data: x\n\n"), { headers: SSE })]);
    let calls = 0;
    const errors: unknown[] = [];
    const retries: RetryInfo[] = [];
    try {
      await withVirtualClock(async (clock) => {
        const reading = follow(
          connect(server.origin, {
            backoff: { initial: 5, jitter: 0 },
            fetch: (request, init) =>
              ++calls === 1
                ? Promise.reject(new TypeError("Connection refused"))
                : fetch(request, init),
            onError: (error) => errors.push(error),
            onRetry: (info) => retries.push(info),
          }),
          1,
        );
        await expectRetry(clock, retries, 1, { attempt: 1, delay: 5 });
        const events = await reading.done;
        assert.equal(events[0]!.data, "x");
        assert.equal(calls, 2);
        assert.equal((errors[0] as Error).message, "Connection refused");
      });
    } finally {
      await server.close();
    }
  });

  it("connect keeps retrying a refused port with growing waits until closed", async () => {
    const dead = await serve(() => new Response(null));
    const origin = dead.origin;
    await dead.close();
    await withVirtualClock(async (clock) => {
      const retries: RetryInfo[] = [];
      const connection = connect(origin, {
        backoff: { initial: 10, factor: 2, jitter: 0, max: 40 },
        onRetry: (info) => retries.push(info),
      });
      const reading = follow(connection, 1);
      await expectRetry(clock, retries, 1, { attempt: 1, delay: 10 });
      await expectRetry(clock, retries, 2, { attempt: 2, delay: 20 });
      await expectRetry(clock, retries, 3, { attempt: 3, delay: 40 });
      await waitFor(() => retries.length === 4, IO, "reconnect #4");
      assert.deepEqual([retries[3]!.attempt, retries[3]!.delay], [4, 40]);
      connection.close();
      assert.deepEqual(await reading.done, []);
      assert.ok(retries[0]!.error instanceof Error);
      assert.equal(clock.pending, 0, "close() cleared the wait");
    });
  });

  it("connect backs off connections that end soon after they open, even with events", async () => {
    const server = await serve(() => new Response("data: short\n\n", { headers: SSE }));
    try {
      await withVirtualClock(async (clock) => {
        const retries: RetryInfo[] = [];
        const connection = connect(server.origin, {
          backoff: { initial: 100, factor: 2, max: 1_000, jitter: 0, resetAfter: 5_000 },
          onRetry: (info) => retries.push(info),
        });
        const reading = follow(connection);
        await expectRetry(clock, retries, 1, { attempt: 1, delay: 100 });
        await expectRetry(clock, retries, 2, { attempt: 2, delay: 200 });
        await expectRetry(clock, retries, 3, { attempt: 3, delay: 400 });
        await expectRetry(clock, retries, 4, { attempt: 4, delay: 800 });
        await expectRetry(clock, retries, 5, { attempt: 5, delay: 1_000 });
        await waitFor(() => retries.length === 6, IO, "reconnect #6");
        connection.close();
        await reading.done;
        assert.equal(reading.seen.length, 6, "every connection carried its event");
      });
    } finally {
      await server.close();
    }
  });

  it("connect restarts the backoff after a connection that stayed open resetAfter ms", async () => {
    const held: ReturnType<typeof heldBody>[] = [];
    const short = () => new Response("data: short\n\n", { headers: SSE });
    const long = () => {
      const body = heldBody("data: long\n\n");
      held.push(body);
      return new Response(body.body, { headers: SSE });
    };
    const server = await scripted([short, short, long, short, long, short]);
    try {
      await withVirtualClock(async (clock) => {
        const retries: RetryInfo[] = [];
        const connection = connect(server.origin, {
          backoff: { initial: 100, factor: 3, jitter: 0, resetAfter: 5_000 },
          onRetry: (info) => retries.push(info),
        });
        const reading = follow(connection);
        await expectRetry(clock, retries, 1, { attempt: 1, delay: 100 });
        await expectRetry(clock, retries, 2, { attempt: 2, delay: 300 });
        // The third connection stays open 5 s: the streak ends with it.
        await waitFor(() => held.length === 1 && reading.seen.length === 3, IO, "connection 3");
        await clock.advance(5_000);
        held[0]!.end();
        await expectRetry(clock, retries, 3, { attempt: 1, delay: 100 });
        await expectRetry(clock, retries, 4, { attempt: 2, delay: 300 });
        // The fifth stays open 1 ms less than resetAfter: the streak goes on.
        await waitFor(() => held.length === 2 && reading.seen.length === 5, IO, "connection 5");
        await clock.advance(4_999);
        held[1]!.end();
        await expectRetry(clock, retries, 5, { attempt: 3, delay: 900 });
        await waitFor(() => retries.length === 6, IO, "reconnect #6");
        assert.deepEqual([retries[5]!.attempt, retries[5]!.delay], [4, 2_700]);
        connection.close();
        await reading.done;
        assert.equal(server.requests.length, 6);
      });
    } finally {
      await server.close();
    }
  });

  it("connect ends at once when closed during a backoff wait, leaving no timer", async () => {
    const server = await scripted([() => new Response(null, { status: 503 })]);
    await server.close();
    await withVirtualClock(async (clock) => {
      const retries: RetryInfo[] = [];
      const connection = connect(server.origin, {
        backoff: { initial: 60_000, jitter: 0 },
        onRetry: (info) => retries.push(info),
      });
      const reading = follow(connection, 1);
      await waitFor(() => retries.length === 1, IO, "a retry");
      assert.deepEqual(clock.dueTimes, [60_000]);
      connection.close();
      assert.deepEqual(await reading.done, []);
      assert.equal(clock.pending, 0);
      assert.equal(connection.state, "closed");
    });
  });

  it("connect replaces a connection that sends no byte within inactivityTimeout", async () => {
    let cancelled = 0;
    const server = await scripted([
      () => new Response(openBody("data: one\n\n", () => cancelled++), { headers: SSE }),
      () => new Response(openBody("data: two\n\n"), { headers: SSE }),
    ]);
    try {
      await withVirtualClock(async (clock) => {
        const errors: unknown[] = [];
        const retries: RetryInfo[] = [];
        const reading = follow(
          connect(server.origin, {
            inactivityTimeout: 45_000,
            backoff: { initial: 1_000, jitter: 0 },
            onError: (error) => errors.push(error),
            onRetry: (info) => retries.push(info),
          }),
          2,
        );
        await waitFor(
          () => reading.seen.length === 1 && clock.pending === 1,
          IO,
          "the first event and a read waiting for more",
        );
        assert.deepEqual(clock.dueTimes, [45_000]);
        await clock.advance(44_999);
        assert.equal(errors.length, 0);
        await clock.advance(1);
        // It was open 45 s, more than resetAfter: the first reconnect of a streak.
        await expectRetry(clock, retries, 1, { attempt: 1, delay: 1_000 });
        const events = await reading.done;
        assert.deepEqual(events.map((event) => event.data), ["one", "two"]);
        assert.equal(errors.length, 1);
        assert.equal((errors[0] as DOMException).name, "TimeoutError");
        assert.equal(
          (errors[0] as DOMException).message,
          "Cannot read event stream: no data for 45000 ms",
        );
        assert.equal(retries[0]!.error, errors[0]);
        await waitFor(() => cancelled === 1, IO, "the dead body to be cancelled");
      });
    } finally {
      await server.close();
    }
  });

  it("connect replaces a server that accepts and never answers within inactivityTimeout", async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => release = resolve);
    const server = await scripted([
      async () => {
        await released;
        return new Response(null, { status: 204 });
      },
      () => new Response(openBody("data: late\n\n"), { headers: SSE }),
    ]);
    try {
      await withVirtualClock(async (clock) => {
        const retries: RetryInfo[] = [];
        const reading = follow(
          connect(server.origin, {
            inactivityTimeout: 100,
            backoff: { initial: 1, jitter: 0 },
            onRetry: (info) => retries.push(info),
          }),
          1,
        );
        await waitFor(() => server.requests.length === 1, IO, "the first request");
        assert.deepEqual(clock.dueTimes, [100]);
        await clock.advance(99);
        assert.equal(retries.length, 0);
        await clock.advance(1);
        await expectRetry(clock, retries, 1, { attempt: 1, delay: 1 });
        assert.equal((retries[0]!.error as DOMException).name, "TimeoutError");
        const events = await reading.done;
        assert.equal(events[0]!.data, "late");
        assert.equal(server.requests.length, 2);
      });
    } finally {
      release();
      await server.close();
    }
  });

  it("connect runs no inactivity timer while the consumer holds an event", async () => {
    const server = await scripted([
      () => new Response(openBody("data: a\n\ndata: b\n\n"), { headers: SSE }),
    ]);
    try {
      await withVirtualClock(async (clock) => {
        const seen: string[] = [];
        for await (const event of connect(server.origin, { inactivityTimeout: 50 })) {
          seen.push(event.data);
          if (seen.length === 2) break;
          assert.equal(clock.pending, 0, "no timer runs while the consumer works");
          await clock.advance(1_000);
        }
        assert.deepEqual(seen, ["a", "b"]);
        assert.equal(server.requests.length, 1);
        assert.equal(clock.pending, 0);
      });
    } finally {
      await server.close();
    }
  });
});
