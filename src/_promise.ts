function noop(): void {}

/**
 * A rejection that does not count as unhandled: `await` still throws it, but a fire-and-forget
 * publish to a stream whose client left, or to a closed broker, must not crash the process (Deno
 * exits on an unhandled rejection).
 */
export function quietRejection(reason: unknown): Promise<never> {
  const rejected = Promise.reject(reason);
  rejected.catch(noop);
  return rejected;
}
