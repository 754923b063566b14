import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Broker, BrokerLimitError, type BrokerOptions, formatMetrics } from "../mod.ts";
import { VirtualClock } from "./_clock.ts";

/** A broker without timers, so that a unit test leaves nothing behind. */
function quietBroker(options: BrokerOptions<Record<string, unknown>> = {}): Broker {
  return new Broker({ heartbeat: null, writeTimeout: null, ...options });
}

const request = (): Request => new Request("http://127.0.0.1/events");

/** How many of `calls` 503s answered each `Retry-After` value. */
async function retryAfters(broker: Broker, calls: number): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for (let n = 0; n < calls; n++) {
    const response = broker.response("a", request());
    assert.equal(response.status, 503);
    await response.body?.cancel();
    const header = response.headers.get("retry-after")!;
    assert.match(header, /^\d+$/, "a whole number of seconds");
    counts.set(Number(header), (counts.get(Number(header)) ?? 0) + 1);
  }
  return counts;
}

/** Runs `fn` with the package on a virtual clock (installed before the broker is made). */
async function onClock(fn: (clock: VirtualClock) => Promise<void>): Promise<void> {
  const clock = new VirtualClock().install();
  try {
    await fn(clock);
  } finally {
    clock.uninstall();
  }
}

/** Subscribes `count` clients; returns how many were admitted, and fails on any other error. */
function admit(broker: Broker, count: number): number {
  let admitted = 0;
  for (let n = 0; n < count; n++) {
    try {
      broker.subscribe("a");
      admitted++;
    } catch (error) {
      if (!(error instanceof BrokerLimitError) || error.reason !== "admission") throw error;
    }
  }
  return admitted;
}

describe("Retry-After is jittered", () => {
  it("a 503 answers a whole number of seconds from retryAfter to twice it, each about as often", async () => {
    const broker = quietBroker({ retryAfter: 5 });
    await broker.close(); // closed: every response() is a 503
    const counts = await retryAfters(broker, 3_000);
    assert.deepEqual([...counts.keys()].sort((a, b) => a - b), [5, 6, 7, 8, 9, 10]);
    // 500 expected for each of six values: below 350 or above 650 has a chance under 1e-12.
    for (const [value, count] of counts) {
      assert.ok(count > 350 && count < 650, `${value} s answered ${count} times of 3000`);
    }
  });

  it("with retryAfter 1 the answers are 1 and 2 s, both seen", async () => {
    const broker = quietBroker({ retryAfter: 1 });
    await broker.close();
    const counts = await retryAfters(broker, 200);
    assert.deepEqual([...counts.keys()].sort(), [1, 2]);
  });

  it("a 503 for maxClients is jittered the same way", async () => {
    const broker = quietBroker({ maxClients: 1, retryAfter: 2 });
    const first = broker.subscribe("a");
    const counts = await retryAfters(broker, 300);
    assert.deepEqual([...counts.keys()].sort(), [2, 3, 4]);
    assert.equal(broker.metrics().connectionsRejected, 300);
    first.close();
    await broker.close();
  });
});

