// The RFC 8291, 8188 and 8292 test vectors (a copy of the team's shared fixture).

import vectors from "./fixtures/rfc8291-vectors.json" with { type: "json" };
import { fromBase64Url } from "./_rfc8188.ts";

export { vectors };

/** A base64url vector value as bytes. */
export function bytes(value: string): Uint8Array<ArrayBuffer> {
  return fromBase64Url(value);
}
