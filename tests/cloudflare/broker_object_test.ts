/**
 * `@flume/sse/cloudflare` under Cloudflare's own runtime: workerd from node_modules runs
 * tests/cloudflare/worker.ts (one `BrokerObject` per channel, routed by `routeToBroker`), with
 * the Durable Objects' storage in memory and on disk, so that a restart can be tested.
 * @module
 */
import { after, describe, it as nodeIt } from "node:test";
import assert from "node:assert/strict";
import { EventParserStream, type ParsedEvent, STREAM_RESET_EVENT } from "../../mod.ts";
import { delay, readEvents } from "../_helpers.ts";
import { prepareWorkerd, type RunningWorkerd, type Storage, type WorkerdSite } from "./_workerd.ts";

const TIMEOUT = 60_000;

/** A workerd per suite, started by the first test that needs it (Bun gives hooks only 5 s). */
function workerd(storage: Storage): {
  site(): Promise<WorkerdSite>;
  running(): Promise<RunningWorkerd>;
  restart(): Promise<RunningWorkerd>;
  close(): Promise<void>;
} {
  let site: Promise<WorkerdSite> | undefined;
  let current: Promise<RunningWorkerd> | undefined;
  const getSite = (): Promise<WorkerdSite> => site ??= prepareWorkerd(storage);
  return {
    site: getSite,
    running: () => current ??= getSite().then((s) => s.start()),
    async restart() {
      await (await current)?.stop();
      current = getSite().then((s) => s.start());
      return await current;
    },
    async close() {
      await current?.then((w) => w.stop(), () => {});
      await site?.then((s) => s.remove(), () => {});
    },
  };
}

/**
 * `promise`, or a rejection after `ms`: a read that never comes fails its test instead of
 * hanging the run (Deno does not enforce the `timeout` of node:test).
 */
async function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Streams still open: a test that fails midway leaves none behind (workerd drains them on stop). */
const open = new Set<ReadableStreamDefaultReader<ParsedEvent>>();

function track(
  reader: ReadableStreamDefaultReader<ParsedEvent>,
): ReadableStreamDefaultReader<ParsedEvent> {
  open.add(reader);
  return reader;
}

/** `it`, closing whatever streams the test left open, passed or failed. */
function it(title: string, options: { timeout: number }, fn: () => Promise<void>): void {
  nodeIt(title, options, async () => {
    try {
      await fn();
    } finally {
      await Promise.all([...open].map((reader) => reader.cancel().catch(() => {})));
      open.clear();
    }
  });
}

let channels = 0;
function channel(name: string): string {
  return `${name}-${++channels}-${Math.random().toString(36).slice(2, 8)}`;
}

async function count(origin: string, channel: string): Promise<number> {
  const response = await fetch(`${origin}/count?channel=${encodeURIComponent(channel)}`);
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json() as { clients: number }).clients;
}

/** Polls the object's client count until it is `expected`; resolves with the ms it took. */
async function countReaches(
  origin: string,
  channel: string,
  expected: number,
  timeout = 10_000,
): Promise<number> {
  const started = Date.now();
  while (true) {
    const n = await count(origin, channel);
    if (n === expected) return Date.now() - started;
    if (Date.now() - started > timeout) {
      throw new Error(`Timed out waiting for ${expected} clients on ${channel}, last: ${n}`);
    }
    await delay(25);
  }
}

