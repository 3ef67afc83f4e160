/**
 * The secure-aggregation hot paths as they were before the WebCrypto PRG (commit 0d5dc66), kept ONLY as
 * the baseline npm run bench:secagg measures side by side with today's path. Not a protocol option: no
 * session can use it, and its masks do not cancel against today's.
 *   - mask PRG: noble ChaCha20 (RFC 8439), key = seed, nonce "self" / "pair" || 0^8, 64 KiB chunks;
 *   - vector sum: one uint32 `>>> 0` addition per element;
 *   - reconstruction: Lagrange weights per holder set (one inversion each), a reduction per product,
 *     and bytes <-> bigint one BigInt operation per byte.
 */
import { chacha20 } from '@noble/ciphers/chacha.js';
import { commitSeed, bytesEqual, maskSeed, publicKeyOf } from '../shared/secagg/keys.ts';
import { FIELD_PRIME, invMod } from '../shared/secagg/field.ts';
import type { Reveal } from '../shared/secagg/types.ts';

const P = FIELD_PRIME;
const CHUNK_WORDS = 16384;
const ZERO = new Uint8Array(CHUNK_WORDS * 4);
export const NONCE_SELF = new Uint8Array([0x73, 0x65, 0x6c, 0x66, 0, 0, 0, 0, 0, 0, 0, 0]);
export const NONCE_PAIR = new Uint8Array([0x70, 0x61, 0x69, 0x72, 0, 0, 0, 0, 0, 0, 0, 0]);

export function addMaskChaCha(target: Uint32Array, seed: Uint8Array, nonce: Uint8Array, sign: 1 | -1): void {
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

export function addIntoScalar(acc: Uint32Array, v: Uint32Array): void {
  for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] + v[i]) >>> 0;
}

function bytesToBigSlow(b: Uint8Array): bigint {
  let v = 0n;
  for (const byte of b) v = (v << 8n) | BigInt(byte);
  return v;
}

function bigToBytesSlow(v: bigint, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

const mod = (a: bigint): bigint => ((a % P) + P) % P;

function batchInvertOld(a: readonly bigint[]): bigint[] {
  const n = a.length;
  const prefix = new Array<bigint>(n);
  let acc = 1n;
  for (let i = 0; i < n; i++) ((prefix[i] = acc), (acc = (acc * mod(a[i])) % P));
  let inv = invMod(acc);
  const out = new Array<bigint>(n);
  for (let i = n - 1; i >= 0; i--) ((out[i] = (inv * prefix[i]) % P), (inv = (inv * mod(a[i])) % P));
  return out;
}

export function lagrangeAtZeroOld(xs: readonly number[]): bigint[] {
  const t = xs.length;
  const bx = xs.map(BigInt);
  const num = new Array<bigint>(t);
  let acc = 1n;
  for (let i = 0; i < t; i++) ((num[i] = acc), (acc = (acc * bx[i]) % P));
  acc = 1n;
  for (let i = t - 1; i >= 0; i--) ((num[i] = (num[i] * acc) % P), (acc = (acc * bx[i]) % P));
  const den = bx.map((xi, i) => {
    let d = 1n;
    for (let j = 0; j < t; j++) if (j !== i) d = (d * mod(bx[j] - xi)) % P;
    return d;
  });
  return batchInvertOld(den).map((inv, i) => (num[i] * inv) % P);
}

/** The old fast path: first t shares, weights cached by holder set, one reduction per product. */
export function reconstructOld(
  shares: readonly { x: number; y: Uint8Array }[],
  t: number,
  cache: Map<string, bigint[]>,
): Uint8Array {
  const first = shares.slice(0, t);
  for (const s of first) if (bytesToBigSlow(s.y) >= P) throw new RangeError('not a field element');
  const key = first.map((s) => s.x).join(',');
  let w = cache.get(key);
  if (!w) cache.set(key, (w = lagrangeAtZeroOld(first.map((s) => s.x))));
  let acc = 0n;
  for (let i = 0; i < t; i++) acc = (acc + bytesToBigSlow(first[i].y) * w[i]) % P;
  return bigToBytesSlow(acc, 32);
}

export interface UnmaskInput {
  tag: string;
  t: number;
  /** neighbours[u - 1]: u's neighbours (1-based). */
  neighbours: number[][];
  survivors: readonly number[];
  dropped: readonly number[];
  commits: ReadonlyMap<number, Uint8Array>;
  sPks: ReadonlyMap<number, Uint8Array>;
  reveals: ReadonlyMap<number, Reveal>;
}

/** The old server unmasking of an honest round (fast path only): rebuild, check, strip with ChaCha20. */
export function unmaskOld(sum: Uint32Array, r: UnmaskInput): void {
  const cache = new Map<string, bigint[]>();
  const sharesOf = (of: number, kind: 'b' | 's') => {
    const out: { x: number; y: Uint8Array }[] = [];
    for (const [holder, rv] of r.reveals) {
      const e = rv[kind].find((x) => x.of === of);
      if (e) out.push({ x: holder, y: e.share });
    }
    return out.sort((a, b) => a.x - b.x);
  };
  const seeds: Uint8Array[] = [];
  for (const u of r.survivors) {
    const seed = reconstructOld(sharesOf(u, 'b'), r.t, cache);
    if (!bytesEqual(commitSeed(seed, r.tag, u), r.commits.get(u)!)) throw new Error(`b_${u} does not check`);
    seeds.push(seed);
  }
  const inU3 = new Set(r.survivors);
  const pairwise: { seed: Uint8Array; sign: 1 | -1 }[] = [];
  for (const d of r.dropped) {
    const sk = reconstructOld(sharesOf(d, 's'), r.t, cache);
    if (!bytesEqual(publicKeyOf(sk), r.sPks.get(d)!)) throw new Error(`s_${d} does not check`);
    for (const v of r.neighbours[d - 1])
      if (inU3.has(v))
        pairwise.push({ seed: maskSeed(sk, r.sPks.get(v)!, r.tag, d, v), sign: v > d ? -1 : 1 });
  }
  for (const seed of seeds) addMaskChaCha(sum, seed, NONCE_SELF, -1);
  for (const { seed, sign } of pairwise) addMaskChaCha(sum, seed, NONCE_PAIR, sign);
}

/** The old client masking: y = x + PRG(b) +/- PRG(s_uv) for k peers, each seed from an X25519 agreement. */
export function maskOld(
  x: Uint32Array,
  self: Uint8Array,
  sSecret: Uint8Array,
  peers: readonly { index: number; sPk: Uint8Array }[],
  tag: string,
  index: number,
): Uint32Array {
  const y = x.slice();
  addMaskChaCha(y, self, NONCE_SELF, 1);
  for (const p of peers)
    addMaskChaCha(y, maskSeed(sSecret, p.sPk, tag, index, p.index), NONCE_PAIR, index > p.index ? 1 : -1);
  return y;
}
