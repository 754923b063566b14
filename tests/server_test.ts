import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  EventStream,
  type ParsedEvent,
  type ServerSentEvent,
  sseResponse,
  StreamClosedError,
} from "../mod.ts";
import { settle, VirtualClock } from "./_clock.ts";
import {
  delay,
  readEventLog,
  runtime,
  serve,
  type TestServer,
  untilAborted,
  waitFor,
} from "./_helpers.ts";
import { runFixture } from "./fixtures/_spawn.ts";

const decoder = new TextDecoder();

async function withServer(
  handler: (request: Request) => Response | Promise<Response>,
  fn: (server: TestServer) => Promise<void>,
): Promise<void> {
  const server = await serve(handler);
  try {
    await fn(server);
  } finally {
    await server.close();
  }
}

describe(`EventStream on a real ${runtime} server`, () => {
  it("events arrive in order and intact", async () => {
    const payloads: ServerSentEvent[] = [
      { data: "plain" },
      { data: " leading space", event: "spaced" },
      { data: "multi\nline\r\ncrlf\rcr" },
      { data: "😀 \u2028 漢字", id: "u" },
      { data: "" },
      { data: { json: [1, "two", null] }, event: "json" },
      { data: "x".repeat(200_000), id: "big" },
      { id: "" },
      { data: "after reset" },
    ];
    for (let n = 0; n < 200; n++) payloads.push({ data: `n${n}`, id: n });
    const handler = (): Response =>
      sseResponse(async (stream) => {
        for (const event of payloads) await stream.send(event);
      });
    await withServer(handler, async (server) => {
      const response = await fetch(server.origin);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
      assert.equal(response.headers.get("cache-control"), "no-cache, no-transform");
      const events = (await readEventLog(response.body!)).filter((entry) => "data" in entry);
      const expected: ParsedEvent[] = [
        { type: "message", data: "plain", lastEventId: "" },
        { type: "spaced", data: " leading space", lastEventId: "" },
        { type: "message", data: "multi\nline\ncrlf\ncr", lastEventId: "" },
        { type: "message", data: "😀 \u2028 漢字", lastEventId: "u" },
        { type: "message", data: "", lastEventId: "u" },
        { type: "json", data: '{"json":[1,"two",null]}', lastEventId: "u" },
        { type: "message", data: "x".repeat(200_000), lastEventId: "big" },
        { type: "message", data: "after reset", lastEventId: "" },
      ];
      for (let n = 0; n < 200; n++) {
        expected.push({ type: "message", data: `n${n}`, lastEventId: String(n) });
      }
      assert.deepEqual(events, expected);
    });
  });

  it("the response headers and first bytes arrive at once on a quiet stream", async () => {
    let stream: EventStream | undefined;
    const handler = (): Response => {
      stream = new EventStream({ heartbeat: null });
      return stream.response();
    };
    await withServer(handler, async (server) => {
      const controller = new AbortController();
      // The stream never publishes: a runtime that held the headers or the opening comment back
      // until there is something to send would hang here. The bound only tells such a hang
      // from a slow machine, so it is generous (no latency is measured).
      const deadline = setTimeout(
        () => controller.abort(new Error("Nothing arrived within 10 s on a quiet stream")),
        10_000,
      );
      try {
        const response = await fetch(server.origin, { signal: controller.signal });
        const reader = response.body!.getReader();
        const first = await reader.read();
        assert.equal(decoder.decode(first.value), ":\n\n");
        controller.abort();
        await reader.cancel().catch(() => {});
      } finally {
        clearTimeout(deadline);
        controller.abort();
      }
      await waitFor(() => stream!.signal.aborted, 5_000, "the stream to end");
    });
  });

  // The exact schedule is asserted on a virtual clock in event_stream_test.ts; this checks it
  // end to end over a real socket, with margins that hold when every core is busy: a busy gap
  // of 25 ms would have to stretch 16 times to let a 400 ms heartbeat in, and the idle phase
  // is worth five heartbeats where two are asked for.
  it("heartbeats arrive only while the stream is idle", { timeout: 20_000 }, async () => {
    const handler = (): Response =>
      sseResponse(async (stream) => {
        for (let n = 0; n < 40; n++) {
          await stream.publish(`busy ${n}`);
          await delay(25);
        }
        await delay(2_000);
        await stream.publish("end");
      }, { heartbeat: 400 });
    await withServer(handler, async (server) => {
      const log = await readEventLog((await fetch(server.origin)).body!);
      const kinds = log.map((entry) => ("comment" in entry ? "♥" : entry.data));
      const lastBusy = kinds.indexOf("busy 39");
      assert.deepEqual(kinds.slice(0, lastBusy + 1), [
        "♥", // the opening comment
        ...Array.from({ length: 40 }, (_, n) => `busy ${n}`),
      ], "no heartbeat while busy");
      const idle = kinds.slice(lastBusy + 1, -1);
      assert.ok(idle.length >= 2 && idle.every((kind) => kind === "♥"), kinds.join(" "));
      assert.equal(kinds.at(-1), "end");
    });
  });

  // Bun.serve cuts a request idle for `idleTimeout` (10 s by default); the heartbeat is what keeps
  // a quiet stream open. Rather than sleep past the real 10 s on every runtime, the two halves
  // are checked apart: the default heartbeat comes well inside 10 s (on the virtual clock), and
  // on Bun a heartbeat does keep a stream open past a shorter `idleTimeout` (over a real socket,
  // beside a control stream without heartbeat that Bun does cut). Deno.serve has no idle
  // timeout, so the second half is Bun's alone.
  it("a quiet stream with the defaults sends a heartbeat well inside Bun's 10 s idle timeout", async () => {
    const clock = new VirtualClock().install();
    try {
      const stream = new EventStream();
      const reader = stream.readable.getReader();
      assert.equal(decoder.decode((await reader.read()).value), ":\n\n");
      const next = reader.read();
      await clock.advance(8_000);
      const heartbeat = await Promise.race([next, settle().then(() => undefined)]);
      assert.ok(heartbeat !== undefined, "no heartbeat within 8 s of idleness");
      assert.equal(decoder.decode(heartbeat.value), ":\n\n");
      stream.close();
      await reader.cancel();
    } finally {
      clock.uninstall();
    }
  });

  it("on Bun, heartbeats keep a quiet stream open past the server's idle timeout", {
    skip: runtime !== "bun" && "Deno.serve has no idle timeout",
    timeout: 30_000,
  }, async () => {
    // Bun checks idle connections on a 4 s tick, and an `idleTimeout` of 4 s or less cuts a
    // stream at the first tick whatever it sends (measured on Bun 1.4): 6 s is the shortest
    // that shows the heartbeat at work. A stream without heartbeat is cut 6 to 10 s in.
    const quietFor = 11_000;
    const open = async (heartbeat: number | null): Promise<string[]> => {
      const handler = (): Response =>
        sseResponse(async (stream) => {
          await stream.publish("start");
          await delay(quietFor);
          await stream.publish("still alive").catch(() => {});
        }, { heartbeat });
      const server = await serve(handler, { idleTimeout: 6 });
      try {
        const log = await readEventLog((await fetch(server.origin)).body!).catch(() => []);
        return log.map((entry) => "comment" in entry ? "♥" : entry.data);
      } finally {
        await server.close();
      }
    };
    const [kept, control] = await Promise.all([open(1_000), open(null)]);
    assert.deepEqual(kept.filter((kind) => kind !== "♥"), ["start", "still alive"]);
    assert.ok(kept.length - 3 >= 5, `only ${kept.length - 3} heartbeats in ${quietFor} ms`);
    assert.ok(!control.includes("still alive"), "Bun kept a stream without heartbeat open");
  });

  for (const kind of ["quiet", "busy"] as const) {
    // 2.5 s is half the default heartbeat: the disconnect is noticed without waiting for a write.
    it(`a client disconnect aborts a ${kind} producer within 2.5 s and leaves no stream behind`, async () => {
      let signal: AbortSignal | undefined;
      let loopEnded = false;
      let abortedAt = 0;
      const handler = (): Response =>
        sseResponse(async (stream) => {
          signal = stream.signal;
          stream.signal.addEventListener("abort", () => abortedAt = performance.now(), {
            once: true,
          });
          try {
            if (kind === "quiet") await untilAborted(stream.signal);
            else {
              for (let n = 0; !stream.signal.aborted; n++) {
                await stream.publish(n).catch(() => {});
                await delay(20);
              }
            }
          } finally {
            loopEnded = true;
          }
        }, { onError: (error) => assert.fail(`unexpected report: ${error}`) });
      await withServer(handler, async (server) => {
        const controller = new AbortController();
        const response = await fetch(server.origin, { signal: controller.signal });
        const reader = response.body!.getReader();
        await reader.read();
        await delay(100);
        assert.equal(signal?.aborted, false);
        const disconnectedAt = performance.now();
        controller.abort();
        await reader.cancel().catch(() => {});
        await waitFor(() => loopEnded, 5_000, "the producer to end");
        const took = abortedAt - disconnectedAt;
        assert.ok(took < 2_500, `the producer saw the disconnect after ${took.toFixed(0)} ms`);
        const reason = signal!.reason;
        assert.ok(reason instanceof StreamClosedError);
        assert.equal(reason.reason, "cancelled");
      });
    });
  }

  it(
    "a client that stops reading is cut off with reason timeout",
    { timeout: 15_000 },
    async () => {
      let stream: EventStream | undefined;
      let producerError: unknown;
      const handler = (): Response => {
        stream = new EventStream({ writeTimeout: 300 });
        const frame = "x".repeat(65_536);
        void (async () => {
          try {
            // Fills the socket and the client's buffers until the runtime stops taking chunks.
            for (;;) await stream!.publish(frame);
          } catch (error) {
            producerError = error;
          }
        })();
        return stream.response();
      };
      await withServer(handler, async (server) => {
        const controller = new AbortController();
        const response = await fetch(server.origin, { signal: controller.signal });
        try {
          await waitFor(() => stream?.signal.aborted === true, 10_000, "the write timeout");
          const reason = stream!.signal.reason;
          assert.ok(reason instanceof StreamClosedError);
          assert.equal(reason.reason, "timeout");
          await waitFor(() => producerError !== undefined, 5_000, "the producer to stop");
          assert.equal(producerError, reason);
        } finally {
          controller.abort();
          await response.body?.cancel().catch(() => {});
        }
      });
    },
  );

  it("many clients that disconnect all end their producers", async () => {
    const producers = new Set<AbortSignal>();
    let ended = 0;
    const handler = (): Response =>
      sseResponse(async (stream) => {
        producers.add(stream.signal);
        await untilAborted(stream.signal);
        ended++;
      });
    await withServer(handler, async (server) => {
      const clients = Array.from({ length: 20 }, async () => {
        const controller = new AbortController();
        const response = await fetch(server.origin, { signal: controller.signal });
        const reader = response.body!.getReader();
        await reader.read();
        controller.abort();
        await reader.cancel().catch(() => {});
      });
      await Promise.all(clients);
      await waitFor(() => ended === 20, 5_000, "every producer to end");
      assert.equal(producers.size, 20);
      for (const signal of producers) {
        assert.equal((signal.reason as StreamClosedError).reason, "cancelled");
      }
    });
  });

  it("a disconnect is seen without request.signal and prints no warning", {
    timeout: 15_000,
  }, async () => {
    const { code, stdout, stderr } = await runFixture("no_request_signal.ts");
    assert.equal(code, 0, `exit code ${code}\n${stdout}\n${stderr}`);
    assert.match(stdout, /^producer aborted: cancelled after \d+ ms$/m);
    assert.doesNotMatch(stderr, /legacy|warn/i, stderr);
  });

  if (runtime === "deno") {
    it(
      "Deno does print its legacy warning when request.signal is read (the check above can fail)",
      {
        timeout: 15_000,
      },
      async () => {
        const { code, stderr } = await runFixture("no_request_signal.ts", ["--read-signal"]);
        assert.equal(code, 0, stderr);
        assert.match(stderr, /request\.signal aborts on successful responses \(legacy behavior\)/);
      },
    );
  }
});
