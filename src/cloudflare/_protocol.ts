/**
 * How the worker-side helpers and {@linkcode BrokerObject} talk: requests to an internal origin
 * that no client can reach (a stub is the only way in), the action in the path and the channels
 * as repeated `channel` parameters, so that any channel name travels as it is.
 * @module
 */

/** The origin of every request a worker sends a broker object. */
export const OBJECT_ORIGIN = "https://broker.flume.internal";

/** What a worker asks a broker object to do. */
export type ObjectAction = "subscribe" | "publish" | "count";

/** The URL of an action on some channels. */
export function objectUrl(action: ObjectAction, channels: readonly string[]): string {
  const url = new URL(`/${action}`, OBJECT_ORIGIN);
  for (const channel of channels) url.searchParams.append("channel", channel);
  return url.href;
}

/** The action and channels of a request a broker object got, or undefined for another one. */
export function parseObjectUrl(
  href: string,
): { action: ObjectAction; channels: string[] } | undefined {
  const url = new URL(href);
  const action = url.pathname.slice(1);
  if (action !== "subscribe" && action !== "publish" && action !== "count") return undefined;
  return { action, channels: url.searchParams.getAll("channel") };
}
