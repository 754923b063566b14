/**
 * How both Redis bridges (single-order and partitioned) talk to Redis: a script run by its hash
 * within a deadline, and the errors and replies around it. One place, so that a fix (a retry, a
 * clearer message) reaches both modes.
 * @module
 */

import { clock, type TimerHandle } from "../_clock.ts";
import { scriptSha } from "./_adapters.ts";
import type { RedisBridgeAdapter } from "./redis_bridge_adapter.ts";
import { RedisBridgeError, type RedisBridgeErrorReason } from "./redis_bridge_error.ts";

/** Ms between two tries of a script that Redis answered `TRYAGAIN` (a slot half-migrated). */
const TRYAGAIN_MS = 20;

/** A {@linkcode RedisBridgeError} with its reason, and its cause when there is one. */
export function bridgeError(
  message: string,
  reason: RedisBridgeErrorReason,
  cause?: unknown,
): RedisBridgeError {
  return new RedisBridgeError(message, cause === undefined ? { reason } : { reason, cause });
}

/** The message of whatever a client threw. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** `typeof`, with `null` named. */
export function typeOf(value: unknown): string {
  return value === null ? "null" : typeof value;
}

/** The `{epoch, seq}` that a HEAD script answers, or a `RedisBridgeError` for anything else. */
export function parseHead(reply: unknown, action: string): [string, number] {
  const [epoch, seq] = Array.isArray(reply) ? reply : [];
  const n = Number(seq);
  if (typeof epoch !== "string" || !Number.isSafeInteger(n) || n < 0) {
    throw bridgeError(
      `Cannot ${action}: Redis answered an unexpected reply, got \`${
        JSON.stringify(reply)?.slice(0, 80)
      }\``,
      "unavailable",
    );
  }
  return [epoch, n];
}

/**
 * `promise`, or a `"timeout"` `RedisBridgeError` once `ms` have passed (on the clock seam).
 * `timeout` is the bridge's option, named in the message.
 */
export function within<T>(
  promise: Promise<T>,
  action: string,
  ms: number,
  timeout = ms,
): Promise<T> {
  let timer: TimerHandle | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = clock.setTimeout(reject, ms, undefined);
  }).catch(() => {
    throw bridgeError(`Cannot ${action}: Redis did not answer within ${timeout} ms`, "timeout");
  });
  return Promise.race([promise, expired]).finally(() => clock.clearTimeout(timer));
}

/** What {@linkcode runScript} needs of its bridge. */
export interface ScriptRunner {
  adapter: RedisBridgeAdapter;
  /** The SHA-1 of each script run so far, by script. */
  shas: Map<string, Promise<string>>;
  /** The bridge's `timeout` option, in ms. */
  timeout: number;
  /** Whether the bridge closed meanwhile: then a `TRYAGAIN` is not tried again. */
  closed(): boolean;
}

/**
 * Runs a script by its hash, loading it on `NOSCRIPT` (a restarted Redis), and again every 20 ms
 * while a slot is half-migrated (`TRYAGAIN`: the script did not run, so a retry is safe, and
 * node-redis does not retry it itself), all within the bridge's timeout. Whatever fails becomes a
 * `RedisBridgeError` (`"timeout"`, or `"unavailable"` with the client's error as its cause).
 */
export async function runScript(
  runner: ScriptRunner,
  action: string,
  script: string,
  keys: readonly string[],
  args: readonly string[],
): Promise<unknown> {
  let sha = runner.shas.get(script);
  if (!sha) runner.shas.set(script, sha = scriptSha(script));
  const tail = [String(keys.length), ...keys, ...args];
  const deadline = clock.now() + runner.timeout;
  while (true) {
    try {
      return await within(
        runner.adapter.command(["EVALSHA", await sha, ...tail]).catch((error: unknown) => {
          if (!messageOf(error).startsWith("NOSCRIPT")) throw error;
          return runner.adapter.command(["EVAL", script, ...tail]);
        }),
        action,
        Math.max(1, deadline - clock.now()),
        runner.timeout,
      );
    } catch (error) {
      if (error instanceof RedisBridgeError) throw error;
      const text = messageOf(error);
      if (text.startsWith("TRYAGAIN") && clock.now() + TRYAGAIN_MS < deadline && !runner.closed()) {
        await new Promise((resolve) => clock.setTimeout(resolve, TRYAGAIN_MS, undefined));
        continue;
      }
      throw bridgeError(`Cannot ${action}: ${text}`, "unavailable", error);
    }
  }
}
