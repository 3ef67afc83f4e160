import { chacha20 } from '@noble/ciphers/chacha.js';
import { randomBytes } from '@noble/hashes/utils.js';

/**
 * Cryptographically secure uniform numbers for DP noise and stochastic rounding: a ChaCha20 keystream
 * keyed from the platform CSPRNG (crypto.getRandomValues), re-keyed every 2^30 bytes. Never Math.random.
 */
export interface SecureRandom {
  /** Uniform in [0, 1) with 53 random bits. */
  float(): number;
  /** Uniform 32-bit word in [0, 2^32): half the keystream of float(), where 32 bits are enough. */
  uint32(): number;
}

const BUF_BYTES = 65536;

export function createSecureRandom(seed: Uint8Array = randomBytes(32)): SecureRandom {
  if (seed.length !== 32) throw new RangeError('seed must be 32 bytes');
  let key = seed.slice();
  const nonce = new Uint8Array(12);
  const zero = new Uint8Array(BUF_BYTES);
  const bytes = new Uint8Array(BUF_BYTES);
  const words = new Uint32Array(bytes.buffer);
  let counter = 0;
  let pos = words.length;
  const refill = (): void => {
    if (counter >= 2 ** 24) {
      key = chacha20(key, new Uint8Array(12).fill(0xff), new Uint8Array(32)); // fresh key, old one forgotten
      counter = 0;
    }
    chacha20(key, nonce, zero, bytes, counter);
    counter += BUF_BYTES / 64;
    pos = 0;
  };
  return {
    float(): number {
      if (pos + 2 > words.length) refill();
      const hi = words[pos++] >>> 5; // 27 bits
      const lo = words[pos++] >>> 6; // 26 bits
      return (hi * 67108864 + lo) / 9007199254740992;
    },
    uint32(): number {
      if (pos >= words.length) refill();
      return words[pos++];
    },
  };
}
