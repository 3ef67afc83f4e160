import { chacha20 } from '@noble/ciphers/chacha.js';
import { describe, expect, it } from 'vitest';
import { addMask, keystream, NONCE_PAIR, NONCE_SELF } from './prg.ts';

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

describe('mask PRG (ChaCha20 keystream)', () => {
  it('matches RFC 8439 A.1 test vector #1 (zero key, zero nonce, counter 0)', () => {
    const ks = keystream(new Uint8Array(32), new Uint8Array(12), 16);
    expect(hex(new Uint8Array(ks.buffer))).toBe(
      '76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7' +
        'da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586',
    );
  });

  it('chunked generation equals one long keystream (across the 64 KiB chunk boundary)', () => {
    const seed = Uint8Array.from({ length: 32 }, (_, i) => i * 7);
    const n = 40_003;
    const whole = chacha20(seed, NONCE_PAIR, new Uint8Array(n * 4));
    expect(new Uint8Array(keystream(seed, NONCE_PAIR, n).buffer)).toEqual(whole);
  });

  it('adding then subtracting a mask restores the vector; self and pair nonces give different streams', () => {
    const seed = new Uint8Array(32).fill(9);
    const v = Uint32Array.from({ length: 1000 }, (_, i) => i * 2654435761);
    const orig = v.slice();
    addMask(v, seed, NONCE_SELF, 1);
    expect(v).not.toEqual(orig);
    addMask(v, seed, NONCE_SELF, -1);
    expect(v).toEqual(orig);
    expect(keystream(seed, NONCE_SELF, 8)).not.toEqual(keystream(seed, NONCE_PAIR, 8));
  });

  it('refuses a seed that is not 32 bytes', () => {
    expect(() => addMask(new Uint32Array(4), new Uint8Array(16), NONCE_SELF, 1)).toThrow(/32 bytes/);
  });
});
