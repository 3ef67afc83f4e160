import { createSecureRandom, type SecureRandom } from '../shared/dp/secure-random.ts';
import { encodeContribution } from '../shared/fl/encoding.ts';
import type { RoundStart } from '../shared/protocol/messages.ts';
import type { Clock } from './clock.ts';
import type { SecureRound } from './secure-steps.ts';

/** A contribution ready to mask or send: a ring vector (with how it was made), or a float delta as is. */
export type Encoded =
  | { kind: 'float'; delta: ArrayBuffer }
  | { kind: 'ring'; ring: Uint32Array; encodeMs: number; norm: number; clamped: number };

/**
 * Float delta as is; or clipped, noised (per the plan) and ring-encoded with its weight and loss.
 * random is asked for only when the plan encodes.
 */
export function encodeStep(
  r: RoundStart,
  delta: ArrayBuffer,
  numExamples: number,
  loss: number,
  clock: Clock,
  random: () => SecureRandom,
): Encoded {
  if (!r.encoding) return { kind: 'float', delta };
  const t0 = clock.now();
  const rng = random();
  const c = encodeContribution(new Float32Array(delta), numExamples, r.encoding, rng, loss);
  return { kind: 'ring', ring: c.ring, encodeMs: clock.now() - t0, norm: c.norm, clamped: c.clamped };
}

/** Adds the round's masks (expanded through WebCrypto); the server can strip them from the sum only. */
export async function maskStep(
  sec: SecureRound,
  ring: Uint32Array,
  clock: Clock,
): Promise<{ masked: Uint32Array; maskMs: number }> {
  const t0 = clock.now();
  const masked = await sec.session.mask(ring);
  return { masked, maskMs: clock.now() - t0 };
}

/** A secure random source opened on first use (and then reused). */
export function lazySecureRandom(): () => SecureRandom {
  let random: SecureRandom | null = null;
  return () => (random ??= createSecureRandom());
}
