/**
 * Known-answer vectors for the project's own secure-aggregation derivations and wire bytes: any change to
 * a label, a byte order, a nonce, a record layout or the encoding of an update fails here. Each pinned value
 * is also recomputed independently (node:crypto X25519 / HMAC / HKDF / SHA-256 / AES-CTR / ChaCha20-Poly1305, or
 * by hand), so the pins are not merely a snapshot of what the code happens to do. docs/protocol.md is the
 * prose version of this layout.
 *
 * Layout (all strings UTF-8, all integers big-endian unless marked LE, `||` concatenation):
 *   tag                 = "aegisfl/<runId>/<round>.<attempt>"      (set by the server per round attempt)
 *   ss(x, Y)            = X25519(x, Y), 32 bytes
 *   HKDF(ikm, salt, info) = HKDF-SHA256, L = 32: PRK = HMAC(salt, ikm); OKM = HMAC(PRK, info || 0x01)
 *   channelKey u->v     = HKDF(ss(c_u, C_v), salt = tag, info = "aegisfl/secagg/v1/share/<u>-><v>")
 *   maskSeed s_uv       = HKDF(ss(s_u, S_v), salt = tag, info = "aegisfl/secagg/v1/mask/<min>-<max>")
 *   commit_u            = SHA-256("aegisfl/secagg/v1/commit/<tag>/<u>/" || b_u)
 *   prgKey(seed, dom)   = HKDF(seed, salt = empty, info = "aegisfl/secagg/v1/prg/<dom>"), dom = "self" for b_u,
 *                         "pair" for s_uv
 *   PRG(seed, dom)      = AES-256-CTR keystream under prgKey(seed, dom), counter block 0^8 || BE64(block) from
 *                         block 0, read as LE uint32 words
 *   y_u                 = x_u + PRG(b_u, self) + sum_{v<u} PRG(s_uv, pair) - sum_{v>u} PRG(s_uv, pair) mod 2^32
 *   frame(f1, f2, ...)  = len(f1)(4) || f1 || len(f2)(4) || f2 || ...
 *   share signature     = Ed25519 (RFC 8032, key g_u) over frame("aegisfl/secagg/v1/share-sig", tag, kind,
 *                         u(4), v(4), share(33)), kind = "s" (share of s_u) or "b" (share of b_u)
 *   share box u->v      = nonce(12) || ChaCha20-Poly1305(channelKey u->v, nonce, aad = tag,
 *                             u(4) || v(4) || share of s_u (33) || share of b_u (33) || sig s (64) || sig b (64))
 *                         || tag(16)
 *   wire records        = index(4) || payload, concatenated: roster 4+32+32+32 (cPk, sPk, gPk),
 *                         shares/inbox 4+230, reveal 4+33+64 (share, its dealer's signature)
 * (<u>, <v>, <round>... are decimal without leading zeros; <min>-<max> orders the two indices.)
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  sign as nodeSign,
  verify as nodeVerify,
} from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { createSecureRandom } from '../dp/secure-random.ts';
import { shareMessage, signShare, verifyShare } from './consistency.ts';
import { encodeContribution, planEncoding, type EncodingPlan } from '../fl/encoding.ts';
import { channelKey, commitSeed, maskSeed, open, publicKeyOf, seal } from './keys.ts';
import { addMask, keystream, prgKey } from './prg.ts';
import {
  BOX_BYTES,
  packInbox,
  packReveal,
  packRoster,
  packShares,
  unpackInbox,
  unpackReveal,
  unpackRoster,
  unpackShares,
} from './wire.ts';

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const seq = (n: number, start: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (start + i) & 255);

// ---- independent primitives (node:crypto / OpenSSL), used only to cross-check ----
function nodeX25519(secretKey: Uint8Array, peerPublic: Uint8Array): Uint8Array {
  const privateKey = createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), secretKey]),
    format: 'der',
    type: 'pkcs8',
  });
  const publicKey = createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b656e032100', 'hex'), peerPublic]),
    format: 'der',
    type: 'spki',
  });
  return new Uint8Array(diffieHellman({ privateKey, publicKey }));
}
function nodePublicKey(secretKey: Uint8Array): Uint8Array {
  const privateKey = createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), secretKey]),
    format: 'der',
    type: 'pkcs8',
  });
  return new Uint8Array(createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(12));
}
/** HKDF-SHA256 with L = 32 (one block), written out so the layout is visible. */
function nodeHkdf32(ikm: Uint8Array, salt: string, info: string): Uint8Array {
  const prk = createHmac('sha256', Buffer.from(salt, 'utf8')).update(ikm).digest();
  return new Uint8Array(
    createHmac('sha256', prk)
      .update(Buffer.concat([Buffer.from(info, 'utf8'), Buffer.from([1])]))
      .digest(),
  );
}
/** The mask PRG by OpenSSL: AES-256-CTR from the all-zero counter block, under the domain's HKDF key. */
function nodeKeystream(seed: Uint8Array, domain: 'self' | 'pair', bytes: number): Uint8Array {
  const key = nodeHkdf32(seed, '', `aegisfl/secagg/v1/prg/${domain}`);
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return new Uint8Array(c.update(Buffer.alloc(bytes)));
}
function nodeSeal(key: Uint8Array, nonce: Uint8Array, plain: Uint8Array, aad: Uint8Array): Uint8Array {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  c.setAAD(aad, { plaintextLength: plain.length });
  return new Uint8Array(Buffer.concat([nonce, c.update(plain), c.final(), c.getAuthTag()]));
}
function nodeOpen(key: Uint8Array, box: Uint8Array, aad: Uint8Array): Uint8Array {
  const d = createDecipheriv('chacha20-poly1305', key, box.subarray(0, 12), { authTagLength: 16 });
  d.setAAD(aad, { plaintextLength: box.length - 28 });
  d.setAuthTag(box.subarray(box.length - 16));
  return new Uint8Array(Buffer.concat([d.update(box.subarray(12, box.length - 16)), d.final()]));
}
function nodeEd25519Key(seed: Uint8Array) {
  return createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]),
    format: 'der',
    type: 'pkcs8',
  });
}
function nodeEd25519Public(seed: Uint8Array): Uint8Array {
  return new Uint8Array(
    createPublicKey(nodeEd25519Key(seed)).export({ format: 'der', type: 'spki' }).subarray(12),
  );
}
function nodeEd25519Sign(seed: Uint8Array, msg: Uint8Array): Uint8Array {
  return new Uint8Array(nodeSign(null, msg, nodeEd25519Key(seed)));
}
function nodeEd25519Verify(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const key = createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pk]),
    format: 'der',
    type: 'spki',
  });
  return nodeVerify(null, msg, key, sig);
}
/** frame(): each field as u32 big-endian length || bytes. */
const nodeFrame = (...parts: (string | Buffer)[]): Buffer =>
  Buffer.concat(
    parts.flatMap((p) => {
      const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      return [len, b];
    }),
  );
