import type { PushSubscriptionJSON } from "./parse_push_subscription.ts";
import type { WebPushDispatcher, WebPushSendManyOptions } from "./web_push_dispatcher.ts";

/**
 * The part of the core `Broker` that {@linkcode PushFallback} uses. Declared here so that Web
 * Push does not load the core and the core never loads Web Push; a `Broker` fits it as it is.
 */
export interface LiveChannels {
  /** How many SSE clients are subscribed to `channel` right now. */
  clientCount(channel: string): number;
  /** Queues one event for every SSE client of `channel`. */
  publish(channel: string, data: unknown, options?: { event?: string; id?: string }): Promise<void>;
}

/**
 * What a {@linkcode PushFallback.deliver} call sends when it falls back to Web Push, as the
 * service worker's `event.data.json()`: the SSE event name, id and data, so one handler can serve
 * both paths.
 */
export interface PushEnvelope {
  /** The SSE event name (`"message"` when none was given). */
  event: string;
  /** The event id, if one was given. */
  id?: string;
  /** The event data, as passed to `deliver()`. */
  data: unknown;
}

/** Options for {@linkcode PushFallback.deliver}. */
export interface PushFallbackDeliverOptions extends WebPushSendManyOptions {
  /** The user's push subscriptions, used when nobody is listening on the channel. */
  subscriptions: readonly PushSubscriptionJSON[];
  /**
   * The event name, for SSE and in the push envelope.
   *
   * @default {"message"}
   */
  event?: string;
  /**
   * The event id, for SSE and in the push envelope.
   *
   * @default {undefined}
   */
  id?: string;
}

/** How {@linkcode PushFallback.deliver} delivered an event. */
export type PushFallbackResult =
  | {
    /** Over SSE: the channel had live clients. */
    via: "sse";
    /** How many clients were subscribed when it was published. */
    clients: number;
  }
  | {
    /** Over Web Push: nobody was listening on the channel. */
    via: "push";
    /** Subscriptions the push service accepted the message for. */
    delivered: number;
    /** Endpoints that are gone (404/410): delete them. */
    gone: string[];
  };

/**
 * Delivers an event to a user over SSE when they have a page open, and as a Web Push message
 * when they do not: push where SSE cannot reach.
 *
 * The choice is made per call from `broker.clientCount(channel)`: with one client or more the
 * event is published on the channel and nothing is pushed; with none it is pushed to each of
 * the user's subscriptions as a {@linkcode PushEnvelope} `{ event, id, data }`. A page that
 * closes between the check and the publish misses the event, as any SSE client that is away
 * does; give the broker `history` so a reconnecting page can replay it.
 *
 * @example Notify a user wherever they are
 * Not run by the doc tests: it needs a configured dispatcher, your subscription store and a real
 * push service.
 *
 * ```ts ignore
 * import { Broker } from "@flume/sse";
 * import { PushFallback, WebPushDispatcher } from "@flume/sse/webpush";
 * import type { PushSubscriptionJSON } from "@flume/sse/webpush";
 *
 * declare const dispatcher: WebPushDispatcher;
 * declare function subscriptionsOf(user: string): Promise<PushSubscriptionJSON[]>;
 * declare function forget(endpoints: string[]): Promise<void>;
 *
 * const broker = new Broker();
 * const notify = new PushFallback(broker, dispatcher);
 * const result = await notify.deliver("user:42", { title: "New reply", body: "…" }, {
 *   event: "reply",
 *   subscriptions: await subscriptionsOf("42"),
 * });
 * if (result.via === "push") await forget(result.gone);
 * ```
 */
export class PushFallback {
  #broker: LiveChannels;
  #dispatcher: WebPushDispatcher;

  /**
   * Creates the helper.
   *
   * @param broker The SSE side: a `Broker`, or anything with its `clientCount` and `publish`.
   * @param dispatcher The Web Push side.
   */
  constructor(broker: LiveChannels, dispatcher: WebPushDispatcher) {
    this.#broker = broker;
    this.#dispatcher = dispatcher;
  }

  /**
   * Publishes `data` on `channel` if it has live SSE clients, or pushes it to
   * `options.subscriptions` if not.
   *
   * @param channel The user's broker channel, e.g. `user:42`.
   * @param data The event data: the SSE `data` and the envelope's `data`.
   * @param options The user's subscriptions, the event name and id, and push options.
   * @returns Which way the event went, with the gone endpoints when it was pushed. A push that
   *   failed otherwise is reported to `options.onError`, or else to `console.error`, and counts
   *   as not delivered.
   * @throws {RangeError} The push envelope is too large for a push message, or a push option is
   *   bad (checked before anything is sent).
   * @throws {TypeError} The data has no JSON form, or `urgency` or `topic` is bad.
   *
   * @example Deliver a chat message
   * Not run by the doc tests: it needs a configured dispatcher and a real push service.
   *
   * ```ts ignore
   * import type { PushFallback, PushSubscriptionJSON } from "@flume/sse/webpush";
   *
   * declare const notify: PushFallback;
   * declare const subscriptions: PushSubscriptionJSON[];
   * const result = await notify.deliver("user:7", { title: "Ana", body: "lunch?" }, {
   *   event: "chat",
   *   subscriptions,
   *   urgency: "high",
   * });
   * console.log(result.via);
   * ```
   */
  async deliver(
    channel: string,
    data: unknown,
    options: PushFallbackDeliverOptions,
  ): Promise<PushFallbackResult> {
    const { subscriptions, event, id, onError, ...sendOptions } = options;
    const clients = this.#broker.clientCount(channel);
    if (clients > 0) {
      const publishOptions: { event?: string; id?: string } = {};
      if (event !== undefined) publishOptions.event = event;
      if (id !== undefined) publishOptions.id = id;
      await this.#broker.publish(channel, data, publishOptions);
      return { via: "sse", clients };
    }

    const envelope: PushEnvelope = { event: event ?? "message", data };
    if (id !== undefined) envelope.id = id;
    // Counted here rather than from `failures`, which also holds what a throwing `onError` threw.
    let failed = 0;
    const pushOptions: WebPushSendManyOptions = { ...sendOptions };
    if (onError !== undefined) {
      pushOptions.onError = (error, subscription) => {
        failed++;
        onError(error, subscription);
      };
    }
    const result = await this.#dispatcher.sendMany(subscriptions, envelope, pushOptions);
    if (onError === undefined) failed = result.failures.length;
    // A plain array: the result is meant to be stored or sent as JSON.
    const gone = [...result];
    return { via: "push", delivered: subscriptions.length - gone.length - failed, gone };
  }
}
