import { createCipheriv } from 'node:crypto';
import { CHUNK_BYTES, counterBlock, type KeystreamSource } from '../shared/secagg/prg.ts';

const ZERO = Buffer.alloc(CHUNK_BYTES);

/**
 * The mask PRG's AES-256-CTR through node:crypto, for the server's worker threads: the same stream as
 * WebCrypto's (OpenSSL increments the whole 128-bit block, WebCrypto the low 64 bits, and the counter never
 * reaches 2^64), made synchronously on the calling thread. In a worker thread WebCrypto's thread hops
 * and copies made the unmasking about twice as slow; blocking a worker's own thread costs nothing.
 */
export const nodeKeystream: KeystreamSource = (key) => (block, bytes) => {
  if (bytes > CHUNK_BYTES) throw new RangeError(`at most ${CHUNK_BYTES} bytes of keystream at once`);
  return createCipheriv('aes-256-ctr', key, counterBlock(block)).update(ZERO.subarray(0, bytes));
};
