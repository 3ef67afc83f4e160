import { chacha20 } from '@noble/ciphers/chacha.js';

/**
 * The mask PRG: the ChaCha20 keystream (RFC 8439) under a 32-byte seed, read as little-endian uint32
 * words. Generated in chunks so a 1M-word mask never needs a second 4 MB buffer.
 */
const CHUNK_WORDS = 16384; // 64 KiB of keystream, 1024 ChaCha blocks
const ZERO = new Uint8Array(CHUNK_WORDS * 4);

/** Distinct nonces keep self masks and pairwise masks in separate streams even under one key. */
export const NONCE_SELF = new Uint8Array([0x73, 0x65, 0x6c, 0x66, 0, 0, 0, 0, 0, 0, 0, 0]); // "self"
export const NONCE_PAIR = new Uint8Array([0x70, 0x61, 0x69, 0x72, 0, 0, 0, 0, 0, 0, 0, 0]); // "pair"

function checkSeed(seed: Uint8Array): void {
  if (seed.length !== 32) throw new RangeError(`PRG seed must be 32 bytes, got ${seed.length}`);
}

/**
 * target[i] += sign * PRG(seed)[i] (mod 2^32) for every i, with sign +1 or -1.
 * Reads the keystream with the platform's byte order, which is little-endian on every platform we run on.
 */
export function addMask(target: Uint32Array, seed: Uint8Array, nonce: Uint8Array, sign: 1 | -1): void {
  checkSeed(seed);
  const out = new Uint8Array(CHUNK_WORDS * 4);
  const words = new Uint32Array(out.buffer);
  let counter = 0;
  for (let off = 0; off < target.length; off += CHUNK_WORDS) {
    const n = Math.min(CHUNK_WORDS, target.length - off);
    const bytes = n * 4;
    chacha20(seed, nonce, ZERO.subarray(0, bytes), out.subarray(0, bytes), counter);
    counter += bytes / 64;
    if (sign === 1) for (let i = 0; i < n; i++) target[off + i] = (target[off + i] + words[i]) >>> 0;
    else for (let i = 0; i < n; i++) target[off + i] = (target[off + i] - words[i]) >>> 0;
  }
}

/** The first `length` words of the stream (for tests and known-answer checks). */
export function keystream(seed: Uint8Array, nonce: Uint8Array, length: number): Uint32Array {
  const v = new Uint32Array(length);
  addMask(v, seed, nonce, 1);
  return v;
}
