import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { WordSum } from './words.ts';

/**
 * The mask PRG: AES-256-CTR through WebCrypto (crypto.subtle, native in browsers and in Node 20), so a
 * 1M-word mask costs a few milliseconds instead of a pure-JS cipher's tens.
 *
 * Specification (docs/protocol.md, "Mask PRG"; pinned by kat.test.ts):
 *   domain    = "self" for the self-mask seed b_u, "pair" for a pairwise seed s_uv
 *   key       = HKDF-SHA256(ikm = seed (32 bytes), salt = empty, info = "aegisfl/secagg/v1/prg/<domain>", L = 32)
 *   block_j   = AES-256(key, 0^8 || BE64(j)), j = 0, 1, 2, ...  (the CTR counter block: 64-bit nonce of
 *               zeros, 64-bit big-endian block counter: WebCrypto's { counter, length: 64 })
 *   stream    = block_0 || block_1 || ...;  word i = stream bytes 4i..4i+3 read little-endian (uint32)
 *   mask      : target[i] += sign * word[i] (mod 2^32), sign = +1 or -1
 * The two info strings give self and pairwise masks unrelated keys even for equal seeds (domain
 * separation). A vector is at most 2^32 words = 2^30 blocks, so the 64-bit counter never wraps.
 *
 * The stream is made in chunks of CHUNK_BYTES (chunk c starts at block c * CHUNK_BYTES / 16), a few
 * chunks in flight at once so the cipher runs beside the additions; each result is added with wasm SIMD
 * (words.ts; an Int32Array loop where wasm is unavailable).
 */
export type MaskDomain = 'self' | 'pair';

/** One mask to add: the seed, its domain, and whether it is added (+1) or subtracted (-1). */
export interface MaskTerm {
  seed: Uint8Array;
  domain: MaskDomain;
  sign: 1 | -1;
}

export const SEED_BYTES = 32;
/** 1 MiB of keystream per WebCrypto call: large enough that the call's fixed cost is small. */
export const CHUNK_BYTES = 1 << 20;
const CHUNK_WORDS = CHUNK_BYTES / 4;
const BLOCKS_PER_CHUNK = CHUNK_BYTES / 16;
/** Keystream chunks in flight at once (CHUNK_BYTES each). */
const IN_FLIGHT = 4;
const ZERO = new Uint8Array(CHUNK_BYTES);

const INFO: Record<MaskDomain, Uint8Array> = {
  self: utf8ToBytes('aegisfl/secagg/v1/prg/self'),
  pair: utf8ToBytes('aegisfl/secagg/v1/prg/pair'),
};

// Words are read in the platform's byte order; the stream is specified little-endian.
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The part of WebCrypto this module uses (shared/ compiles without the DOM typings). */
interface AesCtrSubtle {
  importKey(
    format: 'raw',
    keyData: Uint8Array,
    algorithm: 'AES-CTR',
    extractable: false,
    usages: ['encrypt'],
  ): Promise<unknown>;
  encrypt(
    algorithm: { name: 'AES-CTR'; counter: Uint8Array; length: number },
    key: unknown,
    data: Uint8Array,
  ): Promise<ArrayBuffer>;
}

function subtle(): AesCtrSubtle {
  const s = (globalThis as { crypto?: { subtle?: AesCtrSubtle } }).crypto?.subtle;
  if (!s)
    throw new Error('the mask PRG needs WebCrypto (crypto.subtle): a secure context (https or localhost)');
  return s;
}

function checkSeed(seed: Uint8Array): void {
  if (!(seed instanceof Uint8Array) || seed.length !== SEED_BYTES)
    throw new RangeError(`PRG seed must be ${SEED_BYTES} bytes, got ${seed?.length}`);
}

function checkDomain(domain: MaskDomain): void {
  if (domain !== 'self' && domain !== 'pair') throw new RangeError(`unknown mask domain ${String(domain)}`);
}

/** The AES-256 key of one seed in one domain (exported for the known-answer tests). */
export function prgKey(seed: Uint8Array, domain: MaskDomain): Uint8Array {
  checkSeed(seed);
  checkDomain(domain);
  return hkdf(sha256, seed, new Uint8Array(0), INFO[domain], 32);
}

/** The initial counter block of a chunk: 0^8 || BE64(first block). */
export function counterBlock(block: number): Uint8Array {
  if (!Number.isSafeInteger(block) || block < 0) throw new RangeError(`bad counter block ${block}`);
  const c = new Uint8Array(16);
  const v = new DataView(c.buffer);
  v.setUint32(8, Math.floor(block / 2 ** 32), false);
  v.setUint32(12, block >>> 0, false);
  return c;
}

