/** Validates an optional duration in ms that `null` turns off. */
export function checkOptionalMs(
  api: string,
  name: string,
  value: number | null | undefined,
  fallback: number | null,
): number | null {
  if (value === undefined) return fallback;
  if (value === null) return null;
  // setTimeout wraps delays above 2^31 - 1 ms around to 1 ms on every runtime.
  if (typeof value !== "number" || !(value > 0) || value > 2_147_483_647) {
    throw new RangeError(
      `Cannot create ${api}: \`${name}\` must be a positive number of ms up to 2147483647 or null, got \`${
        String(value)
      }\``,
    );
  }
  return value;
}

/** Validates an optional positive integer. */
export function checkPositiveInteger(
  api: string,
  name: string,
  value: number | undefined,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot create ${api}: \`${name}\` must be a positive integer, got \`${String(value)}\``,
    );
  }
  return value;
}

/** Validates an optional non-negative integer (0 turns the thing it sizes off). */
export function checkNonNegativeInteger(
  api: string,
  name: string,
  value: number | undefined,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `Cannot create ${api}: \`${name}\` must be a non-negative integer, got \`${String(value)}\``,
    );
  }
  return value;
}
