/**
 * The options of `redisBridge()`: their own file, so that both bridges (single-order and
 * partitioned) depend on them and not on each other.
 * @module
 */

import type { RedisBridgeAdapter } from "./redis_bridge_adapter.ts";
import type { RedisBridgeError } from "./redis_bridge_error.ts";

/** Options of {@linkcode redisBridge}. */
export interface RedisBridgeOptions {
  /**
   * The command connection: a connected client of npm `redis` (`createClient()`, or
   * `createCluster()` for a Redis Cluster), `ioredis` (`new Redis()`, or `new Cluster()`) or
   * Bun's `RedisClient` (single server only). The bridge only sends commands on it, and leaves
   * connecting and quitting to you.
   * @default {undefined}
   */
  client?: object;
  /**
   * A second connection of the same kind, for the subscription (a subscribed Redis connection
   * can run no other command), e.g. `client.duplicate()`. On a Redis Cluster the bridge listens
   * on a shard channel (`SSUBSCRIBE`): an ioredis `Cluster` needs `shardedSubscribers: true`.
   * @default {undefined}
   */
  subscriber?: object;
  /**
   * Any other client, instead of `client` and `subscriber`.
   * @default {undefined}
   */
  adapter?: RedisBridgeAdapter;
  /**
   * Put in front of every key and of the channel, so that several apps share one Redis. Apps
   * on different databases of one Redis are kept apart whatever their prefixes: the channel
   * carries the database number (Redis 6.2 and later; pub/sub itself ignores databases). On a
   * Redis Cluster it must contain a hash tag (`"{myapp}:"`), so that all keys and the channel
   * land on one slot; the bridge refuses one without.
   * @default {"flume:"}
   */
  prefix?: string;
  /**
   * Milliseconds to wait for Redis to answer a command and for a published event to come back
   * on the subscription; beyond it the publish or replay rejects.
   * @default {5_000}
   */
  timeout?: number;
  /**
   * How many of the latest events (of every channel, history kept or not) Redis keeps in the
   * heal log, from which a worker whose subscription missed some (a dropped or slow
   * subscription) fetches them and delivers them in order. A hole older than that reaches the
   * clients as the gap signal. It costs Redis about the payload of each event again (plus some
   * 100 bytes), up to about 100 events more than this (the trim is approximate); it lives the
   * history ttl after the last publish. `0` keeps no log: every missed event is a loss.
   * @default {10_000}
   */
  healWindow?: number;
  /**
   * Gets what has no caller: a message on the channel that the bridge did not write or that
   * Redis does not confirm (skipped), events this worker missed and cannot fetch any more,
   * connection errors (once per outage).
   * @default {console.error}
   */
  onError?(error: RedisBridgeError): void;
  /**
   * Turns on the partitioned mode: channels hash to this many partitions (1 to 256), each with
   * its own order, and a worker subscribes only to the channels its clients are on (on a Redis
   * Cluster, with sharded pub/sub spread over the masters). Events of one channel (and of one
   * partition) keep their order; between partitions there is none. One `Last-Event-ID` still
   * resumes every channel of a client. Every worker of an app must use the same count (Redis
   * refuses another), the prefix must not contain `{` or `}`, `publish()` refuses a caller's
   * `id`, and `healWindow` counts per partition (default 2,000 then). Absent: one total order.
   * @default {undefined}
   */
  partitions?: number;
  /**
   * Partitioned mode: ms a channel stays subscribed after this worker's last client on it left
   * (a client that reconnects to the same worker finds it subscribed).
   * @default {30_000}
   */
  unsubscribeDelay?: number;
  /**
   * Partitioned mode: ms between the audits of a partition this worker listens to (a script
   * that finds events a moved or dropped subscription missed, then heals them).
   * @default {10_000}
   */
  auditInterval?: number;
}