const u32be = (v: number): string => v.toString(16).padStart(8, '0');
const leWords = (b: Uint8Array): number[] => Array.from(new Uint32Array(b.slice().buffer));

// ---- fixtures: fixed secrets of clients 1, 2 and 258 in one round attempt ----
const TAG = 'aegisfl/kat-run/3.1';
const AAD = utf8ToBytes(TAG);
// Channel keys: client 1 and 2 use the RFC 7748 section 6.1 secrets (Alice, Bob).
const C1 = hexToBytes('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
const C2 = hexToBytes('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
const C258 = seq(32, 0x81);
// Mask keys and self-mask seeds.
const S1 = seq(32, 0x01);
const S2 = seq(32, 0x41);
const S258 = seq(32, 0xc1);
const B1 = seq(32, 0xa0);
const B2 = seq(32, 0xe0);
// Per-round Ed25519 signing keys (RFC 8032 32-byte seeds).
const G1 = seq(32, 0x21);
const G258 = seq(32, 0x61);
// Shamir shares inside the box (any 33-byte field elements: the layout is what is pinned here).
const SHARE_S = seq(33, 0x10);
const SHARE_B = seq(33, 0x50);
const NONCE = seq(12, 0xf0);

const KAT = {
  channel12: 'a283267500a8dc406738dccede0d10bbfeb2ecd9887b88d733ff6db0bd5540a9',
  channel21: '72a7b8d8db992133f3f4a90923524a548feac10faf1bd3ed315974c2ab18178d',
  mask12: '8bb27a280641ccfd5732ca5684884b252f444b1caa6e114b65798ef232c8f3e2',
  commit1: 'cb970e7d0276c7f15394aa679b7074b1135f2a446a683556a442a47216493975',
  prgKeySelf1: 'bab9ae1a321a0cf7b91fe3d0d5f88681c861d67c0d0da7b09b6e093699c08017',
  prgKeyPair12: 'd61634a85b7dd8c11816c95d3ae0c93ae3652e8ad5465b36805980d1b8a892a3',
  self8: 'f1fc8209c7a38e120a2198a0216d495d65fc20add869710ee291dcd97c869c0b',
  pair8: 'acc79ab5f05d27678e7e2aefe1e69b1747861ec9f11fc51eefd68512eaf9dce7',
  masked1: '4535e853d84567ab7ea26db14386ad451d7602e4',
  g1: 'e7f162a10bec559afea195e4dce84b69568d5d2cb0963eb446c0685e2b17f2f0',
  g258: '882d0ea3b2864e7a587f3e698cea4459998312e655e05fa5e8b5119d8baac8cd',
  /** frame("aegisfl/secagg/v1/share-sig", tag, "s", 1, 2, SHARE_S): what client 1 signs for client 2. */
  shareMsgS:
    '0000001b' +
    '6165676973666c2f7365636167672f76312f73686172652d736967' + // aegisfl/secagg/v1/share-sig
    '00000013' +
    '6165676973666c2f6b61742d72756e2f332e31' + // the tag
    '00000001' +
    '73' + // "s"
    '00000004' +
    '00000001' +
    '00000004' +
    '00000002' +
    '00000021' +
    '101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30',
  sigS: '8178cc54424259a47677a4c8739329e19d5198c269239c2f708286b421547c2c8eb7df447f9661472d45a1c1c3d8104f5486daf158dc06c7bf6f7c7de251290a',
  sigB: '12bf1129f356a3fa1fbbafb809a39335719f6da9014abc57dae34f8d105beb9d1041c2f395544e90fec7a5e111cd9b8bebb8331db36ff9f8e552bd33634e7802',
  box:
    'f0f1f2f3f4f5f6f7f8f9fafb' + // nonce
    '4c1925260c0a2f49ae02e80ae1565ed62d9a3dc43ebb0701c11b217dd8438f09269abf42ced3b02e19fc17ae91d061' +
    '24407e1842ee4dbcfbd3cfe5f01de4ada59c4a4e4470a69bbc2aec658c132b9e6271109195b172049580dc08a315' +
    'b38d7a7c76335a0b3dfb546702e099f8abcce2a66bf6c67bfbb613ff4caac59d5ed6d537a13f2f60f19eaafa6176' +
    'ea6d118b4333614961ebdadecc31fde9eda4d44cd071d09c751b16dfd5a9289b0a81f60dcb50fbb04e79f7dfcd99' +
    '02474963a3c1a391059d3f923011930614eb' + // ciphertext of the 202-byte plaintext
    'ec3b40362a8dc9ddf678220faef5ab', // Poly1305 tag
  roster:
    '00000001' +
    '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a' +
    '07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c' +
    'e7f162a10bec559afea195e4dce84b69568d5d2cb0963eb446c0685e2b17f2f0' +
    '00000102' +
    '883186b800b41d5cf0429695da9b3cc4f328ebcd184a6e482fa578c103f06c77' +
    '3a553d74792d727efa9b9a4cde3da1ad93f1a2d0c09cb639b1a3c0fda14cbe24' +
    '882d0ea3b2864e7a587f3e698cea4459998312e655e05fa5e8b5119d8baac8cd',
  /**
   * The stochastic rounding of 0.05 under the seeded generator, and the DP vector's words. Stochastic
   * rounding takes one 32-bit word a value (it took a 53-bit float, two words, before 2026-11-27), so
   * these moved then: 1 -> 0, and the DP words by a few units each.
   */
  stochastic: 0,
  dpRing: [537500062, 537709773, 536870914, 536870911, 1073741823, 536870402, 536870912],
};

describe('key derivations (X25519 + HKDF-SHA256, SHA-256 commitments)', () => {
  const c1 = publicKeyOf(C1);
  const c2 = publicKeyOf(C2);

  it('share-channel keys, one per direction, equal on both ends and to an independent HKDF', () => {
    const k12 = channelKey(C1, c2, TAG, 1, 2);
    expect(hex(k12)).toBe(KAT.channel12);
    expect(hex(channelKey(C2, c1, TAG, 1, 2))).toBe(KAT.channel12);
    expect(hex(channelKey(C1, c2, TAG, 2, 1))).toBe(KAT.channel21);
    const ss = nodeX25519(C1, c2);
    expect(hex(nodeHkdf32(ss, TAG, 'aegisfl/secagg/v1/share/1->2'))).toBe(KAT.channel12);
    expect(hex(nodeHkdf32(ss, TAG, 'aegisfl/secagg/v1/share/2->1'))).toBe(KAT.channel21);
    // The written-out HMAC form is HKDF-SHA256 itself.
    expect(hex(new Uint8Array(hkdfSync('sha256', ss, TAG, 'aegisfl/secagg/v1/share/1->2', 32)))).toBe(
      KAT.channel12,
    );
  });

  it('pairwise mask seed s_12 is symmetric and equals an independent HKDF', () => {
    const s1 = publicKeyOf(S1);
    const s2 = publicKeyOf(S2);
    expect(hex(maskSeed(S1, s2, TAG, 1, 2))).toBe(KAT.mask12);
    expect(hex(maskSeed(S2, s1, TAG, 2, 1))).toBe(KAT.mask12);
    expect(hex(nodeHkdf32(nodeX25519(S2, s1), TAG, 'aegisfl/secagg/v1/mask/1-2'))).toBe(KAT.mask12);
  });

  it('self-mask seed commitment = SHA-256(label || tag || index || seed)', () => {
    expect(hex(commitSeed(B1, TAG, 1))).toBe(KAT.commit1);
    const h = createHash('sha256').update(`aegisfl/secagg/v1/commit/${TAG}/1/`, 'utf8').update(B1).digest();
    expect(hex(h)).toBe(KAT.commit1);
  });
});

describe('mask PRG streams (AES-256-CTR under HKDF keys per domain, LE uint32 words)', () => {
  const s12 = hexToBytes(KAT.mask12);

  it('the AES keys are HKDF-SHA256(seed, empty salt, "aegisfl/secagg/v1/prg/self" or ".../pair")', () => {
    expect(hex(prgKey(B1, 'self'))).toBe(KAT.prgKeySelf1);
    expect(hex(prgKey(s12, 'pair'))).toBe(KAT.prgKeyPair12);
    expect(hex(nodeHkdf32(B1, '', 'aegisfl/secagg/v1/prg/self'))).toBe(KAT.prgKeySelf1);
    expect(hex(nodeHkdf32(s12, '', 'aegisfl/secagg/v1/prg/pair'))).toBe(KAT.prgKeyPair12);
  });

  it('self and pairwise streams start with the pinned words, as OpenSSL AES-256-CTR computes them', async () => {
    const self = await keystream(B1, 'self', 8);
    const pair = await keystream(s12, 'pair', 8);
    expect(hex(new Uint8Array(self.buffer))).toBe(KAT.self8);
    expect(hex(new Uint8Array(pair.buffer))).toBe(KAT.pair8);
    expect(hex(nodeKeystream(B1, 'self', 32))).toBe(KAT.self8);
    expect(hex(nodeKeystream(s12, 'pair', 32))).toBe(KAT.pair8);
    // Words are little-endian: the first word is bytes 0..3 reversed.
    expect(self[0]).toBe(parseInt(KAT.self8.slice(0, 8).match(/../g)!.reverse().join(''), 16));
  });

  it('masked input of client 1 (peer 2 > 1: pairwise mask subtracted) and its cancellation with client 2', async () => {
    const x = Uint32Array.from([0, 1, 2, 3, 0xffffffff]);
    const y1 = x.slice();
    await addMask(y1, B1, 'self', 1);
    await addMask(y1, s12, 'pair', -1);
    expect(hex(new Uint8Array(y1.buffer))).toBe(KAT.masked1);
    const self = leWords(nodeKeystream(B1, 'self', 20));
    const pair = leWords(nodeKeystream(s12, 'pair', 20));
    expect(Array.from(y1)).toEqual(Array.from(x, (v, i) => (v + self[i] - pair[i]) >>> 0));
    // Client 2 adds the same pairwise stream; the server strips both self masks: the sum is x1 + x2.
    const y2 = x.slice();
    await addMask(y2, B2, 'self', 1);
    await addMask(y2, s12, 'pair', 1);
    const sum = Uint32Array.from(y1, (v, i) => (v + y2[i]) >>> 0);
    await addMask(sum, B1, 'self', -1);
    await addMask(sum, B2, 'self', -1);
    expect(Array.from(sum)).toEqual(Array.from(x, (v) => (2 * v) >>> 0));
  });
});

describe('dealer share signatures (Ed25519, RFC 8032, strict verification)', () => {
  it('the signing keys are the RFC 8032 public keys of the fixed seeds (as OpenSSL derives them)', () => {
    expect(hex(ed25519.getPublicKey(G1))).toBe(KAT.g1);
    expect(hex(nodeEd25519Public(G1))).toBe(KAT.g1);
    expect(hex(nodeEd25519Public(G258))).toBe(KAT.g258);
  });

  it('the signed message is frame(domain, tag, kind, from, to, share), as built by hand', () => {
    const msg = shareMessage(TAG, 's', 1, 2, SHARE_S);
    expect(hex(msg)).toBe(KAT.shareMsgS);
    const byHand = nodeFrame(
      'aegisfl/secagg/v1/share-sig',
      TAG,
      's',
      Buffer.from(u32be(1), 'hex'),
      Buffer.from(u32be(2), 'hex'),
      Buffer.from(SHARE_S),
    );
    expect(hex(msg)).toBe(byHand.toString('hex'));
    // The b-share message differs only in the kind and the share.
    expect(hex(shareMessage(TAG, 'b', 1, 2, SHARE_B))).toBe(
      nodeFrame(
        'aegisfl/secagg/v1/share-sig',
        TAG,
        'b',
        Buffer.from(u32be(1), 'hex'),
        Buffer.from(u32be(2), 'hex'),
        Buffer.from(SHARE_B),
      ).toString('hex'),
    );
  });

  it('the signatures of client 1 on both shares for client 2 are the pinned ones; OpenSSL signs and verifies the same', () => {
    const sigS = signShare(G1, TAG, 's', 1, 2, SHARE_S);
    const sigB = signShare(G1, TAG, 'b', 1, 2, SHARE_B);
    expect(hex(sigS)).toBe(KAT.sigS);
    expect(hex(sigB)).toBe(KAT.sigB);
    // Ed25519 is deterministic: OpenSSL gives the same bytes for the same seed and message.
    expect(hex(nodeEd25519Sign(G1, shareMessage(TAG, 's', 1, 2, SHARE_S)))).toBe(KAT.sigS);
    expect(hex(nodeEd25519Sign(G1, shareMessage(TAG, 'b', 1, 2, SHARE_B)))).toBe(KAT.sigB);
    const g1 = hexToBytes(KAT.g1);
    expect(nodeEd25519Verify(g1, hexToBytes(KAT.shareMsgS), hexToBytes(KAT.sigS))).toBe(true);
    expect(verifyShare(g1, TAG, 's', 1, 2, SHARE_S, hexToBytes(KAT.sigS))).toBe(true);
    expect(verifyShare(g1, TAG, 'b', 1, 2, SHARE_B, hexToBytes(KAT.sigB))).toBe(true);
    expect(verifyShare(g1, TAG, 'b', 1, 2, SHARE_S, hexToBytes(KAT.sigS))).toBe(false);
  });
});

describe('share box (ChaCha20-Poly1305, aad = round tag)', () => {
  const plain = new Uint8Array([
    ...hexToBytes(u32be(1) + u32be(2)),
    ...SHARE_S,
    ...SHARE_B,
    ...hexToBytes(KAT.sigS),
    ...hexToBytes(KAT.sigB),
  ]);
  const k12 = () => channelKey(C1, publicKeyOf(C2), TAG, 1, 2);

  it('the box from 1 to 2 for fixed nonce and shares is the pinned ciphertext', () => {
    expect(plain.length).toBe(202);
    const box = nodeSeal(k12(), NONCE, plain, AAD);
    expect(box.length).toBe(BOX_BYTES);
    expect(hex(box)).toBe(KAT.box);
  });

  it('client 2 opens the pinned box with the key it derives for 1 -> 2', () => {
    const key = channelKey(C2, publicKeyOf(C1), TAG, 1, 2);
    expect(open(key, hexToBytes(KAT.box), AAD)).toEqual(plain);
    expect(() => open(key, hexToBytes(KAT.box), utf8ToBytes('aegisfl/kat-run/3.2'))).toThrow();
  });

  it('seal() writes nonce || ciphertext || tag (OpenSSL opens it)', () => {
    const box = seal(k12(), plain, AAD);
    expect(box.length).toBe(BOX_BYTES);
    expect(nodeOpen(k12(), box, AAD)).toEqual(plain);
  });
});

describe('wire bytes of each secure-aggregation message', () => {
  const box = hexToBytes(KAT.box);

  it('roster: index(4, BE) || cPk(32) || sPk(32) || gPk(32) per peer', () => {
    const roster = {
      peers: [
        { index: 1, cPk: publicKeyOf(C1), sPk: publicKeyOf(S1), gPk: ed25519.getPublicKey(G1) },
        { index: 258, cPk: publicKeyOf(C258), sPk: publicKeyOf(S258), gPk: ed25519.getPublicKey(G258) },
      ],
    };
    const w = packRoster(roster);
    expect(hex(w.peers)).toBe(KAT.roster);
    expect(unpackRoster({ peers: hexToBytes(KAT.roster) }, 2)).toEqual(roster);
    // Every key from OpenSSL, in record order, with the big-endian indices 1 and 258 in front.
    const keys = (c: Uint8Array, s: Uint8Array, g: Uint8Array): string =>
      hex(nodePublicKey(c)) + hex(nodePublicKey(s)) + hex(nodeEd25519Public(g));
    expect(KAT.roster).toBe(u32be(1) + keys(C1, S1, G1) + u32be(258) + keys(C258, S258, G258));
  });

  it('shares: commit(32) beside index "to"(4) || box(230) per neighbour', () => {
    const w = packShares({ commit: hexToBytes(KAT.commit1), shares: [{ to: 2, ct: box }] });
    expect(hex(w.commit)).toBe(KAT.commit1);
    expect(hex(w.shares)).toBe('00000002' + KAT.box);
    expect(unpackShares(w, 1).shares[0]).toEqual({ to: 2, ct: box });
  });

  it('inbox: index "from"(4) || box(230) per neighbour', () => {
    const w = packInbox({ shares: [{ from: 1, ct: box }] });
    expect(hex(w.shares)).toBe('00000001' + KAT.box);
    expect(unpackInbox(w, 1)).toEqual({ shares: [{ from: 1, ct: box }] });
  });

  it('reveal: index "of"(4) || share(33) || its dealer\'s signature(64), b-shares and s-shares in separate blobs', () => {
    const r = {
      b: [{ of: 1, share: SHARE_B, sig: hexToBytes(KAT.sigB) }],
      s: [{ of: 258, share: SHARE_S, sig: hexToBytes(KAT.sigS) }],
    };
    const w = packReveal(r);
    expect(hex(w.b)).toBe(
      '00000001' + '505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f70' + KAT.sigB,
    );
    expect(hex(w.s)).toBe(
      '00000102' + '101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30' + KAT.sigS,
    );
    expect(unpackReveal(w, 1)).toEqual(r);
  });
});

describe('update encoding: ring vector of a tiny plan with seeded randomness', () => {
  // Every field set here, so the vectors do not depend on planEncoding's choice of scale.
  const noDp: EncodingPlan = {
    ...planEncoding({
      numParams: 4,
      maxClients: 2,
      clipNorm: null,
      coordClip: 1,
      weighting: 'examples',
      maxExamples: 100,
      noise: null,
    }),
    bits: 31,
    scale: 1000,
    weightScale: 2 ** 30 - 1,
    bitScale: 1024,
    clipNorm: null,
    coordClip: 1,
    weighting: 'examples',
    maxExamples: 100,
    noiseVariance: 0,
    bitNoiseVariance: 0,
    sendIndicator: false,
    lossScale: 2 ** 16,
  };
  const OFF = 2 ** 30;

  it('layout [params][weight][indicator][loss], offset 2^(bits-1); hand-computed values', () => {
    const rand = createSecureRandom(new Uint8Array(32).fill(7));
    const c = encodeContribution(Float32Array.from([0.5, -0.25, 1.5, 0.0001]), 50, noDp, rand, 0.75);
    // u = 50 / 100; params = round(clip(x, 1) * scale * u); 0.0001 * 500 = 0.05 rounds stochastically.
    expect(Array.from(c.ring)).toEqual([
      OFF + 250,
      OFF - 125,
      OFF + 500,
      OFF + KAT.stochastic,
      OFF + Math.round(0.5 * (2 ** 30 - 1)), // weight u * weightScale
      OFF, // no adaptive clipping: neutral indicator
      OFF + 0.75 * 2 ** 16, // loss in fixed point
    ]);
  });

  it('DP with adaptive clipping: L2 clip, Skellam noise, noised indicator, no loss (pinned words)', () => {
    const dp: EncodingPlan = {
      ...noDp,
      bits: 30,
      scale: 2 ** 20,
      weightScale: 2 ** 29 - 1,
      clipNorm: 1,
      weighting: 'uniform',
      maxExamples: 1,
      noiseVariance: 16,
      bitNoiseVariance: 4,
      sendIndicator: true,
      lossScale: 0,
    };
    const rand = createSecureRandom(new Uint8Array(32).fill(7));
    const c = encodeContribution(Float32Array.from([3, 4, 0, 0]), 999, dp, rand, 0.75);
    expect(c.norm).toBe(5);
    expect(c.indicator).toBe(-0.5);
    const off = 2 ** 29;
    expect(Array.from(c.ring)).toEqual(KAT.dpRing);
    // Hand-checkable parts: weight exactly 1, loss neutral; the rest is 0.6 / 0.8 * 2^20 and -512 plus noise.
    expect(c.ring[4]).toBe(off + 2 ** 29 - 1);
    expect(c.ring[6]).toBe(off);
    expect(Math.abs(c.ring[0] - off - 0.6 * 2 ** 20)).toBeLessThan(1 + 8 * 4);
    expect(Math.abs(c.ring[1] - off - 0.8 * 2 ** 20)).toBeLessThan(1 + 8 * 4);
    expect(Math.abs(c.ring[5] - off + 512)).toBeLessThan(8 * 2);
  });
});
