// Turning a `send()` payload into the bytes that get encrypted.

import { typeOf } from "./_describe.ts";
import { MAX_PLAINTEXT } from "./_ece.ts";

/** Encodes a payload: bytes as they are, a string as UTF-8, anything else as JSON. */
export function encodePayload(payload: unknown): Uint8Array | undefined {
  if (payload === undefined) return undefined;
  if (typeof payload === "string") return new TextEncoder().encode(payload);
  if (payload instanceof Uint8Array) return payload;
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  const json = JSON.stringify(payload);
  if (json === undefined) {
    throw new TypeError(
      `Cannot send push message: \`payload\` must be bytes, a string or a JSON value, got \`${
        typeOf(payload)
      }\``,
    );
  }
  return new TextEncoder().encode(json);
}

/** Refuses a payload too large for one record, before anything is sent. */
export function checkPayloadSize(plaintext: Uint8Array | undefined): void {
  if (plaintext !== undefined && plaintext.length > MAX_PLAINTEXT) {
    throw new RangeError(
      `Cannot send push message: \`payload\` must be at most ${MAX_PLAINTEXT} bytes to fit in one record, got ${plaintext.length} bytes`,
    );
  }
}