/**
 * A source of AES-256-CTR keystream: given an AES key, a function that returns `bytes` of its stream from
 * counter block `block` (0^8 || BE64(block)). WebCrypto by default; a platform may pass a faster one of
 * the same cipher (the server's worker threads use node:crypto, which needs no thread hop or input copy).
 */
export type KeystreamSource = (
  key: Uint8Array,
) => (block: number, bytes: number) => Promise<ArrayBuffer | Uint8Array> | ArrayBuffer | Uint8Array;

/** Int32 words of a keystream chunk, without a copy when the bytes are 4-aligned (they always are here). */
function wordsOf(ks: ArrayBuffer | Uint8Array, words: number): Int32Array {
  if (ks.byteLength < words * 4) throw new RangeError('keystream source returned too few bytes');
  if (ks instanceof ArrayBuffer) return new Int32Array(ks, 0, words);
  return ks.byteOffset % 4 === 0
    ? new Int32Array(ks.buffer, ks.byteOffset, words)
    : new Int32Array(ks.slice(0, words * 4).buffer);
}

/** The default source: crypto.subtle's AES-CTR, the key imported once per term. */
export const webCryptoKeystream: KeystreamSource = (raw) => {
  const s = subtle();
  let key: Promise<unknown> | undefined;
  return async (block, bytes) => {
    key ??= s.importKey('raw', raw, 'AES-CTR', false, ['encrypt']);
    const algorithm = { name: 'AES-CTR' as const, counter: counterBlock(block), length: 64 };
    return s.encrypt(algorithm, await key, ZERO.subarray(0, bytes));
  };
};

/**
 * target[i] += sum over terms of sign * PRG(seed, domain)[from + i] (mod 2^32): target holds words
 * from .. from + target.length - 1 of the vector (all of it when from = 0; a slice when the work is split
 * between threads; `from` a multiple of 4, a whole AES block). All inputs are checked before any word
 * changes; the masks are summed apart (words.ts, wasm SIMD where it runs) and the target is written once
 * at the end, so a WebCrypto failure midway leaves it unchanged. The target must not change meanwhile
 * (two calls at once on one vector would keep only the last one's masks).
 */
export async function addMasks(
  target: Uint32Array,
  terms: readonly MaskTerm[],
  from = 0,
  source: KeystreamSource = webCryptoKeystream,
): Promise<void> {
  if (!(target instanceof Uint32Array)) throw new TypeError('mask target must be a Uint32Array');
  if (!Number.isSafeInteger(from) || from < 0 || from % 4 !== 0 || from + target.length > 2 ** 32)
    throw new RangeError(`mask slice must start at a multiple of 4 words within 2^32, got ${from}`);
  if (!LITTLE_ENDIAN) throw new Error('the mask PRG reads little-endian words; this platform is big-endian');
  for (const t of terms) {
    if (t.sign !== 1 && t.sign !== -1) throw new RangeError(`mask sign must be 1 or -1, got ${t.sign}`);
  }
  const keys = terms.map((t) => prgKey(t.seed, t.domain));
  const length = target.length;
  if (length === 0 || terms.length === 0) return;
  const acc = new WordSum(length, target, CHUNK_WORDS);
  const chunks = Math.ceil(length / CHUNK_WORDS);
  const streams = new Array<ReturnType<KeystreamSource> | undefined>(terms.length);
  const jobs = terms.length * chunks;
  let next = 0;
  let failed = false;
  // A few workers, each taking the next (term, chunk) job: the cipher works while the adds run.
  const worker = async (): Promise<void> => {
    while (next < jobs && !failed) {
      const job = next++;
      const ti = Math.floor(job / chunks);
      const c = job % chunks;
      const off = c * CHUNK_WORDS;
      const words = Math.min(CHUNK_WORDS, length - off);
      let ks: Int32Array;
      try {
        const stream = (streams[ti] ??= source(keys[ti]));
        ks = wordsOf(await stream(from / 4 + c * BLOCKS_PER_CHUNK, words * 4), words);
      } catch (e) {
        failed = true; // the other workers stop at their next job
        throw e;
      }
      if (failed) return;
      acc.add(ks, terms[ti].sign, off);
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, jobs) }, worker));
  acc.copyTo(target);
}

/** target[i] += sign * PRG(seed, domain)[i] (mod 2^32). */
export function addMask(
  target: Uint32Array,
  seed: Uint8Array,
  domain: MaskDomain,
  sign: 1 | -1,
): Promise<void> {
  return addMasks(target, [{ seed, domain, sign }]);
}

/** The first `length` words of the stream (for tests and known-answer checks). */
export async function keystream(seed: Uint8Array, domain: MaskDomain, length: number): Promise<Uint32Array> {
  if (!Number.isInteger(length) || length < 0) throw new RangeError(`bad keystream length ${length}`);
  const v = new Uint32Array(length);
  await addMask(v, seed, domain, 1);
  return v;
}
