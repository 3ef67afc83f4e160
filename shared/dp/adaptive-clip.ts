/**
 * Adaptive clipping (Andrew et al. 2021; privacy.md B): the clip norm follows a target quantile of the
 * update norms, learned from a noisy count of clients whose update fit under the current clip.
 */
export interface AdaptiveClipConfig {
  targetQuantile: number;
  learningRate: number;
  /** Std of the noise on the sum of indicators (sigma_b). */
  indicatorStd: number;
}

/**
 * Noise multiplier left for the update itself when the count query takes its share of a total
 * multiplier z: z_value = (z^-2 - (2 sigma_b)^-2)^(-1/2). Requires z < 2 sigma_b.
 */
export function valueNoiseMultiplier(z: number, indicatorStd: number): number {
  const zb = 2 * indicatorStd;
  if (!(z < zb))
    throw new RangeError(
      `adaptive clipping needs noise multiplier z < 2 sigma_b = ${zb}; raise sigma_b or lower z`,
    );
  return (z ** -2 - zb ** -2) ** -0.5;
}

/**
 * Geometric update C <- C exp(-eta (bbar - gamma)), bbar = clamp(noisy sum of indicators / m + 1/2, 0, 1),
 * where indicators are +-1/2 and m is the expected number of clients per round.
 */
export function nextClipNorm(
  clip: number,
  noisyIndicatorSum: number,
  expectedClients: number,
  cfg: AdaptiveClipConfig,
): { clip: number; fraction: number } {
  const fraction = Math.min(1, Math.max(0, noisyIndicatorSum / expectedClients + 0.5));
  return { clip: clip * Math.exp(-cfg.learningRate * (fraction - cfg.targetQuantile)), fraction };
}
