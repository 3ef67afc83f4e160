import { createHash, type Hash } from 'node:crypto';
import { ProtocolError } from '../shared/base/errors.ts';

/** Deepest nesting a digest follows (protocol messages are a few levels deep). */
const MAX_DEPTH = 16;

/**
 * SHA-256 of a decoded message, the same for the same content however it was decoded: object keys in
 * sorted order, every value tagged with its type and length, binary fields (Buffer, typed arrays,
 * ArrayBuffer) by their bytes. Two sends of one message give one digest; any other message another.
 * Used to tell a re-send after a reconnect (acknowledged as a duplicate) from a changed answer (refused).
 */
export function messageDigest(v: unknown): Buffer {
  const h = createHash('sha256');
  feed(h, v, 0);
  return h.digest();
}

function feed(h: Hash, v: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new ProtocolError('malformed', 'message nested too deeply');
  if (v === null) h.update('n');
  else if (v === undefined) h.update('u');
  else if (typeof v === 'boolean') h.update(v ? 't' : 'f');
  else if (typeof v === 'number') h.update(`d${Object.is(v, -0) ? '-0' : String(v)};`);
  else if (typeof v === 'string') h.update(`s${Buffer.byteLength(v)}:`).update(v, 'utf8');
  else if (ArrayBuffer.isView(v)) {
    h.update(`b${v.byteLength}:`).update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  } else if (v instanceof ArrayBuffer) h.update(`b${v.byteLength}:`).update(new Uint8Array(v));
  else if (Array.isArray(v)) {
    h.update(`a${v.length}:`);
    for (const x of v) feed(h, x, depth + 1);
  } else if (typeof v === 'object') {
    const keys = Object.keys(v).sort();
    h.update(`o${keys.length}:`);
    for (const k of keys) {
      feed(h, k, depth + 1);
      feed(h, (v as Record<string, unknown>)[k], depth + 1);
    }
  } else h.update(`x${typeof v}`);
}
