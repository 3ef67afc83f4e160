/** L2 norm in float64 (a float32 accumulator loses digits over 1M coordinates). */
export function l2Norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
}

export interface ClipResult {
  /** Norm before clipping. */
  norm: number;
  /** Factor applied: min(1, C / norm). */
  factor: number;
}

/** Scales v in place so that ||v||_2 <= clipNorm (per-client clipping of DP-FedAvg). */
export function clipL2InPlace(v: Float32Array | Float64Array, clipNorm: number): ClipResult {
  if (!(clipNorm > 0) || !Number.isFinite(clipNorm))
    throw new RangeError(`clip norm must be a positive finite number, got ${clipNorm}`);
  const norm = l2Norm(v);
  if (!Number.isFinite(norm)) throw new RangeError('update has a non-finite norm');
  const factor = norm > clipNorm ? clipNorm / norm : 1;
  if (factor < 1) for (let i = 0; i < v.length; i++) v[i] *= factor;
  return { norm, factor };
}
