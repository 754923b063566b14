// Synchronous checks of P-256 values, so that a bad key is refused up front and the same way on
// every runtime: Bun refuses an off-curve point at import, Deno only when it is used.

// [SEC 2 §2.4.2] secp256r1 domain parameters.
const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

function toBigInt(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

/** Whether `bytes` is an uncompressed P-256 point (0x04 || x || y) that lies on the curve. */
export function isP256Point(bytes: Uint8Array): boolean {
  if (bytes.length !== 65 || bytes[0] !== 0x04) return false;
  const x = toBigInt(bytes.subarray(1, 33));
  const y = toBigInt(bytes.subarray(33, 65));
  if (x >= P || y >= P) return false;
  // [SEC 1 §3.2.2.1] y² = x³ − 3x + b (mod p)
  return (y * y) % P === (((x * x) % P) * x - 3n * x + B + 3n * P) % P;
}

/** Whether `bytes` is a 32-byte P-256 private scalar in the range [1, n − 1]. */
export function isP256Scalar(bytes: Uint8Array): boolean {
  if (bytes.length !== 32) return false;
  const d = toBigInt(bytes);
  return d > 0n && d < N;
}
