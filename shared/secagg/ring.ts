import { addWords } from './words.ts';

/**
 * Integers <-> the ring Z_{2^32} (Uint32Array, wrap-around arithmetic). Each client maps its values into
 * [0, 2^bits) by adding the offset 2^(bits-1); with n * 2^bits <= 2^32 the sum of n vectors cannot wrap,
 * so the server recovers the exact signed integer sum by subtracting n * offset.
 */
export const RING_BITS = 32;

/** Largest per-client width b with maxClients * 2^b <= 2^32. */
export function ringBits(maxClients: number): number {
  if (!Number.isInteger(maxClients) || maxClients < 1)
    throw new RangeError(`maxClients must be a positive integer, got ${maxClients}`);
  const b = RING_BITS - Math.ceil(Math.log2(maxClients));
  if (b < 2) throw new RangeError(`${maxClients} clients leave no room in a 32-bit ring`);
  return b;
}

export function checkNoOverflow(n: number, bits: number): void {
  if (n * 2 ** bits > 2 ** RING_BITS) {
    throw new RangeError(
      `sum of ${n} values of ${bits} bits can overflow the 32-bit ring (n * 2^bits > 2^32)`,
    );
  }
}

export interface RingEncoded {
  ring: Uint32Array;
  /** Values that fell outside [-2^(bits-1), 2^(bits-1)) and were clamped. */
  clamped: number;
}

/** Signed integers (held in float64) -> offset form in [0, 2^bits). */
export function encodeRing(ints: Float64Array, bits: number): RingEncoded {
  const half = 2 ** (bits - 1);
  const ring = new Uint32Array(ints.length);
  let clamped = 0;
  for (let i = 0; i < ints.length; i++) {
    let v = ints[i];
    if (!Number.isInteger(v)) throw new RangeError(`value ${i} is not an integer: ${v}`);
    if (v < -half) ((v = -half), clamped++);
    else if (v > half - 1) ((v = half - 1), clamped++);
    ring[i] = v + half;
  }
  return { ring, clamped };
}

/**
 * acc += v (mod 2^32), in place, over int32 views of the same words (words.ts addWords): int32 values stay
 * small integers in the engine where uint32 words >= 2^31 would not.
 */
export function addInto(acc: Uint32Array, v: Uint32Array): void {
  if (acc.length !== v.length) throw new RangeError(`length mismatch: ${acc.length} vs ${v.length}`);
  addWords(
    new Int32Array(acc.buffer, acc.byteOffset, acc.length),
    0,
    new Int32Array(v.buffer, v.byteOffset, v.length),
  );
}

/** Sum of n offset-encoded vectors -> the exact signed integer sum. */
export function decodeRingSum(sum: Uint32Array, n: number, bits: number): Float64Array {
  checkNoOverflow(n, bits);
  const off = n * 2 ** (bits - 1);
  const out = new Float64Array(sum.length);
  for (let i = 0; i < sum.length; i++) out[i] = sum[i] - off;
  return out;
}
