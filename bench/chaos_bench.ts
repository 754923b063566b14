/**
 * The chaos suite at full size: 3 worker processes of this runtime (a broker with a Redis bridge
 * and history each, serving SSE on 127.0.0.1), 3,000 SSE clients over real sockets in two client
 * processes, one `redis-server` started here, and the four faults of issue 12: forged messages
 * and a second app on db 1, a subscription dropped at a tiny pubsub output buffer, `kill -9` and
 * an empty restart of Redis, a deploy's reconnect storm (then once more with 1,000 of the
 * library's `connect()` clients on a fourth worker, to show what its jitter adds). The harness is
 * the test suite's (tests/redis/fixtures/chaos_harness.ts); tests/redis/chaos_test.ts runs it with
 * 300 clients and asserts the bars, this reports the figures. Prints `RESULT` rows for `run.mjs`.
 *
 * Run alone: `deno run -A bench/chaos_bench.ts [--quick]` or `bun bench/chaos_bench.ts`.
 * @module
 */
import {
  Chaos,
  connectStorm,
  deployStorm,
  forgeries,
  killRedis,
  tinyBuffer,
} from "../tests/redis/fixtures/chaos_harness.ts";
import { quick, report } from "./_report.ts";

const CLIENTS = quick ? 600 : 3_000;
const WORKERS = 3;

function percent(part: number, whole: number): number {
  return whole === 0 ? 0 : Math.round((1_000 * part) / whole) / 10;
}

function counters(figures: { counters: Record<string, number> }): string {
  const entries = Object.entries(figures.counters).filter(([, n]) => n !== 0);
  return entries.length === 0
    ? "no counter moved"
    : entries.map(([k, n]) => `${k} ${n}`).join(", ");
}

const chaos = await Chaos.start({ workers: WORKERS, clients: CLIENTS, clientProcesses: 2 });
try {
  if (!(await chaos.ready(60_000))) {
    throw new Error("Cannot run chaos bench: clients did not connect");
  }
  const clients = `${CLIENTS.toLocaleString("en-US")} clients, ${WORKERS} workers`;

  const f = await forgeries(chaos);
  console.log(`forgeries: ${JSON.stringify(f)}`);
  report({
    bench: "chaos",
    case: `forged messages + a db 1 app, ${clients}: real events delivered`,
    unit: "% of clients",
    ours: percent(f.delivered, f.clients),
    note: `${f.forged} forged messages, ${f.events} real events + ${f.otherAppEvents} on db 1; ` +
      `streams ended ${f.ended}, publishes failed ${f.publishFailed}, leaked ${f.leaked}; ` +
      `${counters(f)}; unhandled ${f.unhandled}`,
  });

  const b = await tinyBuffer(chaos);
  console.log(`tiny output buffer: ${JSON.stringify(b)}`);
  report({
    bench: "chaos",
    case: `tiny pubsub output buffer, ${clients}: every event in order`,
    unit: "% of clients",
    ours: percent(b.delivered, b.clients),
    note: `${b.events} events + ${b.megabytes} MB bulk, one worker stopped ${b.stall} ms; ` +
      `subscriptions dropped ${b.dropped}, streams ended ${b.ended}, gap signals ${b.gapSignal}, ` +
      `publishes failed ${b.publishFailed}; ${counters(b)}; unhandled ${b.unhandled}`,
  });

  const k = await killRedis(chaos, 10);
  console.log(`kill -9: ${JSON.stringify(k)}`);
  report({
    bench: "chaos",
    case: `Redis kill -9 + empty restart, ${clients}: gap signal, then every new event`,
    unit: "% of clients",
    ours: percent(Math.min(k.gapFirst, k.delivered), k.clients),
    note: `streams ended ${k.ended} (most in one second ${k.endedPeakPerSecond}); ` +
      `publishes back ${k.recoveryMs} ms after the restart, gap signal at every client by ` +
      `${k.gapMs} ms; publishes failed ${k.publishFailed}; ${counters(k)}; unhandled ` +
      `${k.unhandled}, crashed ${k.crashed.length}`,
  });

  const s = await deployStorm(chaos, [1_000, 10_000]);
  console.log(`deploy storm: ${JSON.stringify(s)}`);
  report({
    bench: "chaos",
    case: `deploy, close({ retry: [1000, 10000] }), ${s.clients.toLocaleString("en-US")} clients` +
      `: peak reconnects per 100 ms (lower is better)`,
    unit: "requests",
    ours: s.peakPer100ms,
    note: `bound ${s.bound} (4 × an even spread + 10); ${s.arrivals} arrivals from ` +
      `${s.firstMs} to ${s.lastMs} ms; all back ${s.allBack}; unhandled ${s.unhandled}`,
  });

  const c = await connectStorm(chaos, CLIENTS / 3, [1_000, 10_000]);
  console.log(`deploy storm, connect(): ${JSON.stringify(c)}`);
  report({
    bench: "chaos",
    case: `deploy, close({ retry: [1000, 10000] }), ${
      c.clients.toLocaleString("en-US")
    } connect() clients: peak reconnects per 100 ms (lower is better)`,
    unit: "requests",
    ours: c.peakPer100ms,
    note: `a worker of their own; connect() jitters over 0 to 2 × retry; ${c.arrivals} arrivals ` +
      `from ${c.firstMs} to ${c.lastMs} ms; all back ${c.allBack}; unhandled ${c.unhandled}`,
  });
} finally {
  await chaos.close();
}
