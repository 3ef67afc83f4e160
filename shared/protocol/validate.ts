import type { RejectReason } from '../base/errors.ts';
import { isRecord } from '../base/record.ts';
import { asBytes, bytesToFloat32, bytesToUint32 } from '../base/bytes.ts';
import {
  BACKENDS,
  CLIENT_SOURCES,
  PROTOCOL_VERSION,
  type BackendName,
  type FloatUpdate,
  type Hello,
  type Ready,
  type RingUpdate,
} from './messages.ts';

export type Checked<T> = { ok: true; value: T } | { ok: false; reason: RejectReason; message: string };

const fail = (reason: RejectReason, message: string): Checked<never> => ({ ok: false, reason, message });

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

/** Session ids and resume tokens: base64url, 16-64 characters. */
const CREDENTIAL = /^[A-Za-z0-9_-]{16,64}$/;

export function checkHello(raw: unknown): Checked<Hello> {
  if (!isRecord(raw)) return fail('malformed', 'hello must be an object');
  if (raw.protocolVersion !== PROTOCOL_VERSION) {
    // Only a number is echoed: String() of a client's value can be huge or throw (a deeply nested array).
    const v = raw.protocolVersion;
    const shown = typeof v === 'number' ? String(v) : `of type ${typeof v}`;
    return fail(
      'protocol_version',
      `protocol version ${shown} is not supported; server speaks ${PROTOCOL_VERSION}`,
    );
  }
  if (!CLIENT_SOURCES.includes(raw.source as never))
    return fail('malformed', `source must be one of ${CLIENT_SOURCES.join(', ')}`);
  const source = raw.source as Hello['source'];
  if (raw.resume === undefined) return { ok: true, value: { protocolVersion: PROTOCOL_VERSION, source } };
  const r = raw.resume;
  if (
    !isRecord(r) ||
    typeof r.sessionId !== 'string' ||
    !CREDENTIAL.test(r.sessionId) ||
    typeof r.resumeToken !== 'string' ||
    !CREDENTIAL.test(r.resumeToken)
  )
    return fail(
      'malformed',
      'resume must be { sessionId, resumeToken }, each 16-64 characters of A-Z a-z 0-9 _ -',
    );
  return {
    ok: true,
    value: {
      protocolVersion: PROTOCOL_VERSION,
      source,
      resume: { sessionId: r.sessionId, resumeToken: r.resumeToken },
    },
  };
}

/** Fields a client knows but must never send in the clear where the protocol has no place for them. */
const CLEARTEXT_FIELDS = ['numExamples', 'loss', 'trainMs'];

/** The first key of `raw` outside `allowed`, named if it is a known cleartext field (others are not echoed). */
function extraField(raw: Record<string, unknown>, allowed: readonly string[]): string | null {
  for (const k of Object.keys(raw)) {
    if (!allowed.includes(k)) return CLEARTEXT_FIELDS.includes(k) ? `"${k}"` : 'an unknown field';
  }
  return null;
}

const READY_FIELDS = ['backend'];

/** ready is { backend } and nothing else: the example count stays on the client. */
export function checkReady(raw: unknown): Checked<Ready> {
  if (!isRecord(raw)) return fail('malformed', 'ready must be an object');
  if (!BACKENDS.includes(raw.backend as BackendName))
    return fail('malformed', `backend must be one of ${BACKENDS.join(', ')}`);
  const extra = extraField(raw, READY_FIELDS);
  if (extra) return fail('malformed', `ready carries only backend, not ${extra}`);
  return { ok: true, value: { backend: raw.backend as BackendName } };
}

export interface UpdateLimits {
  numParams: number;
  maxExamples: number;
  /** Set when this round takes ring vectors (uint32) of this length instead of float32 deltas. */
  ringLength?: number;
}

/**
 * A validated update: a float round's, with exactly numParams finite float32 values in `delta`, or a
 * ring round's, exactly ringLength uint32 values in `ring` (any value is valid in the ring) and nothing
 * else.
 */
export type CheckedUpdate =
  | (Omit<FloatUpdate, 'delta'> & { delta: Float32Array; ring: null })
  | (Omit<RingUpdate, 'delta'> & { delta: null; ring: Uint32Array });

const RING_UPDATE_FIELDS = ['round', 'attempt', 'delta'];

export function checkUpdate(raw: unknown, limits: UpdateLimits): Checked<CheckedUpdate> {
  if (!isRecord(raw)) return fail('malformed', 'update must be an object');
  if (!isInt(raw.round, 0, 2 ** 31) || !isInt(raw.attempt, 0, 2 ** 31))
    return fail('malformed', 'round and attempt must be non-negative integers');
  if (limits.ringLength !== undefined) return checkRingUpdate(raw, raw.round, raw.attempt, limits.ringLength);
  if (!isInt(raw.numExamples, 1, limits.maxExamples))
    return fail('malformed', `numExamples must be an integer in 1..${limits.maxExamples}`);
  if (typeof raw.trainMs !== 'number' || !(raw.trainMs >= 0) || !Number.isFinite(raw.trainMs))
    return fail('malformed', 'trainMs must be a finite number >= 0');
  if (typeof raw.loss !== 'number' || !Number.isFinite(raw.loss))
    return fail('malformed', 'loss must be a finite number');
  const bytes = asBytes(raw.delta);
  if (!bytes) return fail('malformed', 'delta must be binary (ArrayBuffer), not JSON');
  const head = {
    round: raw.round,
    attempt: raw.attempt,
    numExamples: raw.numExamples,
    trainMs: raw.trainMs,
    loss: raw.loss,
  };
  const expected = limits.numParams * 4;
  if (bytes.byteLength !== expected) {
    return fail(
      'wrong_length',
      `delta has ${bytes.byteLength} bytes, expected ${expected} (${limits.numParams} float32)`,
    );
  }
  const delta = bytesToFloat32(bytes);
  for (let i = 0; i < delta.length; i++) {
    if (!Number.isFinite(delta[i])) return fail('not_finite', `delta[${i}] is ${delta[i]}`);
  }
  return { ok: true, value: { ...head, delta, ring: null } };
}

/**
 * A ring round's update is { round, attempt, delta } only: the weight and the loss travel inside the
 * vector, so an update that still carries them in the clear is refused rather than silently stripped.
 */
function checkRingUpdate(
  raw: Record<string, unknown>,
  round: number,
  attempt: number,
  ringLength: number,
): Checked<CheckedUpdate> {
  const extra = extraField(raw, RING_UPDATE_FIELDS);
  if (extra)
    return fail(
      'malformed',
      `a ring update carries only round, attempt and delta, not ${extra}: the weight and loss travel inside the vector`,
    );
  const bytes = asBytes(raw.delta);
  if (!bytes) return fail('malformed', 'delta must be binary (ArrayBuffer), not JSON');
  if (bytes.byteLength !== ringLength * 4) {
    return fail(
      'wrong_length',
      `ring vector has ${bytes.byteLength} bytes, expected ${ringLength * 4} (${ringLength} uint32)`,
    );
  }
  return { ok: true, value: { round, attempt, delta: null, ring: bytesToUint32(bytes) } };
}
