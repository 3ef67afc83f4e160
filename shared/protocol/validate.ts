import type { RejectReason } from '../base/errors.ts';
import { isRecord } from '../base/record.ts';
import { asBytes, bytesToFloat32, bytesToUint32 } from '../base/bytes.ts';
import {
  BACKENDS,
  CLIENT_SOURCES,
  PROTOCOL_VERSION,
  type BackendName,
  type Hello,
  type Ready,
  type Update,
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
    return fail(
      'protocol_version',
      `protocol version ${String(raw.protocolVersion)} is not supported; server speaks ${PROTOCOL_VERSION}`,
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

export function checkReady(raw: unknown, maxExamples: number): Checked<Ready> {
  if (!isRecord(raw)) return fail('malformed', 'ready must be an object');
  if (!BACKENDS.includes(raw.backend as BackendName))
    return fail('malformed', `backend must be one of ${BACKENDS.join(', ')}`);
  if (!isInt(raw.numExamples, 1, maxExamples))
    return fail('malformed', `numExamples must be an integer in 1..${maxExamples}`);
  return { ok: true, value: { backend: raw.backend as BackendName, numExamples: raw.numExamples } };
}

export interface UpdateLimits {
  numParams: number;
  maxExamples: number;
  /** Set when this round takes ring vectors (uint32) of this length instead of float32 deltas. */
  ringLength?: number;
}

/**
 * A validated update: either `delta`, exactly numParams finite float32 values, or `ring`, exactly
 * ringLength uint32 values (any value is valid in the ring).
 */
export interface CheckedUpdate extends Omit<Update, 'delta'> {
  delta: Float32Array | null;
  ring: Uint32Array | null;
}

export function checkUpdate(raw: unknown, limits: UpdateLimits): Checked<CheckedUpdate> {
  if (!isRecord(raw)) return fail('malformed', 'update must be an object');
  if (!isInt(raw.round, 0, 2 ** 31) || !isInt(raw.attempt, 0, 2 ** 31))
    return fail('malformed', 'round and attempt must be non-negative integers');
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
  if (limits.ringLength !== undefined) {
    if (bytes.byteLength !== limits.ringLength * 4) {
      return fail(
        'wrong_length',
        `ring vector has ${bytes.byteLength} bytes, expected ${limits.ringLength * 4} (${limits.ringLength} uint32)`,
      );
    }
    return { ok: true, value: { ...head, delta: null, ring: bytesToUint32(bytes) } };
  }
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
