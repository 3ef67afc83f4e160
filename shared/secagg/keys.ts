import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { randomBytes, utf8ToBytes } from '@noble/hashes/utils.js';

/** X25519 key pairs, HKDF-SHA256 key derivation and ChaCha20-Poly1305 for the secure-aggregation layer. */
export interface KeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

export const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export function generateKeyPair(): KeyPair {
  const secretKey = x25519.utils.randomSecretKey();
  return { secretKey, publicKey: x25519.getPublicKey(secretKey) };
}

export function publicKeyOf(secretKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(secretKey);
}

/** X25519; throws on a low-order peer key (noble refuses the all-zero shared secret). */
export function agree(secretKey: Uint8Array, peerPublicKey: Uint8Array): Uint8Array {
  if (peerPublicKey.length !== KEY_BYTES) throw new RangeError(`public key must be ${KEY_BYTES} bytes`);
  return x25519.getSharedSecret(secretKey, peerPublicKey);
}

/** HKDF-SHA256 with the round tag as salt, so keys never carry over between rounds. */
export function deriveKey(sharedSecret: Uint8Array, roundTag: string, info: string): Uint8Array {
  return hkdf(sha256, sharedSecret, utf8ToBytes(roundTag), utf8ToBytes(info), 32);
}

/** Pairwise mask seed s_uv; symmetric in u and v. */
export function maskSeed(
  sSecret: Uint8Array,
  peerSPublic: Uint8Array,
  roundTag: string,
  u: number,
  v: number,
): Uint8Array {
  const [lo, hi] = u < v ? [u, v] : [v, u];
  return deriveKey(agree(sSecret, peerSPublic), roundTag, `aegisfl/secagg/v1/mask/${lo}-${hi}`);
}

/** Share-transport key for the direction from -> to (each direction its own key). */
export function channelKey(
  cSecret: Uint8Array,
  peerCPublic: Uint8Array,
  roundTag: string,
  from: number,
  to: number,
): Uint8Array {
  return deriveKey(agree(cSecret, peerCPublic), roundTag, `aegisfl/secagg/v1/share/${from}->${to}`);
}

/** nonce || ciphertext || tag, with `aad` authenticated but not sent. */
export function seal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const nonce = randomBytes(NONCE_BYTES);
  const ct = chacha20poly1305(key, nonce, aad).encrypt(plaintext);
  const out = new Uint8Array(NONCE_BYTES + ct.length);
  out.set(nonce);
  out.set(ct, NONCE_BYTES);
  return out;
}

/** Throws when the box was altered, sealed under another key, or bound to other associated data. */
export function open(key: Uint8Array, box: Uint8Array, aad: Uint8Array): Uint8Array {
  if (box.length < NONCE_BYTES + TAG_BYTES) throw new RangeError('ciphertext too short');
  return chacha20poly1305(key, box.subarray(0, NONCE_BYTES), aad).decrypt(box.subarray(NONCE_BYTES));
}

/** Commitment to a self-mask seed, checked after reconstruction: H(tag || index || seed). */
export function commitSeed(seed: Uint8Array, roundTag: string, index: number): Uint8Array {
  const head = utf8ToBytes(`aegisfl/secagg/v1/commit/${roundTag}/${index}/`);
  const m = new Uint8Array(head.length + seed.length);
  m.set(head);
  m.set(seed, head.length);
  return sha256(m);
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}
