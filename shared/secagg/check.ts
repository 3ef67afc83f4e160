import { asBytes } from '../base/bytes.ts';
import { isRecord } from '../base/record.ts';
import { ProtocolError } from '../base/errors.ts';

/** Runtime checks shared by both session sides: every field of an incoming message is verified. */
export function record(v: unknown, what: string): Record<string, unknown> {
  if (!isRecord(v)) throw new ProtocolError('malformed', `${what} must be an object`);
  return v;
}

/** A binary field, checked but not copied: for a caller that copies what it keeps into its own buffer. */
export function bytesView(v: unknown, what: string, len?: number, maxLen = 4096): Uint8Array {
  const b = asBytes(v);
  if (!b) throw new ProtocolError('malformed', `${what} must be binary`);
  if (len !== undefined && b.length !== len)
    throw new ProtocolError('malformed', `${what} must be ${len} bytes, got ${b.length}`);
  if (b.length > maxLen) throw new ProtocolError('malformed', `${what} is too long (${b.length} bytes)`);
  return b;
}

export function bytes(v: unknown, what: string, len?: number, maxLen = 4096): Uint8Array {
  return bytesView(v, what, len, maxLen).slice(); // own copy: the transport may reuse its buffer
}

export function list(v: unknown, what: string, max: number): unknown[] {
  if (!Array.isArray(v)) throw new ProtocolError('malformed', `${what} must be an array`);
  if (v.length > max)
    throw new ProtocolError('malformed', `${what} has ${v.length} entries, at most ${max} allowed`);
  return v;
}

export function index(v: unknown, what: string, n: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > n)
    throw new ProtocolError('malformed', `${what} must be a client index in 1..${n}`);
  return v;
}

export function indexList(v: unknown, what: string, n: number): number[] {
  const out = list(v, what, n).map((x) => index(x, what, n));
  if (new Set(out).size !== out.length) throw new ProtocolError('duplicate', `${what} lists a client twice`);
  return out;
}
