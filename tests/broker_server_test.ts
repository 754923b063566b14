import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect as connectTcp, type Socket } from "node:net";
import {
  Broker,
  type BrokerOptions,
  EventParserStream,
  type OverflowPolicy,
  type ParsedEvent,
  STREAM_RESET_EVENT,
} from "../mod.ts";
import { delay, runtime, serve, type TestServer, waitFor } from "./_helpers.ts";
import notifications from "../examples/notifications.ts";

/** `GET /events?ch=a&ch=b` subscribes to channels a and b. */
function brokerHandler(broker: Broker): (request: Request) => Response {
  return (request) => {
    const channels = new URL(request.url).searchParams.getAll("ch");
    return broker.response(channels.length > 0 ? channels : "main", request);
  };
}

async function withBroker(
  options: BrokerOptions<Record<string, unknown>>,
  fn: (broker: Broker, server: TestServer) => Promise<void>,
): Promise<void> {
  const broker = new Broker(options);
  const server = await serve(brokerHandler(broker));
  try {
    await fn(broker, server);
  } finally {
    await broker.close();
    await server.close();
  }
}

/** A fetch client reading events in the background. */
interface Client {
  response: Response;
  events: ParsedEvent[];
  /** Settles when the body ends (or the client is aborted). */
  done: Promise<void>;
  abort(): void;
}

async function open(
  url: string,
  headers: HeadersInit = {},
  onRetry?: (ms: number) => void,
): Promise<Client> {
  const controller = new AbortController();
  const response = await fetch(url, { headers, signal: controller.signal });
  const events: ParsedEvent[] = [];
  const done = (async () => {
    if (!response.body) return;
    const parsed = response.body.pipeThrough(new EventParserStream(onRetry ? { onRetry } : {}));
    try {
      for await (const event of parsed as unknown as AsyncIterable<ParsedEvent>) {
        events.push(event);
      }
    } catch (error) {
      if (!controller.signal.aborted) throw error;
    }
  })();
  return { response, events, done, abort: () => controller.abort() };
}

/**
 * A bare HTTP/1.1 client on a TCP socket: no connection pool and no per-host limit (Bun's
 * fetch runs at most 256 requests at once), little memory, and it can stop reading at will.
 * It collects the `data:` lines of the de-chunked body.
 */
class RawClient {
  readonly data: string[] = [];
  bytes = 0;
  status = 0;
  readonly socket: Socket;
  readonly closed: Promise<void>;
  readonly #decoder = new TextDecoder();
  #head = "";
  #inBody = false;
  #pending = new Uint8Array(0);
  #chunkLeft = -1; // body bytes left in the current chunk; -1: a size line comes next
  #text = "";