async function publish(
  origin: string,
  channel: string,
  body: { data: unknown; event?: string; id?: string | number },
): Promise<void> {
  const response = await fetch(`${origin}/events?channel=${encodeURIComponent(channel)}`, {
    method: "POST",
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 204, await response.text());
}

/** A subscriber through the worker; `until` reads events up to one whose data is `last`. */
async function subscribe(
  origin: string,
  channel: string,
  lastEventId?: string,
): Promise<{
  until(last: string): Promise<ParsedEvent[]>;
  next(): Promise<ParsedEvent>;
  close(): Promise<void>;
}> {
  const response = await fetch(`${origin}/events?channel=${encodeURIComponent(channel)}`, {
    headers: lastEventId === undefined ? {} : { "last-event-id": lastEventId },
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const reader = track(response.body!.pipeThrough(new EventParserStream()).getReader());
  const next = async (): Promise<ParsedEvent> => {
    const { done, value } = await within(reader.read(), `an event on ${channel}`);
    if (done) throw new Error("The stream ended");
    return value;
  };
  return {
    next,
    async until(last) {
      const events: ParsedEvent[] = [];
      while (events.at(-1)?.data !== last) events.push(await next());
      return events;
    },
    close: () => {
      open.delete(reader);
      return reader.cancel();
    },
  };
}

describe("BrokerObject under workerd, storage in memory", () => {
  const server = workerd("memory");
  after(() => server.close(), { timeout: 10_000 });

  it("serves 200 clients on four channels: a publish reaches exactly its channel's clients", {
    timeout: TIMEOUT,
  }, async () => {
    const { origin } = await server.running();
    const names = [0, 1, 2, 3].map((i) => channel(`fan${i}`));
    const clients = await Promise.all(
      Array.from({ length: 200 }, (_, i) => subscribe(origin, names[i % 4]!)),
    );
    for (const name of names) await countReaches(origin, name, 50);

    await publish(origin, names[0]!, { data: { only: 0 }, event: "note" });
    for (const name of names) await publish(origin, name, { data: "end" });
    const received = await Promise.all(clients.map((client) => client.until("end")));

    received.forEach((events, i) => {
      const expected = i % 4 === 0
        ? [["note", '{"only":0}'], ["message", "end"]]
        : [["message", "end"]];
      assert.deepEqual(events.map((e) => [e.type, e.data]), expected, `client ${i}`);
    });
    // One object per channel: each has its own ids, in order.
    for (let i = 0; i < 4; i++) {
      assert.equal(received[i]!.at(-1)!.lastEventId.endsWith(i === 0 ? "-2" : "-1"), true);
    }
    await Promise.all(clients.map((client) => client.close()));
    for (const name of names) await countReaches(origin, name, 0);
  });

  it("forgets a client that disconnects within 2 s", { timeout: TIMEOUT }, async () => {
    const { origin } = await server.running();
    const name = channel("leave");
    const stay = await subscribe(origin, name);
    const leave = await subscribe(origin, name);
    await countReaches(origin, name, 2);
    await leave.close();
    const took = await countReaches(origin, name, 1, 5_000);
    assert.ok(took < 2_000, `gone after ${took} ms`);
    // The one that stayed still gets events.
    await publish(origin, name, { data: "still here" });
    assert.equal((await stay.until("still here")).length, 1);
    await stay.close();
    await countReaches(origin, name, 0);
  });

  it(
    "answers a forged Last-Event-ID with the gap signal, whose id resumes from the newest position",
    {
      timeout: TIMEOUT,
    },
    async () => {
      const { origin } = await server.running();
      const name = channel("forged");
      await publish(origin, name, { data: "one" });
      await publish(origin, name, { data: "two" });
      for (const forged of ["nope", "0-1", "x".repeat(300)]) {
        const client = await subscribe(origin, name, forged);
        const reset = await client.next();
        await client.close();
        assert.equal(reset.type, STREAM_RESET_EVENT);
        const data = JSON.parse(reset.data) as { channels: string[]; lastEventId: string };
        assert.deepEqual(data.channels, [name]);
        assert.ok(forged.startsWith(data.lastEventId), "the id it came with, cut to a bound");
        assert.match(reset.lastEventId, /^[0-9a-z]+-2$/);
      }
      const first = await subscribe(origin, name, "nope");
      const head = (await first.next()).lastEventId;
      await first.close();
      await publish(origin, name, { data: "three" });
      const resumed = await subscribe(origin, name, head);
      assert.deepEqual((await resumed.until("three")).map((e) => e.data), ["three"]);
      await resumed.close();
    },
  );

  it("gives the gap signal after a restart that lost the storage in memory", {
    timeout: TIMEOUT,
  }, async () => {
    const { origin } = await server.running();
    const name = channel("amnesia");
    await publish(origin, name, { data: "one" });
    const client = await subscribe(origin, name, "nope");
    const head = (await client.next()).lastEventId;
    await client.close();

    const restarted = await server.restart();
    await publish(restarted.origin, name, { data: "after" });
    const resumed = await subscribe(restarted.origin, name, head);
    const reset = await resumed.next();
    await resumed.close();
    assert.equal(reset.type, STREAM_RESET_EVENT);
    assert.notEqual(reset.lastEventId.split("-")[0], head.split("-")[0], "a new epoch");
  });
});

describe("BrokerObject under workerd, storage on disk", () => {
  const server = workerd("disk");
  after(() => server.close(), { timeout: 10_000 });

  it("resumes a client after a restart with exactly what it missed, then live events", {
    timeout: TIMEOUT,
  }, async () => {
    const { origin } = await server.running();
    const name = channel("resume");
    const client = await subscribe(origin, name);
    await publish(origin, name, { data: "one" });
    await publish(origin, name, { data: "two", event: "note" });
    const seen = await client.until("two");
    await client.close();
    assert.deepEqual(seen.map((e) => e.data), ["one", "two"]);
    const lastEventId = seen[1]!.lastEventId;
    const [epoch] = lastEventId.split("-");
    await countReaches(origin, name, 0);

    await publish(origin, name, { data: "three" }); // missed
    await publish(origin, name, { data: { n: 4 }, event: "note" }); // missed
    const restarted = await server.restart();
    await publish(restarted.origin, name, { data: "five" }); // missed, after the restart

    const resumed = await subscribe(restarted.origin, name, lastEventId);
    const replayed = await resumed.until("five");
    await countReaches(restarted.origin, name, 1);
    await publish(restarted.origin, name, { data: "six" });
    const live = await resumed.until("six");
    await resumed.close();

    assert.deepEqual([...replayed, ...live].map((e) => [e.type, e.data, e.lastEventId]), [
      ["message", "three", `${epoch}-3`],
      ["note", '{"n":4}', `${epoch}-4`],
      ["message", "five", `${epoch}-5`],
      ["message", "six", `${epoch}-6`],
    ]);
  });

  it(
    "keeps the last `history` events of a channel across a restart: before them, those and the gap signal",
    {
      timeout: TIMEOUT,
    },
    async () => {
      const { origin } = await server.running();
      const name = channel("trim");
      const client = await subscribe(origin, name);
      await publish(origin, name, { data: "0" });
      const [first] = await client.until("0");
      await client.close();
      // The worker keeps 20 per channel: 25 more push "0" and the next four out.
      for (let i = 1; i <= 25; i++) await publish(origin, name, { data: String(i) });
      const restarted = await server.restart();

      // From before what is kept: what is kept, then the gap signal.
      const late = await subscribe(restarted.origin, name, first!.lastEventId);
      const kept: ParsedEvent[] = [];
      while (kept.at(-1)?.type !== STREAM_RESET_EVENT) kept.push(await late.next());
      await late.close();
      assert.deepEqual(
        kept.slice(0, -1).map((e) => e.data),
        Array.from({ length: 20 }, (_, i) => String(i + 6)),
      );

      const [epoch, seq] = first!.lastEventId.split("-");
      const within = `${epoch}-${Number(seq) + 5}`; // the event "5": "6" to "25" are kept
      const resumed = await subscribe(restarted.origin, name, within);
      const events = await resumed.until("25");
      await publish(restarted.origin, name, { data: "live" });
      events.push(...await resumed.until("live"));
      await resumed.close();
      // From within what is kept: exactly what it missed, no gap signal.
      assert.deepEqual(
        events.map((e) => e.data),
        [...Array.from({ length: 20 }, (_, i) => String(i + 6)), "live"],
      );
    },
  );
});

describe("routeToBroker under workerd, a hot channel over shards", () => {
  const server = workerd("memory");
  after(() => server.close(), { timeout: 10_000 });

  it("spreads subscribers over the shards by key, publishes to every shard, counts them all", {
    timeout: TIMEOUT,
  }, async () => {
    const { origin } = await server.running();
    const name = channel("hot");
    const url = (key: string): string => `${origin}/events?channel=${name}&shards=3&key=${key}`;
    const keys = Array.from({ length: 12 }, (_, i) => `user-${i}`);
    const responses = await Promise.all(keys.map((key) => fetch(url(key))));
    const readers = responses.map((response) =>
      track(response.body!.pipeThrough(new EventParserStream()).getReader())
    );
    const total = async (): Promise<number> => {
      const response = await fetch(`${origin}/count?channel=${name}&shards=3`);
      return (await response.json() as { clients: number }).clients;
    };
    await within(
      (async () => {
        while (await total() < 12) await delay(25);
      })(),
      "12 clients",
    );
    // Each copy is an object of its own, named `<channel>#<k>`, with its share of the clients.
    const shares = await Promise.all([0, 1, 2].map(async (k) => {
      const object = encodeURIComponent(`${name}#${k}`);
      const response = await fetch(`${origin}/count?channel=${name}&object=${object}`);
      return (await response.json() as { clients: number }).clients;
    }));
    assert.equal(shares.reduce((a, b) => a + b), 12);
    assert.ok(shares.filter((n) => n > 0).length >= 2, `spread: ${shares}`);
    assert.equal(await count(origin, name), 0, "the unsharded object has none");

    const post = await fetch(`${origin}/events?channel=${name}&shards=3`, {
      method: "POST",
      body: JSON.stringify({ data: "to all", id: "a1" }),
    });
    assert.equal(post.status, 204);
    const got = await Promise.all(
      readers.map(async (reader) => (await within(reader.read(), "a shard's event")).value!),
    );
    assert.deepEqual(got.map((e) => [e.data, e.lastEventId]), keys.map(() => ["to all", "a1"]));
    await Promise.all(readers.map((reader) => reader.cancel()));
    await within(
      (async () => {
        while (await total() > 0) await delay(25);
      })(),
      "no clients",
    );

    const refused = await fetch(`${origin}/events?channel=${name}&shards=3`);
    assert.equal(refused.status, 500);
    assert.match(await refused.text(), /needs a `shardKey`/);
  });
});

describe("routeToBroker and BrokerObject under workerd: what they refuse", () => {
  const server = workerd("memory");
  after(() => server.close(), { timeout: 10_000 });

  it("answers 405 to a method it does not route, and 400 to a publish that is not JSON", {
    timeout: TIMEOUT,
  }, async () => {
    const { origin } = await server.running();
    const put = await fetch(`${origin}/events?channel=x`, { method: "PUT", body: "x" });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get("allow"), "GET, POST");
    await put.body?.cancel();
    const bad = await fetch(`${origin}/events?channel=x`, { method: "POST", body: "not json" });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /^Cannot publish event: the body must be JSON/);
    const reserved = await fetch(`${origin}/events?channel=x`, {
      method: "POST",
      body: JSON.stringify({ data: 1, event: STREAM_RESET_EVENT }),
    });
    assert.equal(reserved.status, 400);
    await reserved.body?.cancel();
    const stream = await fetch(`${origin}/events?channel=x`);
    const events = readEvents(stream, 1); // cancels the body once it has the event
    await countReaches(origin, "x", 1);
    await publish(origin, "x", { data: "hi", id: 7 });
    assert.deepEqual((await within(events, "the event")).map((e) => [e.data, e.lastEventId]), [[
      "hi",
      "7",
    ]]);
  });
});
