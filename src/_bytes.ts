const encoder = new TextEncoder();

/** UTF-8 bytes of a string whose well-formedness was checked (or that JSON produced). */
export function encodeText(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Joins chunks whose total length is known into one. */
export function concatBytes(chunks: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