  constructor(port: number, path: string) {
    this.socket = connectTcp({ port, host: "127.0.0.1" });
    this.socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`,
    );
    this.socket.on("data", (chunk: Uint8Array) => this.#feed(chunk));
    this.socket.on("error", () => {});
    this.closed = new Promise((resolve) => this.socket.once("close", () => resolve()));
  }

  close(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }

  #feed(chunk: Uint8Array): void {
    if (!this.#inBody) {
      this.#head += new TextDecoder("latin1").decode(chunk);
      const end = this.#head.indexOf("\r\n\r\n");
      if (end < 0) return;
      this.status = Number(this.#head.slice(9, 12));
      assert.match(this.#head, /transfer-encoding: chunked/i);
      this.#inBody = true;
      chunk = new TextEncoder().encode(this.#head.slice(end + 4)); // ASCII so far
    }
    let buffer = this.#pending.length > 0 ? join(this.#pending, chunk) : chunk;
    for (;;) {
      if (this.#chunkLeft < 0) {
        const lf = buffer.indexOf(10);
        if (lf < 0) break;
        this.#chunkLeft = parseInt(new TextDecoder().decode(buffer.subarray(0, lf)), 16);
        buffer = buffer.subarray(lf + 1);
        if (this.#chunkLeft === 0) return void this.socket.end();
      } else if (this.#chunkLeft > 0) {
        const take = Math.min(this.#chunkLeft, buffer.length);
        if (take === 0) break;
        this.#body(buffer.subarray(0, take));
        this.#chunkLeft -= take;
        buffer = buffer.subarray(take);
      } else {
        if (buffer.length < 2) break;
        buffer = buffer.subarray(2); // the CRLF after a chunk
        this.#chunkLeft = -1;
      }
    }
    this.#pending = buffer.slice();
  }

  #body(bytes: Uint8Array): void {
    this.bytes += bytes.length;
    this.#text += this.#decoder.decode(bytes, { stream: true });
    const lines = this.#text.split("\n");
    this.#text = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith("data: ")) {
        this.data.push(line.length > 64 ? line.slice(6, 64) : line.slice(6));
      }
    }
  }
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

const range = (length: number, map: (n: number) => string): string[] =>
  Array.from({ length }, (_, n) => map(n));

const texts = (events: ParsedEvent[]): string[] => events.map((event) => event.data);

describe(`Broker on a real ${runtime} server`, () => {
  it("fans out every event, in order, to 100 fetch clients", { timeout: 30_000 }, async () => {
    await withBroker({}, async (broker, server) => {
      const clients = await Promise.all(
        range(100, () => `${server.origin}/events`).map((url) => open(url)),
      );
      for (const client of clients) {
        assert.equal(client.response.status, 200);
        assert.equal(
          client.response.headers.get("content-type"),
          "text/event-stream; charset=utf-8",
        );
      }
      await waitFor(() => broker.clientCount("main") === 100, 5_000, "100 clients");
      for (let n = 0; n < 50; n++) {
        await broker.publish("main", { n }, { event: "tick" });
        if (n % 10 === 9) await delay(1);
      }
      const expected = range(50, (n) => `{"n":${n}}`);
      await waitFor(
        () => clients.every((client) => client.events.length === 50),
        10_000,
        "every event",
      );
      for (const client of clients) {
        assert.deepEqual(texts(client.events), expected);
        assert.ok(client.events.every((event) => event.type === "tick"));
        client.abort();
      }
      await Promise.all(clients.map((client) => client.done));
      await waitFor(() => broker.clientCount() === 0, 5_000, "every client to leave");
    });
  });

  it("serves several channels on one connection and only those", async () => {
    await withBroker({}, async (broker, server) => {
      const both = await open(`${server.origin}/events?ch=a&ch=b`);
      const onlyC = await open(`${server.origin}/events?ch=c`);
      await waitFor(() => broker.clientCount() === 2, 2_000, "two clients");
      assert.equal(broker.clientCount("a"), 1);
      assert.equal(broker.clientCount("b"), 1);
      await broker.publish("a", "a1");
      await broker.publish("c", "c1");
      await broker.publish("b", "b1");
      await broker.broadcast("all");
      await waitFor(() => both.events.length === 3 && onlyC.events.length === 2, 2_000, "events");
      assert.deepEqual(texts(both.events), ["a1", "b1", "all"]);
      assert.deepEqual(texts(onlyC.events), ["c1", "all"]);
      both.abort();
      onlyC.abort();
      await waitFor(() => broker.clientCount() === 0, 2_000, "the clients to leave");
      assert.equal(broker.clientCount("a"), 0);
    });
  });

  it(
    "resumes clients that keep reconnecting with Last-Event-ID while events are published every ms: no gap, no duplicate",
    {
      timeout: 60_000,
    },
    async () => {
      await withBroker({ history: 5_000 }, async (broker, server) => {
        const total = 400;
        const url = `${server.origin}/events?ch=a&ch=b`;
        const firsts = await Promise.all(range(8, () => url).map((u) => open(u)));
        await waitFor(() => broker.clientCount() === 8, 5_000, "8 clients");
        let published = 0;
        const expected: string[] = [];
        const producing = (async () => {
          for (; published < total; published++) {
            // Channel c is not theirs: it must never show up.
            const channel = published % 5 === 4 ? "c" : published % 2 === 0 ? "a" : "b";
            const text = `${channel}${published}`;
            if (channel !== "c") expected.push(text);
            await broker.publish(channel, text);
            await delay(1);
          }
        })();
        const runs = firsts.map(async (first) => {
          const seen: string[] = [];
          let client = first;
          let lastEventId = "";
          let connections = 1;
          let lastTries = 0;
          for (;;) {
            const finished = published >= total;
            if (finished) {
              // A stream the server ended meanwhile (a client that fell behind with both cores
              // busy is cut off by design) resumes like any other: reconnect and wait again.
              const complete = await waitFor(
                () => seen.length + client.events.length >= expected.length,
                5_000,
                "the last events",
              ).then(() => true, (error) => {
                if (++lastTries >= 6) throw error;
                return false;
              });
              if (!complete) {
                client.abort();
                await client.done;
                for (const event of client.events) {
                  seen.push(event.data);
                  lastEventId = event.lastEventId;
                }
                client = await open(url, lastEventId ? { "Last-Event-ID": lastEventId } : {});
                connections++;
                continue;
              }
            } else {
              await delay(5 + Math.floor(Math.random() * 30));
              // Without a position to resume from, a reconnect would start live: keep the first
              // connection until it has one.
              if (lastEventId === "") {
                await waitFor(() => client.events.length > 0, 20_000, "a first event");
              }
            }
            client.abort();
            await client.done;
            for (const event of client.events) {
              seen.push(event.data);
              lastEventId = event.lastEventId;
            }
            if (finished) return { seen, connections };
            client = await open(url, lastEventId ? { "Last-Event-ID": lastEventId } : {});
            assert.equal(client.response.status, 200);
            connections++;
          }
        });
        const results = await Promise.all(runs);
        await producing;
        for (const { seen, connections } of results) {
          assert.ok(connections >= 3, `reconnected ${connections} times`);
          assert.deepEqual(seen, expected);
        }
        assert.equal(broker.metrics().replayMisses, 0);
        assert.ok(broker.metrics().replayHits >= 16);
      });
    },
  );

  for (const overflow of ["disconnect", "drop-oldest"] as const) {
    it(
      `delivers a 2 MB replay whole, then the live event published right after response(), under "${overflow}"`,
      {
        timeout: 30_000,
      },
      async () => {
        const broker = new Broker({ history: 100, overflow });
        let publishAfterResponse = false;
        const server = await serve((request) => {
          const response = broker.response("main", request);
          // The live event lands while the replay is being fetched.
          if (publishAfterResponse) void broker.publish("main", "live");
          return response;
        });
        try {
          const first = await open(`${server.origin}/`);
          await broker.publish("main", "zero");
          await waitFor(() => first.events.length === 1, 5_000, "the first event");
          const resumeFrom = first.events[0]!.lastEventId;
          first.abort();
          await first.done;
          await waitFor(() => broker.clientCount("main") === 0, 5_000, "the first client to leave");
          const big = "x".repeat(23_000);
          for (let n = 0; n < 90; n++) await broker.publish("main", `${n}:${big}`);
          publishAfterResponse = true;
          const client = await open(`${server.origin}/`, { "last-event-id": resumeFrom });
          await waitFor(() => client.events.length === 91, 20_000, "91 events");
          const data = client.events.map((event) => event.data.split(":")[0]);
          assert.deepEqual(data, [...Array.from({ length: 90 }, (_, n) => String(n)), "live"]);
          assert.equal(broker.clientCount("main"), 1, "the client is still connected");
          assert.equal(broker.metrics().slowConsumers, 0);
          assert.equal(broker.metrics().replayHits, 1);
          client.abort();
          await client.done;
        } finally {
          await broker.close();
          await server.close();
        }
      },
    );
  }

  it("answers a forged Last-Event-ID with 200 and the gap signal", async () => {
    await withBroker({ history: 10 }, async (broker, server) => {
      await broker.publish("a", "old");
      await broker.publish("other", "not yours", { id: "other-1" });
      for (const forged of ["other-1", "../../x", "999999999999999999999", "\u00ff".repeat(3000)]) {
        const client = await open(`${server.origin}/events?ch=a`, { "Last-Event-ID": forged });
        assert.equal(client.response.status, 200);
        await waitFor(() => client.events.length === 1, 2_000, "the gap signal");
        assert.equal(client.events[0]!.type, STREAM_RESET_EVENT);
        assert.deepEqual(JSON.parse(client.events[0]!.data).channels, ["a"]);
        await broker.publish("a", "new");
        await waitFor(() => client.events.length === 2, 2_000, "the next event");
        assert.deepEqual(texts(client.events).slice(1), ["new"]);
        client.abort();
        await client.done;
      }
    });
  });

  it("answers 503 with Retry-After beyond maxClients, and accepts again once a client leaves", async () => {
    await withBroker({ maxClients: 3, retryAfter: 2 }, async (broker, server) => {
      const clients = await Promise.all(
        range(3, () => `${server.origin}/events`).map((u) => open(u)),
      );
      await waitFor(() => broker.clientCount() === 3, 2_000, "3 clients");
      const refused = await fetch(`${server.origin}/events`);
      assert.equal(refused.status, 503);
      assert.match(refused.headers.get("retry-after")!, /^[2-4]$/); // 2 to 4 s, jittered
      assert.match(await refused.text(), /maximum of 3 clients/);
      clients[0]!.abort();
      await waitFor(() => broker.clientCount() === 2, 2_000, "a client to leave");
      const again = await open(`${server.origin}/events`);
      assert.equal(again.response.status, 200);
      assert.equal(broker.metrics().connectionsRejected, 1);
      for (const client of [...clients, again]) client.abort();
      await waitFor(() => broker.clientCount() === 0, 2_000, "the clients to leave");
    });
  });

  it("close() ends 50 live streams within 100 ms, after a final event and a spread-out retry", {
    timeout: 20_000,
  }, async () => {
    const broker = new Broker();
    const aborted: string[] = [];
    const server = await serve((request) => {
      const stream = broker.subscribe("main");
      // What a producer tied to this client would watch.
      stream.signal.addEventListener("abort", () => aborted.push(stream.signal.reason.reason), {
        once: true,
      });
      return stream.response({ signal: request.signal });
    });
    try {
      const retries: number[] = [];
      const clients = await Promise.all(
        range(50, () => `${server.origin}/`).map((url) => open(url, {}, (ms) => retries.push(ms))),
      );
      await waitFor(() => broker.clientCount() === 50, 5_000, "50 clients");
      await broker.publish("main", "before");
      const ended: number[] = [];
      const started = performance.now();
      const closing = broker.close({
        event: { event: "bye", data: "restarting" },
        retry: [1_000, 20_000],
      });
      await Promise.all(
        clients.map((client) => client.done.then(() => ended.push(performance.now()))),
      );
      await closing;
      const slowest = Math.max(...ended) - started;
      assert.ok(slowest < 100, `every stream ended within ${Math.round(slowest)} ms`);
      assert.equal(aborted.length, 50);
      assert.ok(aborted.every((reason) => reason === "closed"));
      for (const client of clients) {
        assert.deepEqual(client.events.map((event) => [event.type, event.data]), [
          ["message", "before"],
          ["bye", "restarting"],
        ]);
      }
      assert.equal(retries.length, 50);
      assert.ok(retries.every((ms) => ms >= 1_000 && ms <= 20_000), `retries in range: ${retries}`);
      assert.ok(new Set(retries).size > 10, `retries differ: ${retries}`);
      await assert.rejects(broker.publish("main", "late"), { name: "BrokerClosedError" });
    } finally {
      await broker.close();
      await server.close();
    }
  });

  for (const overflow of ["disconnect", "drop-oldest"] as OverflowPolicy[]) {
    it(
      `a client that stops reading among 999 that read gets "${overflow}"; the others get everything`,
      {
        timeout: 60_000,
      },
      async () => {
        await withBroker({ bufferSize: 16, overflow }, async (broker, server) => {
          // 999 readers of small news, 5 readers of news and 100 KB bulk events, and one client
          // on both that stops reading at once: the kernel's socket buffers fill up first (a few
          // MB), then its own bounded buffer.
          const readers: RawClient[] = [];
          const bulkReaders = range(5, () => "/events?ch=news&ch=bulk").map((path) =>
            new RawClient(server.port, path)
          );
          const stalled = new RawClient(server.port, "/events?ch=news&ch=bulk");
          stalled.socket.pause();
          try {
            // The 999 readers 100 at a time, each batch connected before the next: 1,000 connects
            // at once can overflow the listen backlog on a busy machine, and a dropped SYN waits
            // seconds for its retry.
            for (let batch = 0; batch < 10; batch++) {
              for (const path of range(batch < 9 ? 100 : 99, () => "/events?ch=news")) {
                readers.push(new RawClient(server.port, path));
              }
              const want = readers.length;
              await waitFor(() => broker.clientCount() >= want, 30_000, `${want} readers`);
            }
            await waitFor(() => broker.clientCount() === 1_005, 30_000, "1005 clients");
            const big = "x".repeat(100_000);
            let bulk = 0;
            let news = 0;
            const handled = (): boolean =>
              overflow === "disconnect"
                ? broker.clientCount("bulk") === 5
                : broker.metrics().slowConsumers >= 20;
            for (; bulk < 400 && !handled(); bulk++) {
              const started = performance.now();
              await broker.publish("bulk", `${bulk} ${big}`);
              if (bulk % 4 === 0) await broker.publish("news", `news ${news++}`);
              assert.ok(
                performance.now() - started < 1_000,
                "a publish does not wait for a client",
              );
              await delay(2);
            }
            assert.ok(handled(), `the stalled client was handled after ${bulk} events of 100 KB`);
            await broker.publish("bulk", "bulk-end");
            await broker.publish("news", "news end");
            const newsExpected = [...range(news, (n) => `news ${n}`), "news end"];
            await waitFor(
              () =>
                [...readers, ...bulkReaders].every((reader) => reader.data.at(-1) === "news end"),
              20_000,
              "every reader to get everything",
            );
            for (const reader of readers) assert.deepEqual(reader.data, newsExpected);
            for (const reader of bulkReaders) {
              const got = reader.data.filter((line) => !line.startsWith("news "));
              assert.deepEqual(got.map((line) => line.split(" ")[0]), [
                ...range(bulk, String),
                "bulk-end",
              ]);
            }
            assert.equal(broker.clientCount("news"), overflow === "disconnect" ? 1_004 : 1_005);
            // Now it reads again: what it gets is bounded and in order.
            stalled.socket.resume();
            if (overflow === "disconnect") {
              assert.equal(broker.metrics().slowConsumers, 1);
              await stalled.closed; // the server ended its body
            } else {
              await waitFor(() => stalled.data.at(-1) === "news end", 10_000, "its newest events");
            }
            const bulkSeen = stalled.data.filter((line) => /^\d+ x/.test(line)).map((line) =>
              Number(line.split(" ")[0])
            );
            assert.ok(bulkSeen.length < bulk, `it got ${bulkSeen.length} of ${bulk} bulk events`);
            for (let i = 1; i < bulkSeen.length; i++) assert.ok(bulkSeen[i]! > bulkSeen[i - 1]!);
            if (overflow === "disconnect") {
              // What it got is a prefix: nothing after the disconnect, no hole before it.
              assert.deepEqual(bulkSeen, Array.from({ length: bulkSeen.length }, (_, n) => n));
            } else {
              // It lost a stretch in the middle and got the newest ones.
              assert.ok(
                bulkSeen.at(-1) === bulk - 1,
                `the newest bulk event arrived: ${bulkSeen.at(-1)}`,
              );
              assert.ok(
                bulkSeen.some((n, i) => i > 0 && n > bulkSeen[i - 1]! + 1),
                "frames were dropped",
              );
            }
          } finally {
            await Promise.all(
              [...readers, ...bulkReaders, stalled].map((client) => client.close()),
            );
          }
        });
      },
    );
  }
});

describe(`examples/notifications.ts on a real ${runtime} server`, () => {
  const auth = (token: string): HeadersInit => ({ Authorization: `Bearer ${token}` });

  it("turns away a missing or bad token with 401 and a non-notifier with 403, before any stream", async () => {
    const server = await serve(notifications.fetch);
    try {
      const cases: [string, RequestInit, number, RegExp | null][] = [
        ["/events", {}, 401, /^Bearer realm="notifications"$/],
        ["/events", { headers: auth("forged") }, 401, /error="invalid_token"/],
        ["/events?token=forged", {}, 401, /error="invalid_token"/],
        ["/events", { headers: { Authorization: "Basic YW5hOng=" } }, 401, /^Bearer/],
        ["/notify", { method: "POST", body: "{}" }, 401, /^Bearer/],
        [
          "/notify",
          { method: "POST", body: "{}", headers: auth("ana-token") },
          403,
          /insufficient_scope/,
        ],
      ];
      for (const [path, init, status, challenge] of cases) {
        const response = await fetch(server.origin + path, init);
        assert.equal(response.status, status, `${path} ${JSON.stringify(init)}`);
        assert.match(response.headers.get("www-authenticate") ?? "", challenge!);
        assert.notEqual(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
        await response.body?.cancel();
      }
    } finally {
      await server.close();
    }
  });

  it("delivers a notification to every stream of its recipient and to nobody else", {
    timeout: 20_000,
  }, async () => {
    const server = await serve(notifications.fetch);
    const streams: Client[] = [];
    try {
      const ana = await open(`${server.origin}/events`, auth("ana-token"));
      // The way an EventSource page connects.
      const anaTab = await open(`${server.origin}/events?token=ana-token`);
      const bob = await open(`${server.origin}/events`, auth("bob-token"));
      streams.push(ana, anaTab, bob);
      for (const client of streams) assert.equal(client.response.status, 200);
      const post = (body: unknown): Promise<Response> =>
        fetch(`${server.origin}/notify`, {
          method: "POST",
          headers: { ...auth("ops-token"), "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
      const first = await post({ recipient: "ana", title: "For ana", body: "one" });
      assert.equal(first.status, 202);
      assert.equal((await first.json()).openStreams, 2);
      assert.equal((await post({ recipient: "bob", title: "For bob" })).status, 202);
      await (await post({ recipient: "ana", title: "For ana again" })).body?.cancel();
      await waitFor(
        () => ana.events.length === 2 && anaTab.events.length === 2 && bob.events.length === 1,
        5_000,
        "the notifications",
      );
      for (const client of [ana, anaTab]) {
        assert.deepEqual(client.events.map((event) => [event.type, JSON.parse(event.data).title]), [
          ["notification", "For ana"],
          ["notification", "For ana again"],
        ]);
        assert.equal(JSON.parse(client.events[0]!.data).from, "ops");
      }
      assert.deepEqual(bob.events.map((event) => JSON.parse(event.data).title), ["For bob"]);
      assert.equal((await post({ recipient: "eve", title: "x" })).status, 404);
      assert.equal((await post({ recipient: "ana" })).status, 400);
      await delay(20);
      assert.equal(bob.events.length, 1);
    } finally {
      for (const client of streams) client.abort();
      await Promise.all(streams.map((client) => client.done));
      await server.close();
    }
  });
});
