import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import {
  attest,
  checkKeyAuth,
  checkSigningKey,
  countSurvivorSignatures,
  generateSigningKeyPair,
  shareMessage,
  signShare,
  signRoundKeys,
  signSurvivors,
  survivorsMessage,
  verifyAttestation,
  verifyRoundKeys,
  verifyShare,
} from './consistency.ts';

describe('Ed25519 as used here', () => {
  it('matches RFC 8032 section 7.1, TEST 1 and TEST 2', () => {
    const sk1 = hexToBytes('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
    expect(bytesToHex(ed25519.getPublicKey(sk1))).toBe(
      'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    );
    expect(bytesToHex(ed25519.sign(new Uint8Array(0), sk1))).toBe(
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
    const sk2 = hexToBytes('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb');
    expect(bytesToHex(ed25519.sign(hexToBytes('72'), sk2))).toBe(
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
    );
  });
});

describe('attestations and round keys', () => {
  const site = generateSigningKeyPair();
  const id = generateSigningKeyPair();
  const cPk = new Uint8Array(32).fill(1);
  const sPk = new Uint8Array(32).fill(2);
  const gPk = generateSigningKeyPair().publicKey;

  it('a site attestation verifies under that site key only', () => {
    const a = attest(site.secretKey, id.publicKey);
    expect(verifyAttestation(site.publicKey, id.publicKey, a)).toBe(true);
    expect(verifyAttestation(generateSigningKeyPair().publicKey, id.publicKey, a)).toBe(false);
    expect(verifyAttestation(site.publicKey, generateSigningKeyPair().publicKey, a)).toBe(false);
    expect(verifyAttestation(site.publicKey, id.publicKey, a.subarray(0, 63))).toBe(false);
  });

  it('round keys are bound to tag, index and all three keys', () => {
    const sig = signRoundKeys(id.secretKey, 'r1', 3, cPk, sPk, gPk);
    expect(verifyRoundKeys(id.publicKey, 'r1', 3, cPk, sPk, gPk, sig)).toBe(true);
    expect(verifyRoundKeys(id.publicKey, 'r2', 3, cPk, sPk, gPk, sig)).toBe(false);
    expect(verifyRoundKeys(id.publicKey, 'r1', 4, cPk, sPk, gPk, sig)).toBe(false);
    expect(verifyRoundKeys(id.publicKey, 'r1', 3, sPk, cPk, gPk, sig)).toBe(false); // swapped keys
    expect(verifyRoundKeys(id.publicKey, 'r1', 3, cPk, sPk, cPk, sig)).toBe(false); // another gPk
    expect(verifyRoundKeys(generateSigningKeyPair().publicKey, 'r1', 3, cPk, sPk, gPk, sig)).toBe(false);
    expect(verifyRoundKeys(id.publicKey, 'r1', 2 ** 32, cPk, sPk, gPk, sig)).toBe(false); // never throws
  });

  it('checkKeyAuth: attested identity, keys signed for this round and index, usable identity key', () => {
    const keys = { cPk, sPk, gPk };
    const auth = {
      idPk: id.publicKey,
      attestation: attest(site.secretKey, id.publicKey),
      keysSig: signRoundKeys(id.secretKey, 'r1', 3, cPk, sPk, gPk),
    };
    expect(checkKeyAuth(site.publicKey, 'r1', 3, keys, auth)).toBeNull();
    expect(checkKeyAuth(generateSigningKeyPair().publicKey, 'r1', 3, keys, auth)).toBe('not_attested');
    expect(checkKeyAuth(site.publicKey, 'r1', 4, keys, auth)).toBe('bad_keys_signature');
    expect(checkKeyAuth(site.publicKey, 'r1', 3, { ...keys, sPk: cPk }, auth)).toBe('bad_keys_signature');
    // An identity the site never attested is refused, even though it signed the keys itself.
    const other = generateSigningKeyPair();
    const swapped = {
      ...auth,
      idPk: other.publicKey,
      keysSig: signRoundKeys(other.secretKey, 'r1', 3, cPk, sPk, gPk),
    };
    expect(checkKeyAuth(site.publicKey, 'r1', 3, keys, swapped)).toBe('not_attested');
    const small = new Uint8Array(32);
    small[0] = 1;
    expect(checkKeyAuth(site.publicKey, 'r1', 3, keys, { ...auth, idPk: small })).toBe('bad_identity');
  });

  it('no signature crosses domains: an attestation is not a survivor signature', () => {
    const sig = attest(id.secretKey, id.publicKey);
    const keys = new Map([[1, id.publicKey]]);
    expect(countSurvivorSignatures('r', [1], [{ index: 1, sig }], keys).valid).toEqual([]);
  });
});

describe('survivor-set signatures (R3)', () => {
  const ids = Array.from({ length: 6 }, () => generateSigningKeyPair());
  const keys = new Map(ids.map((k, i) => [i + 1, k.publicKey]));

  it('counts valid signatures over exactly the set, once per signer, survivors only', () => {
    const set = [1, 2, 3, 5];
    const sigs = set.map((i) => ({ index: i, sig: signSurvivors(ids[i - 1].secretKey, 't', set) }));
    sigs.push({ index: 1, sig: sigs[0].sig }); // a repeat does not count twice
    sigs.push({ index: 4, sig: signSurvivors(ids[3].secretKey, 't', set) }); // 4 is not a survivor
    expect(countSurvivorSignatures('t', set, sigs, keys)).toEqual({ valid: [1, 2, 3, 5], invalid: [] });
  });

  it('catches a server that tells two clients different survivor sets', () => {
    // The server tells 1, 2, 3 that 6 survived (to collect 6's self-mask shares) and tells 4, 5 that 6
    // dropped (to collect 6's mask-key shares). Each honest client signs only what it was told.
    const a = [1, 2, 3, 4, 5, 6];
    const b = [1, 2, 3, 4, 5];
    const sigs = [
      ...[1, 2, 3].map((i) => ({ index: i, sig: signSurvivors(ids[i - 1].secretKey, 't', a) })),
      ...[4, 5].map((i) => ({ index: i, sig: signSurvivors(ids[i - 1].secretKey, 't', b) })),
    ];
    // Forwarding all signatures to client 4 as evidence for set b: only 4 and 5 verify, so with t = 4
    // client 4 refuses to reveal; the signatures of 1-3 show the server lied.
    const forB = countSurvivorSignatures('t', b, sigs, keys);
    expect(forB).toEqual({ valid: [4, 5], invalid: [1, 2, 3] });
    const forA = countSurvivorSignatures('t', a, sigs, keys);
    expect(forA.valid).toEqual([1, 2, 3]);
  });

  it('one set has one encoding: unsorted or repeated indices are refused', () => {
    expect(() => survivorsMessage('t', [2, 1])).toThrow(RangeError);
    expect(() => survivorsMessage('t', [1, 1])).toThrow(RangeError);
    expect(survivorsMessage('t', [1, 2])).not.toEqual(survivorsMessage('t', [1, 2, 3]));
    expect(survivorsMessage('t1', [1, 2])).not.toEqual(survivorsMessage('t2', [1, 2]));
  });
});

describe('dealer-signed shares', () => {
  const dealer = generateSigningKeyPair();
  const y = new Uint8Array(33).fill(5);
  const sig = signShare(dealer.secretKey, 'r1', 'b', 3, 8, y);

  it('a share signature is bound to tag, kind, dealer, holder, share bytes and dealer key', () => {
    expect(verifyShare(dealer.publicKey, 'r1', 'b', 3, 8, y, sig)).toBe(true);
    expect(verifyShare(dealer.publicKey, 'r2', 'b', 3, 8, y, sig)).toBe(false);
    expect(verifyShare(dealer.publicKey, 'r1', 's', 3, 8, y, sig)).toBe(false); // b-share offered as an s-share
    expect(verifyShare(dealer.publicKey, 'r1', 'b', 4, 8, y, sig)).toBe(false);
    expect(verifyShare(dealer.publicKey, 'r1', 'b', 3, 9, y, sig)).toBe(false); // another holder's share
    const y2 = y.slice();
    y2[32] ^= 1;
    expect(verifyShare(dealer.publicKey, 'r1', 'b', 3, 8, y2, sig)).toBe(false);
    expect(verifyShare(generateSigningKeyPair().publicKey, 'r1', 'b', 3, 8, y, sig)).toBe(false);
  });

  it('never throws on garbage: short signatures, bad keys, bad indices or kinds are simply invalid', () => {
    expect(verifyShare(dealer.publicKey, 'r1', 'b', 3, 8, y, sig.subarray(1))).toBe(false);
    expect(verifyShare(new Uint8Array(32).fill(0xff), 'r1', 'b', 3, 8, y, sig)).toBe(false);
    expect(verifyShare(dealer.publicKey, 'r1', 'b', 2 ** 32 + 3, 8, y, sig)).toBe(false);
    expect(verifyShare(dealer.publicKey, 'r1', 'x' as 'b', 3, 8, y, sig)).toBe(false);
    expect(() => shareMessage('r1', 'x' as 'b', 3, 8, y)).toThrow(RangeError);
  });

  it('the signed message is framed with its own domain: no other signed message of this file collides with it', () => {
    const m = shareMessage('t', 'b', 1, 2, y);
    expect(new TextDecoder().decode(m.subarray(4, 4 + 27))).toBe('aegisfl/secagg/v1/share-sig');
    expect(m).not.toEqual(survivorsMessage('t', [1, 2]));
    // Lengths are framed: moving bytes between the tag and the kind changes the message.
    expect(shareMessage('tb', 'b', 1, 2, y)).not.toEqual(shareMessage('t', 'b', 1, 2, y));
  });

  it('checkSigningKey refuses wrong lengths, non-points, non-canonical and small-order keys; accepts real ones', () => {
    expect(checkSigningKey(dealer.publicKey)).toBeNull();
    expect(checkSigningKey(new Uint8Array(31))).toBe('wrong_length');
    const identity = new Uint8Array(32);
    identity[0] = 1;
    expect(checkSigningKey(identity)).toBe('low_order');
    // y = -1 (order 2), and the order-4 point with y = 0.
    expect(
      checkSigningKey(hexToBytes('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f')),
    ).toBe('low_order');
    expect(checkSigningKey(new Uint8Array(32))).toBe('low_order');
    // y = p + 1 (a non-canonical spelling of the identity) and y = 2^255 - 1 >= p: refused as encodings.
    expect(
      checkSigningKey(hexToBytes('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f')),
    ).toBe('not_a_point');
    expect(checkSigningKey(new Uint8Array(32).fill(0xff))).toBe('not_a_point');
    // y = 2 is not on the curve (x^2 would have to be a non-square).
    const two = new Uint8Array(32);
    two[0] = 2;
    expect(checkSigningKey(two)).toBe('not_a_point');
  });
});
