import type { RoundStart } from '../shared/protocol/messages.ts';
import type { Clock } from './clock.ts';
import { andThen, type Awaitable, type SecureEngine } from './secure-engine.ts';
import type { SecureRound } from './secure-steps.ts';

/** A contribution ready to mask or send: a ring vector (with how it was made), or a float delta as is. */
export type Encoded =
  | { kind: 'float'; delta: ArrayBuffer }
  | { kind: 'ring'; ring: Uint32Array; encodeMs: number; norm: number; clamped: number };

/**
 * Float delta as is; or clipped, noised (per the plan) and ring-encoded with its weight and loss, by the
 * secure engine (in a worker in browsers). The delta's buffer is handed over: the caller must not reuse it.
 */
export function encodeStep(
  r: RoundStart,
  delta: ArrayBuffer,
  numExamples: number,
  loss: number,
  clock: Clock,
  engine: SecureEngine,
): Awaitable<Encoded> {
  if (!r.encoding) return { kind: 'float', delta };
  const t0 = clock.now();
  return andThen(engine.encode(new Float32Array(delta), numExamples, r.encoding, loss), (c) => ({
    kind: 'ring' as const,
    ring: c.ring,
    encodeMs: clock.now() - t0,
    norm: c.norm,
    clamped: c.clamped,
  }));
}

/** Adds the round's masks (in the engine, expanded through WebCrypto); the server can strip them from the sum only. */
export function maskStep(
  sec: SecureRound,
  ring: Uint32Array,
  clock: Clock,
): Awaitable<{ masked: Uint32Array; maskMs: number }> {
  const t0 = clock.now();
  return andThen(sec.engine.mask(sec.id, ring), (masked) => ({ masked, maskMs: clock.now() - t0 }));
}
