/**
 * ResumableStreams in memory: real Deno.serve/Bun.serve readers, limits, retention on the
 * virtual clock, bad input.
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { EventParserStream, type ParsedEvent } from "../../mod.ts";
import { END_EVENT, ResumableStreams } from "../../src/resumable/mod.ts";
import { delay, serve, untilAborted } from "../_helpers.ts";
import { VirtualClock } from "../_clock.ts";
import { visit } from "./_reader.ts";

async function readAll(response: Response): Promise<ParsedEvent[]> {
  const events: ParsedEvent[] = [];
  for await (const event of response.body!.pipeThrough(new EventParserStream())) {
    events.push(event);
  }
  return events;
}

function request(lastEventId?: string): Request {
  return new Request("http://localhost/", {
    headers: lastEventId === undefined ? {} : { "Last-Event-ID": lastEventId },
  });
}

describe("ResumableStreams in memory", () => {
  it("serves a reader that drops and resumes 10 times every event once, then the end marker", {
    timeout: 30_000,
  }, async () => {
    const resumable = new ResumableStreams({ heartbeat: null });
    const server = await serve((req) => resumable.response("gen", req));
    let runs = 0;
    try {
      await resumable.start("gen", async (stream) => {
        runs++;
        for (let n = 0; n < 1_000; n++) {
          await stream.publish(String(n));
          if (n % 10 === 9) await delay(5);
        }
      });
      const data: string[] = [];
      let lastEventId = "";
      for (let drop = 0; drop < 10; drop++) {
        const got = await visit(server.origin, lastEventId, 20 + drop * 7);
        data.push(...got.events.map((e) => e.data));
        lastEventId = got.lastEventId;
      }
      const last = await visit(server.origin, lastEventId);
      assert.equal(last.ended, true);
      const end = last.events.pop()!;
      data.push(...last.events.map((e) => e.data));
      assert.deepEqual(data, Array.from({ length: 1_000 }, (_, n) => String(n)));
      assert.equal(end.type, END_EVENT);
      assert.deepEqual(JSON.parse(end.data), { reason: "complete" });
      // Resuming from the end marker: nothing left, for good.
      assert.equal((await visit(server.origin, end.lastEventId)).status, 204);
      assert.equal(runs, 1);
      assert.equal(resumable.metrics().ended.complete, 1);
    } finally {
      await server.close();
      await resumable.close();
    }
  });

  it("gives 100 readers of one generation, half of them late, identical events", {
    timeout: 30_000,
  }, async () => {
    const resumable = new ResumableStreams({ heartbeat: null });
    try {
      await resumable.start("gen", async (stream) => {
        for (let n = 0; n < 300; n++) {
          await stream.publish({ n }, { event: "token" });
          if (n % 30 === 29) await delay(5);
        }
      });
      const early = Array.from(
        { length: 50 },
        async () => readAll(await resumable.response("gen", request())),
      );
      await delay(20);
      const late = Array.from(
        { length: 50 },
        async () => readAll(await resumable.response("gen", request())),
      );
      const all = await Promise.all([...early, ...late]);
      assert.equal(all[0]!.length, 301);
      for (const events of all) assert.deepEqual(events, all[0]);
    } finally {
      await resumable.close();
    }
  });

  it("sends stream-reset then everything to a Last-Event-ID of another generation", {
    timeout: 30_000,
  }, async () => {
    const resumable = new ResumableStreams({ heartbeat: null });
    try {
      await resumable.start("gen", (stream) => stream.publish("only"));
      await resumable.finished("gen");
      const events = await readAll(await resumable.response("gen", request("other-3")));
      assert.deepEqual(events.map((e) => e.type), ["stream-reset", "message", "end"]);
      assert.deepEqual(JSON.parse(events[0]!.data), { stream: "gen", lastEventId: "other-3" });
    } finally {
      await resumable.close();
    }
  });

  it("answers 404 once the retention has passed, and closes a reader still open then", {
    timeout: 30_000,
  }, async () => {
    const clock = new VirtualClock().install();
    const resumable = new ResumableStreams({ retention: 1_000, heartbeat: null });
    try {
      await resumable.start("gen", (stream) => stream.publish("x"));
      await resumable.finished("gen");
      const open = await resumable.response("gen", request());
      const reader = open.body!.getReader();
      await clock.advance(999);
      assert.equal((await resumable.response("gen", request())).status, 200);
      await clock.advance(1);
      assert.equal((await resumable.response("gen", request())).status, 404);
      assert.equal(await resumable.status("gen"), undefined);
      assert.equal(resumable.metrics().expired, 1);
      while (!(await reader.read()).done);
      const again = await resumable.response("gen", request());
      assert.equal(again.status, 404);
      assert.match(await again.text(), /^Cannot resume stream: no stream `gen`/);
    } finally {
      await resumable.close();
      clock.uninstall();
    }
  });

  it("ends a generation at maxEvents with the reason limit and aborts its producer", {
    timeout: 30_000,
  }, async () => {
    const resumable = new ResumableStreams({ maxEvents: 5, heartbeat: null });
    let failure: unknown;
    let aborted = false;
    try {
      await resumable.start("gen", async (stream) => {
        try {
          for (let n = 0; n < 10; n++) await stream.publish(n);
        } catch (error) {
          failure = error;
        }
        aborted = stream.signal.aborted;
      });
      await resumable.finished("gen");
      assert.ok(failure instanceof RangeError);
      assert.equal(aborted, true);
      const events = await readAll(await resumable.response("gen", request()));
      assert.deepEqual(events.map((e) => e.data), ["0", "1", "2", "3", "4", '{"reason":"limit"}']);
      assert.equal(resumable.metrics().ended.limit, 1);
    } finally {
      await resumable.close();
    }
  });

  it("ends a generation at maxBytes with the reason limit, keeping what fit", {
    timeout: 30_000,
  }, async () => {
    // Each event's stored body is `data: ` + 30 characters + a blank line: 38 of them.
    const resumable = new ResumableStreams({ maxBytes: 100, heartbeat: null });
    let failure: unknown;
    try {
      await resumable.start("gen", async (stream) => {
        try {
          for (let n = 0; n < 10; n++) await stream.publish(String(n).repeat(30));
        } catch (error) {
          failure = error;
        }
      });
      await resumable.finished("gen");
      assert.ok(failure instanceof RangeError, String(failure));
      const events = await readAll(await resumable.response("gen", request()));
      assert.deepEqual(events.map((e) => e.data), [
        "0".repeat(30),
        "1".repeat(30),
        '{"reason":"limit"}',
      ]);
      assert.equal(resumable.metrics().ended.limit, 1);
    } finally {
      await resumable.close();
    }
  });

  it("refuses maxStreams beyond the bound with full, and reports a producer that throws", {
    timeout: 30_000,
  }, async () => {
    const errors: unknown[] = [];
    const resumable = new ResumableStreams({ maxStreams: 1, onError: (e) => errors.push(e) });
    try {
      assert.equal(
        await resumable.start("a", () => Promise.reject(new Error("model down"))),
        "started",
      );
      assert.equal(await resumable.start("b", () => {}), "full");
      await resumable.finished("a");
      assert.equal((await resumable.status("a"))?.reason, "failed");
      assert.equal((errors[0] as Error).message, "model down");
    } finally {
      await resumable.close();
    }
  });

  it("stops a producer on cancel and ends its readers with the reason cancelled", {
    timeout: 30_000,
  }, async () => {
    const resumable = new ResumableStreams({ heartbeat: null });
    let signal: AbortSignal | undefined;
    try {
      await resumable.start("gen", async (stream) => {
        signal = stream.signal;
        await stream.publish("first");
        await untilAborted(stream.signal);
      });
      const reading = resumable.response("gen", request()).then(readAll);
      await delay(10);
      assert.equal(await resumable.cancel("gen"), true);
      assert.equal(signal?.aborted, true);
      const events = await reading;
      assert.deepEqual(events.map((e) => e.data), ["first", '{"reason":"cancelled"}']);
      assert.equal(await resumable.cancel("gen"), false);
    } finally {
      await resumable.close();
    }
  });

  it("refuses an id that is empty, too long or has a control character with a clear error", {
    timeout: 30_000,
  }, async () => {
    const resumable = new ResumableStreams();
    try {
      await assert.rejects(resumable.start("", () => {}), {
        name: "RangeError",
        message: "Cannot start stream: `id` must be 1 to 256 characters long, got `0`",
      });
      await assert.rejects(resumable.start("x".repeat(257), () => {}), {
        name: "RangeError",
        message: "Cannot start stream: `id` must be 1 to 256 characters long, got `257`",
      });
      await assert.rejects(resumable.start("a\nb", () => {}), {
        name: "TypeError",
        message: "Cannot start stream: `id` contains a control character",
      });
      await assert.rejects(resumable.cancel(""), RangeError);
      // A client controls the id of a read: a 400 that says why, not a thrown error.
      const response = await resumable.response("x".repeat(300), request());
      assert.equal(response.status, 400);
      assert.equal(
        await response.text(),
        "Cannot resume stream: `id` must be 1 to 256 characters long, got `300`",
      );
    } finally {
      await resumable.close();
    }
  });

  it("refuses a producer event named end: readers rely on it", { timeout: 30_000 }, async () => {
    const resumable = new ResumableStreams();
    let failure: unknown;
    try {
      await resumable.start("gen", async (stream) => {
        await stream.publish("x", { event: END_EVENT }).catch((e) => failure = e);
      });
      await resumable.finished("gen");
      assert.ok(failure instanceof TypeError);
      assert.equal(failure.message, "Cannot send event: the type `end` is reserved for readers");
    } finally {
      await resumable.close();
    }
  });
});
