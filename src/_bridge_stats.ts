/**
 * What a bridge reports for `broker.metrics()`, each through a private symbol method, so that the
 * core reads the figures of any bridge (the Redis one included) without loading it: how its
 * history bounds work ({@linkcode historyStatsOf}) and how it kept its feed whole
 * ({@linkcode bridgeStatsOf}). A bridge without a method reports nothing, and the figures stay 0.
 * @module
 */
import type { Bridge } from "./bridge.ts";

/** How a bridge kept its feed whole: counters since it was created. */
export interface BridgeStats {
  /** Events that did not arrive live and were fetched from the store and delivered in order. */
  eventsHealed: number;
  /** Holes in the live feed (one or more events in a row) filled that way. */
  holesHealed: number;
  /**
   * Losses the bridge told its broker of through `lost` (history gone: a store restart, a
   * trimmed range): each is one gap signal on the open streams.
   */
  losses: number;
  /** Messages the bridge skipped: not written by a bridge, or claims the store contradicts. */
  messagesRefused: number;
}

/** The method of a bridge that reports {@linkcode BridgeStats}; a bridge without it reports none. */
export const bridgeStats: unique symbol = Symbol("flume.bridgeStats");

/** A bridge that reports how it kept its feed whole. */
export interface ReportsBridgeStats {
  [bridgeStats](): BridgeStats;
}

/** What a bridge reports, or undefined for one that does not. */
export function bridgeStatsOf(bridge: Bridge): BridgeStats | undefined {
  return bridgeStats in bridge ? (bridge as Bridge & ReportsBridgeStats)[bridgeStats]() : undefined;
}

/** What a bridge that bounds its history reports for `broker.metrics()`. */
export interface HistoryStats {
  /** Channels whose history was freed to stay within the byte budget. */
  evictions: number;
  /** Channels whose history was freed for being untouched longer than the ttl. */
  expirations: number;
  /** Estimated bytes of history held now. */
  bytes: number;
}

/** The method of a bridge that reports {@linkcode HistoryStats}; a bridge without it reports none. */
export const historyStats: unique symbol = Symbol("flume.historyStats");

/** A bridge that reports its history's bounds at work. */
export interface ReportsHistory {
  [historyStats](): HistoryStats;
}

/** What a bridge reports, or undefined for one that does not. */
export function historyStatsOf(bridge: Bridge): HistoryStats | undefined {
  return historyStats in bridge ? (bridge as Bridge & ReportsHistory)[historyStats]() : undefined;
}
