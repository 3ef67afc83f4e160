import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { hexToBytes, randomBytes, utf8ToBytes } from '@noble/hashes/utils.js';

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

/** What is wrong with a peer's X25519 public key. */
export type KeyProblem = 'wrong_length' | 'low_order' | 'non_canonical';

const P25519 = 2n ** 255n - 19n;
const A24 = 121665n; // (486662 - 2) / 4, as in the RFC 7748 ladder

/**
 * libsodium's small-order blacklist (has_small_order in
 * src/libsodium/crypto_scalarmult/curve25519/ref10/x25519_ref10.c), u little-endian, bit 255 ignored:
 * 0, 1, the two points of order 8, p - 1, and the non-canonical p (= 0) and p + 1 (= 1).
 */
const LOW_ORDER_U = new Set([
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
]);

const toHex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

/**
 * X25519 of u with the fixed scalar 8 (three x-only doublings, the ladder's doubling step) is all-zero
 * exactly when u's point has order dividing 8, on the curve or its twist: every clamped secret is a
 * multiple of 8, so such a key forces the all-zero shared secret RFC 7748 section 6.1 says to refuse.
 * This backs up the list above whatever the encoding, at the cost of a few multiplications.
 */
export function eightTimesIsZero(u: bigint): boolean {
  const m = (a: bigint): bigint => ((a % P25519) + P25519) % P25519;
  let x = m(u);
  let z = 1n;
  for (let i = 0; i < 3; i++) {
    const aa = m((x + z) * (x + z));
    const bb = m((x - z) * (x - z));
    const e = m(aa - bb);
    x = m(aa * bb);
    z = m(e * (aa + A24 * e));
  }
  return x === 0n || z === 0n; // the ladder returns x * z^(p-2): zero when either is
}

/**
 * Checks a peer's X25519 public key before anyone agrees a key with it; null when it is fine.
 * Refuses small-order points (every shared secret with them is all-zero, so a neighbour's key agreement
 * fails or its masks become public) in any encoding, and non-canonical encodings (bit 255 set, or
 * u >= p), which honest clients never send and which would give one key two spellings.
 */
export function checkPublicKey(pk: Uint8Array): KeyProblem | null {
  if (!(pk instanceof Uint8Array) || pk.length !== KEY_BYTES) return 'wrong_length';
  const masked = pk.slice();
  masked[KEY_BYTES - 1] &= 0x7f;
  let u = 0n;
  for (let i = KEY_BYTES - 1; i >= 0; i--) u = (u << 8n) | BigInt(masked[i]);
  if (LOW_ORDER_U.has(toHex(masked)) || eightTimesIsZero(u)) return 'low_order';
  if (pk[KEY_BYTES - 1] & 0x80 || u >= P25519) return 'non_canonical';
  return null;
}

/** X25519; throws on a low-order peer key (noble refuses the all-zero shared secret). */
export function agree(secretKey: Uint8Array, peerPublicKey: Uint8Array): Uint8Array {
  if (peerPublicKey.length !== KEY_BYTES) throw new RangeError(`public key must be ${KEY_BYTES} bytes`);
  return x25519.getSharedSecret(secretKey, peerPublicKey);
}

/**
 * X25519 through WebCrypto where the platform has it (Node 20, Chrome 133+, Firefox 130+, Safari 17+):
 * ~20x noble's speed here, and in Node on the thread pool, beside the JavaScript thread. Same function:
 * RFC 7748 X25519 with the secret clamped; both refuse the all-zero result of a low-order peer key. The
 * platform is trusted only after it reproduces RFC 7748 section 6.1's vector; otherwise noble does it.
 */
interface X25519Subtle {
  importKey(
    format: 'raw' | 'pkcs8',
    keyData: Uint8Array,
    algorithm: { name: 'X25519' },
    extractable: boolean,
    usages: string[],
  ): Promise<unknown>;
  deriveBits(algorithm: { name: 'X25519'; public: unknown }, key: unknown, length: 256): Promise<ArrayBuffer>;
}

