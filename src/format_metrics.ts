/**
 * Counters an operator can scrape; every one but the gauges `clients`, `historyBytes` and
 * `replaysInProgress` only grows.
 */
export interface BrokerMetrics {
  /** Clients connected now. */
  clients: number;
  /** Clients ever subscribed. */
  connectionsTotal: number;
  /** Clients turned away by `maxClients`, `maxClientsPerChannel` or `admissionRate`. */
  connectionsRejected: number;
  /** Events published (and broadcast) through this broker, from every worker. */
  eventsPublished: number;
  /** Frames queued to clients (one per client per event). */
  eventsDelivered: number;
  /** Bytes queued to clients. */
  bytesQueued: number;
  /** Clients ended by the `"disconnect"` overflow policy or frames dropped by `"drop-oldest"`. */
  slowConsumers: number;
  /** Reconnects with a `Last-Event-ID` fully replayed from history. */
  replayHits: number;
  /** Reconnects with a `Last-Event-ID` that got the gap signal. */
  replayMisses: number;
  /**
   * Reconnects whose replay joined an identical one in progress (same channels, same
   * `Last-Event-ID`): no read of their own, the same encoded bytes.
   */
  replaysShared: number;
  /** Replays being fetched or sent now, a shared one once (a gauge). */
  replaysInProgress: number;
  /**
   * Gap signals sent in-band, one per client: the bridge lost events for good while the client
   * was connected, and its open stream was told so (it stays open).
   */
  gapSignals: number;
  /**
   * Events the bridge missed live and fetched from its store, delivered in order (no client saw
   * a hole). Stays 0 with a bridge that does not report it.
   */
  eventsHealed: number;
  /** Holes in the bridge's live feed healed that way. Stays 0 with a bridge that does not report it. */
  holesHealed: number;
  /**
   * Losses the bridge could not heal (its store lost the events): each sent the gap signal to the
   * affected clients (`gapSignals`). Stays 0 with a bridge that does not report it.
   */
  bridgeLosses: number;
  /**
   * Messages the bridge skipped: not written by a bridge, or claims its store contradicts
   * (forged, or another app's). Stays 0 with a bridge that does not report it.
   */
  messagesRefused: number;
  /**
   * Channels whose history was freed to stay within `historyBytes`, least recently used first.
   * Stays 0 with a bridge that does not report it.
   */
  historyEvictions: number;
  /** Channels whose history was freed after `historyTtl` untouched. Stays 0 with a bridge that does not report it. */
  historyExpirations: number;
  /** Estimated bytes of history held now (a gauge). Stays 0 with a bridge that does not report it. */
  historyBytes: number;
}

/** A broker's counters, all at zero. */
export function emptyMetrics(): BrokerMetrics {
  return {
    clients: 0,
    connectionsTotal: 0,
    connectionsRejected: 0,
    eventsPublished: 0,
    eventsDelivered: 0,
    bytesQueued: 0,
    slowConsumers: 0,
    replayHits: 0,
    replayMisses: 0,
    replaysShared: 0,
    replaysInProgress: 0,
    gapSignals: 0,
    eventsHealed: 0,
    holesHealed: 0,
    bridgeLosses: 0,
    messagesRefused: 0,
    historyEvictions: 0,
    historyExpirations: 0,
    historyBytes: 0,
  };
}

const ROWS: readonly [keyof BrokerMetrics, string, "gauge" | "counter", string][] = [
  ["clients", "clients", "gauge", "Clients connected now"],
  ["connectionsTotal", "connections_total", "counter", "Clients ever subscribed"],
  [
    "connectionsRejected",
    "connections_rejected_total",
    "counter",
    "Clients turned away by a limit",
  ],
  ["eventsPublished", "events_published_total", "counter", "Events published"],
  ["eventsDelivered", "events_delivered_total", "counter", "Frames queued to clients"],
  ["bytesQueued", "bytes_queued_total", "counter", "Bytes queued to clients"],
  [
    "slowConsumers",
    "slow_consumers_total",
    "counter",
    "Clients dropped or frames discarded for overflow",
  ],
  ["replayHits", "replay_hits_total", "counter", "Reconnects fully replayed"],
  ["replayMisses", "replay_misses_total", "counter", "Reconnects that got the gap signal"],
  ["replaysShared", "replays_shared_total", "counter", "Replays that joined an identical read"],
  ["replaysInProgress", "replays_in_progress", "gauge", "Replays being fetched or sent"],
  ["gapSignals", "gap_signals_total", "counter", "Gap signals sent on open streams"],
  ["eventsHealed", "bridge_events_healed_total", "counter", "Missed events the bridge fetched"],
  ["holesHealed", "bridge_holes_healed_total", "counter", "Holes in the bridge's feed healed"],
  ["bridgeLosses", "bridge_losses_total", "counter", "Losses the bridge could not heal"],
  ["messagesRefused", "bridge_messages_refused_total", "counter", "Bridge messages skipped"],
  [
    "historyEvictions",
    "history_evictions_total",
    "counter",
    "Channels whose history was freed for the byte budget",
  ],
  [
    "historyExpirations",
    "history_expirations_total",
    "counter",
    "Channels whose history was freed for being untouched",
  ],
  ["historyBytes", "history_bytes", "gauge", "Estimated bytes of history held"],
];

/**
 * Renders broker counters in the Prometheus text exposition format.
 * @param metrics What `broker.metrics()` returned.
 * @param prefix Prepended to every metric name.
 * @returns The text, ready to serve as `text/plain; version=0.0.4`.
 * @example Serve /metrics
 * ```ts
 * import { Broker, formatMetrics } from "@flume/sse";
 * import assert from "node:assert/strict";
 *
 * const broker = new Broker();
 * broker.subscribe("news");
 * const text = formatMetrics(broker.metrics());
 * assert.match(text, /^flume_clients 1$/m);
 * const response = new Response(text, { headers: { "content-type": "text/plain; version=0.0.4" } });
 * assert.equal(response.status, 200);
 * await broker.close();
 * ```
 */
export function formatMetrics(metrics: BrokerMetrics, prefix = "flume_"): string {
  let out = "";
  for (const [key, name, type, help] of ROWS) {
    const metric = prefix + name;
    out += `# HELP ${metric} ${help}\n# TYPE ${metric} ${type}\n${metric} ${metrics[key]}\n`;
  }
  return out;
}
