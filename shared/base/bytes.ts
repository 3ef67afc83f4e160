/** Vectors travel as little-endian float32 bytes. Every platform tfjs runs on is little-endian; we check. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
if (!LITTLE_ENDIAN) throw new Error('AegisFL requires a little-endian platform');

/** Views ArrayBuffer / typed arrays / Node Buffers (a Uint8Array subclass) as bytes, else null. */
export function asBytes(v: unknown): Uint8Array | null {
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return null;
}

/** Float32 view of bytes; copies only when the bytes are not 4-byte aligned (socket.io may hand us any offset). */
export function bytesToFloat32(b: Uint8Array): Float32Array {
  if (b.byteLength % 4 !== 0) throw new Error(`byte length ${b.byteLength} is not a multiple of 4`);
  if (b.byteOffset % 4 === 0) return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  return new Float32Array(b.slice().buffer);
}

/** Exact-size ArrayBuffer holding the vector (no trailing bytes of a larger backing buffer go out). */
export function float32ToBuffer(v: Float32Array): ArrayBuffer {
  if (v.byteOffset === 0 && v.byteLength === v.buffer.byteLength && v.buffer instanceof ArrayBuffer)
    return v.buffer;
  return v.slice().buffer;
}

/** Uint32 view of bytes (ring vectors); copies only when unaligned. */
export function bytesToUint32(b: Uint8Array): Uint32Array {
  if (b.byteLength % 4 !== 0) throw new Error(`byte length ${b.byteLength} is not a multiple of 4`);
  if (b.byteOffset % 4 === 0) return new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  return new Uint32Array(b.slice().buffer);
}

/** Whether two byte strings are equal; the time depends on the length only (keys and commitments use it). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}
