/**
 * `connect()` as a good citizen (issue 12): jittered reconnects, a clamped `retry:`, backoff for
 * connections that end soon after they open. Real servers; virtual time where the schedule is
 * the point, plus two real-time runs with generous bounds that an overflowing timer or a
 * reconnect loop would fail by orders of magnitude.
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect, type Connection, type RetryInfo } from "../../src/client/mod.ts";
import { delay, serve, waitFor } from "../_helpers.ts";
import { follow, heldBody, SSE, withVirtualClock } from "./_server.ts";

/** Real time allowed for real I/O to catch up with a step of virtual time (both cores busy). */
const IO = 30_000;

/** A server that answers every request with `text`, then ends the stream. */
function closingServer(text: string) {
  return serve(() => new Response(text, { headers: SSE }));
}

describe("connect as a good citizen", () => {
  it("connect waits one hour after retry: 99999999999 instead of overflowing a timer", async () => {
    let requests = 0;
    const server = await serve(() => {
      requests++;
      return new Response("retry: 99999999999\ndata: x\n\n", { headers: SSE });
    });
    try {
      await withVirtualClock(async (clock) => {
        const retries: RetryInfo[] = [];
        const connection = connect(server.origin, {
          backoff: { jitter: 0 },
          onRetry: (info) => retries.push(info),
        });
        const reading = follow(connection);
        await waitFor(() => retries.length === 1, IO, "the first reconnect to be scheduled");
        assert.deepEqual([retries[0]!.attempt, retries[0]!.delay], [1, 3_600_000]);
        assert.deepEqual(clock.dueTimes, [3_600_000]);
        await clock.advance(3_599_999);
        assert.equal(requests, 1);
        await clock.advance(1);
        await waitFor(() => retries.length === 2, IO, "the second reconnect to be scheduled");
        assert.equal(requests, 2);
        // A connection that ended at once extends the streak; the hour stays the ceiling.
        assert.deepEqual([retries[1]!.attempt, retries[1]!.delay], [2, 3_600_000]);
        connection.close();
        await reading.done;
      });
    } finally {
      await server.close();
    }
  });

  it("connect jitters the clamped hour of retry: 99999999999 within 0 to two hours", async () => {
    const server = await closingServer("retry: 99999999999\ndata: x\n\n");
    try {
      await withVirtualClock(async (clock) => {
        const retries: RetryInfo[] = [];
        const connection = connect(server.origin, { onRetry: (info) => retries.push(info) });
        const reading = follow(connection);
        await waitFor(() => retries.length === 1, IO, "the first reconnect to be scheduled");
        const wait = retries[0]!.delay;
        assert.ok(wait >= 0 && wait <= 7_200_000, `waits ${wait} ms`);
        assert.deepEqual(clock.dueTimes, [wait]);
        connection.close();
        await reading.done;
        assert.equal(clock.pending, 0);
      });
    } finally {
      await server.close();
    }
  });

  it("connect makes a few requests, then one every few seconds, to a retry: 0 server that closes", async () => {
    const times: number[] = [];
    const server = await closingServer("retry: 0\ndata: x\n\n");
    try {
      await withVirtualClock(async (clock) => {
        const retries: RetryInfo[] = [];
        const connection = connect(server.origin, {
          backoff: { jitter: 0 },
          fetch: (request, init) => {
            times.push(clock.now());
            return fetch(request, init);
          },
          onRetry: (info) => retries.push(info),
        });
        const reading = follow(connection);
        for (let n = 1; clock.now() < 60_000; n++) {
          await waitFor(() => retries.length === n, IO, `reconnect #${n}`);
          assert.deepEqual(clock.dueTimes, [clock.now() + retries[n - 1]!.delay]);
          await clock.advance(retries[n - 1]!.delay);
        }
        await waitFor(() => retries.length === 6, IO, "reconnect #6");
        connection.close();
        await reading.done;
        assert.deepEqual(
          retries.map((info) => info.delay),
          [0, 6_000, 12_000, 24_000, 30_000, 30_000],
        );
        assert.deepEqual(times, [0, 0, 6_000, 18_000, 42_000, 72_000]);
      });
    } finally {
      await server.close();
    }
  });

  it("connect makes at most a handful of requests a second to misbehaving servers, in real time", {
    timeout: 30_000,
  }, async () => {
    for (const retry of ["0", "99999999999"]) {
      let requests = 0;
      const server = await serve(() => {
        requests++;
        return new Response(`retry: ${retry}\ndata: x\n\n`, { headers: SSE });
      });
      try {
        const connection = connect(server.origin);
        const reading = follow(connection);
        await waitFor(() => requests >= 1, 10_000, "the first request");
        await delay(2_000);
        connection.close();
        await reading.done;
        // Expected: 1 or 2 (retry: 0 allows an immediate second try, then waits 0–12 s).
        // The loops this guards against made hundreds of requests a second.
        assert.ok(requests <= 5, `retry: ${retry}: ${requests} requests in 2 s`);
      } finally {
        await server.close();
      }
    }
  });

  it("connect spreads the reconnects of 200 clients whose server closes every stream at once", {
    timeout: 120_000,
  }, async () => {
    const held: ReturnType<typeof heldBody>[] = [];
    const server = await serve(() => {
      const body = heldBody("retry: 2000\ndata: hello\n\n");
      held.push(body);
      return new Response(body.body, { headers: SSE });
    });
    try {
      await withVirtualClock(async (clock) => {
        const retries: RetryInfo[] = [];
        const reconnectedAt: number[] = [];
        const connections: Connection[] = [];
        const readings: ReturnType<typeof follow>[] = [];
        for (let i = 0; i < 200; i++) {
          let calls = 0;
          const connection = connect(server.origin, {
            fetch: (request, init) => {
              if (++calls === 2) reconnectedAt.push(clock.now());
              return fetch(request, init);
            },
            onRetry: (info) => retries.push(info),
          });
          connections.push(connection);
          readings.push(follow(connection));
        }
        const opened = () => readings.filter((reading) => reading.seen.length >= 1).length;
        await waitFor(() => opened() === 200, IO, "200 open streams");
        assert.equal(clock.pending, 0);
        // An hour of a healthy stream, then a deploy ends every stream in the same instant.
        await clock.advance(3_600_000);
        const closedAt = clock.now();
        for (const body of held) body.end();
        await waitFor(() => retries.length === 200, IO, "200 reconnects to be scheduled");
        assert.ok(retries.every((info) => info.attempt === 1));
        const delays = retries.map((info) => info.delay);
        assert.ok(delays.every((wait) => wait >= 0 && wait <= 4_000), "within 0–2 × retry");
        assert.ok(new Set(delays).size >= 150, `${new Set(delays).size} distinct delays`);
        await clock.advance(4_000);
        await waitFor(() => held.length === 400, IO, "200 reconnects to arrive");
        assert.equal(reconnectedAt.length, 200);
        const perWindow = new Map<number, number>();
        for (const at of reconnectedAt) {
          const window = Math.floor((at - closedAt) / 100);
          perWindow.set(window, (perWindow.get(window) ?? 0) + 1);
        }
        // Evenly spread over 4 s: 5 a window on average; all at once would be 200.
        const busiest = Math.max(...perWindow.values());
        assert.ok(busiest <= 25, `${busiest} reconnects in one 100 ms window`);
        assert.ok(perWindow.size >= 30, `reconnects fell in only ${perWindow.size} windows`);
        for (const connection of connections) connection.close();
        await Promise.all(readings.map((reading) => reading.done));
      });
    } finally {
      for (const body of held) body.end();
      await server.close();
    }
  });
});