describe("Broker admissionRate", () => {
  it("admits a burst, then one client per 1/rate s, exactly, on the clock", async () => {
    await onClock(async (clock) => {
      const broker = quietBroker({ admissionRate: 10 });
      assert.equal(admit(broker, 12), 10, "the burst is one second's worth");
      assert.equal(broker.metrics().connectionsRejected, 2);
      await clock.advance(99);
      assert.equal(admit(broker, 1), 0, "0.99 of a client has accrued");
      await clock.advance(1);
      assert.equal(admit(broker, 2), 1, "100 ms is one client at 10/s");
      await clock.advance(250);
      assert.equal(admit(broker, 3), 2, "250 ms: two and a half");
      await clock.advance(50);
      assert.equal(admit(broker, 2), 1, "the half carried over");
      await clock.advance(60_000);
      assert.equal(admit(broker, 20), 10, "a quiet minute refills the burst, no more");
      assert.equal(broker.clientCount(), 24);
      assert.equal(broker.metrics().connectionsRejected, 2 + 1 + 1 + 1 + 1 + 10);
      assert.equal(clock.pending, 0, "a token bucket needs no timer");
      await broker.close();
    });
  });

  it("admissionBurst sizes the bucket, and a fractional rate accrues exactly", async () => {
    await onClock(async (clock) => {
      const broker = quietBroker({ admissionRate: 0.5, admissionBurst: 3 });
      assert.equal(admit(broker, 5), 3);
      await clock.advance(1_999);
      assert.equal(admit(broker, 1), 0);
      await clock.advance(1);
      assert.equal(admit(broker, 2), 1, "one client per 2 s");
      await broker.close();
    });
  });

  it("subscribe() throws BrokerLimitError with reason admission; response() answers 503 with a jittered Retry-After", async () => {
    await onClock(async (clock) => {
      const broker = quietBroker({ admissionRate: 2, retryAfter: 3 });
      broker.subscribe("a");
      broker.subscribe("b");
      assert.throws(() => broker.subscribe("c"), (error: unknown) => {
        assert.ok(error instanceof BrokerLimitError);
        assert.ok(error instanceof RangeError);
        assert.equal(error.reason, "admission");
        assert.equal(error.limit, 2);
        assert.equal(error.channel, undefined);
        assert.equal(
          error.message,
          "Cannot subscribe: the broker admits at most 2 new clients per second (burst 2)",
        );
        return true;
      });
      assert.equal(broker.clientCount("c"), 0, "a refused client is on no channel");
      const refused = broker.response("c", request());
      assert.equal(refused.status, 503);
      assert.match(refused.headers.get("retry-after")!, /^[3-6]$/);
      assert.match(await refused.text(), /admits at most 2 new clients per second/);
      assert.equal(broker.metrics().connectionsRejected, 2);
      assert.match(formatMetrics(broker.metrics()), /^flume_connections_rejected_total 2$/m);
      await clock.advance(500);
      const admitted = broker.response("c", request());
      assert.equal(admitted.status, 200);
      assert.equal(broker.clientCount("c"), 1);
      await admitted.body?.cancel();
      await broker.close();
    });
  });

  it("a client refused by maxClients takes no admission token", async () => {
    await onClock(async () => {
      const broker = quietBroker({ admissionRate: 2, maxClients: 1 });
      const first = broker.subscribe("a");
      assert.throws(() => broker.subscribe("a"), { reason: "clients" });
      first.close();
      broker.subscribe("a"); // the second token is still there
      assert.throws(() => broker.subscribe("b"), { reason: "clients" });
      assert.equal(broker.metrics().connectionsRejected, 2);
      await broker.close();
    });
  });

  it("no admissionRate: no limit", () => {
    const broker = quietBroker();
    assert.equal(admit(broker, 1_000), 1_000);
    return broker.close();
  });

  for (
    const [name, options, message, type] of [
      ["admissionRate 0", { admissionRate: 0 }, /`admissionRate` must be a positive/, RangeError],
      ["admissionRate -1", { admissionRate: -1 }, /`admissionRate`/, RangeError],
      ["admissionRate NaN", { admissionRate: NaN }, /`admissionRate`/, RangeError],
      ["admissionRate Infinity", { admissionRate: Infinity }, /`admissionRate`/, RangeError],
      [
        "admissionBurst 0",
        { admissionRate: 5, admissionBurst: 0 },
        /`admissionBurst` must be a positive integer/,
        RangeError,
      ],
      [
        "admissionBurst 1.5",
        { admissionRate: 5, admissionBurst: 1.5 },
        /`admissionBurst`/,
        RangeError,
      ],
      [
        "admissionBurst without admissionRate",
        { admissionBurst: 5 },
        /^Cannot create Broker: `admissionBurst` needs `admissionRate`$/,
        TypeError,
      ],
    ] as const
  ) {
    it(`refuses ${name} at construction`, () => {
      assert.throws(() => new Broker(options), (error: unknown) => {
        assert.ok(error instanceof type);
        assert.match((error as Error).message, message);
        return true;
      });
    });
  }
});