// PKCS#8 PrivateKeyInfo for an X25519 key (RFC 8410): version 0, OID 1.3.101.110, OCTET STRING(32 bytes).
const PKCS8_X25519 = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
]);
/** The base point, u = 9: X25519(k, 9) is k's public key. */
const BASE_U = Uint8Array.from({ length: KEY_BYTES }, (_, i) => (i === 0 ? 9 : 0));
/** RFC 7748 section 6.1: Alice's secret, Bob's public key, their shared secret. */
const RFC7748_ALICE_SK = hexToBytes('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
const RFC7748_BOB_PK = hexToBytes('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
const RFC7748_K = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

let native: Promise<X25519Subtle | null> | undefined;
let nobleOnly = false;

async function probeNative(): Promise<X25519Subtle | null> {
  const s = (globalThis as { crypto?: { subtle?: X25519Subtle } }).crypto?.subtle;
  if (!s) return null;
  try {
    const [k] = await agreeWith(s, RFC7748_ALICE_SK, [RFC7748_BOB_PK]);
    return toHex(k) === RFC7748_K ? s : null;
  } catch {
    return null; // no X25519 in this WebCrypto
  }
}

async function agreeWith(
  s: X25519Subtle,
  secretKey: Uint8Array,
  peers: readonly Uint8Array[],
): Promise<Uint8Array[]> {
  const pkcs8 = new Uint8Array(PKCS8_X25519.length + KEY_BYTES);
  pkcs8.set(PKCS8_X25519);
  pkcs8.set(secretKey, PKCS8_X25519.length);
  const alg = { name: 'X25519' } as const;
  const sk = await s.importKey('pkcs8', pkcs8, alg, false, ['deriveBits']);
  pkcs8.fill(0);
  return Promise.all(
    peers.map(async (p) => {
      const pk = await s.importKey('raw', p, alg, true, []);
      const k = new Uint8Array(await s.deriveBits({ name: 'X25519', public: pk }, sk, 256));
      // WebCrypto must refuse a low-order key's all-zero secret; older engines (Safari before 2024) did
      // not. Refuse it here too, as noble does, whatever the platform.
      let any = 0;
      for (let i = 0; i < k.length; i++) any |= k[i];
      if (any === 0) throw new Error('X25519: all-zero shared secret (low-order peer key)');
      return k;
    }),
  );
}

/** Which X25519 the batched calls use here: the platform's WebCrypto, or noble where it has none. */
export async function x25519Backend(): Promise<'webcrypto' | 'noble'> {
  return !nobleOnly && (await (native ??= probeNative())) ? 'webcrypto' : 'noble';
}

/** Forces noble for the batched calls (true) or lets WebCrypto back them again: for tests and benchmarks. */
export function useNobleX25519(on: boolean): void {
  nobleOnly = on;
}

/**
 * X25519 of one secret with many peer keys, in parallel through WebCrypto where it passed its check.
 * Throws (rejects) on a key of the wrong length or a low-order one, as agree() does.
 */
export async function agreeMany(secretKey: Uint8Array, peers: readonly Uint8Array[]): Promise<Uint8Array[]> {
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== KEY_BYTES)
    throw new RangeError(`secret key must be ${KEY_BYTES} bytes`);
  for (const p of peers)
    if (!(p instanceof Uint8Array) || p.length !== KEY_BYTES)
      throw new RangeError(`public key must be ${KEY_BYTES} bytes`);
  const s = nobleOnly ? null : await (native ??= probeNative());
  if (!s || peers.length === 0) return peers.map((p) => agree(secretKey, p));
  return agreeWith(s, secretKey, peers);
}

/** The public keys of many secrets (X25519 with the base point), batched like agreeMany. */
export function publicKeysOf(secretKeys: readonly Uint8Array[]): Promise<Uint8Array[]> {
  return Promise.all(secretKeys.map(async (sk) => (await agreeMany(sk, [BASE_U]))[0]));
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
  return deriveKey(agree(sSecret, peerSPublic), roundTag, maskInfo(u, v));
}

/** HKDF info of the pairwise seed of u and v: the lower index first, so both ends derive the same. */
function maskInfo(u: number, v: number): string {
  const [lo, hi] = u < v ? [u, v] : [v, u];
  return `aegisfl/secagg/v1/mask/${lo}-${hi}`;
}

/** maskSeed for many peers of one client at once (agreements batched through agreeMany). */
export async function maskSeeds(
  sSecret: Uint8Array,
  peers: readonly { index: number; sPk: Uint8Array }[],
  roundTag: string,
  u: number,
): Promise<Uint8Array[]> {
  const shared = await agreeMany(
    sSecret,
    peers.map((p) => p.sPk),
  );
  return shared.map((k, i) => deriveKey(k, roundTag, maskInfo(u, peers[i].index)));
}

/** Share-transport key for the direction from -> to (each direction its own key). */
export function channelKey(
  cSecret: Uint8Array,
  peerCPublic: Uint8Array,
  roundTag: string,
  from: number,
  to: number,
): Uint8Array {
  return channelKeyFrom(agree(cSecret, peerCPublic), roundTag, from, to);
}

/** channelKey from the X25519 secret already agreed with the peer (one agreement serves both directions). */
export function channelKeyFrom(shared: Uint8Array, roundTag: string, from: number, to: number): Uint8Array {
  return deriveKey(shared, roundTag, `aegisfl/secagg/v1/share/${from}->${to}`);
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

export { bytesEqual } from '../base/bytes.ts';
