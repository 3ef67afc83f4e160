import { ed25519 } from '@noble/curves/ed25519.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';

/**
 * Authenticated keys and the consistency round (Bonawitz et al. 2017, R3), for deployments where an
 * embedding site vouches for its visitors out of band.
 *
 * Why: the server relays every public key, so without authentication it can sit in the middle of any key
 * agreement or invent clients. With an attestation key held by the site (never by the AegisFL server):
 * - each visitor has a long-lived Ed25519 identity key; the site signs its public key (an attestation);
 * - each round, the client signs its fresh keys (two X25519, one Ed25519 for its shares) with that
 *   identity, bound to the round tag and its index, so the server cannot swap them;
 * - R3: each survivor signs the survivor set U3 it was told; before revealing any share a client needs t
 *   valid signatures from its neighbours over the same set it was told. A server that tells some holders
 *   "v survived" (asking for v's self-mask share) and others "v dropped" (asking for v's key share) cannot
 *   collect t signatures on both stories unless enough neighbours collude (see graph.ts for that bound).
 * Every signed message starts with its own domain string, so no signature can be replayed as another.
 */

export const SIGN_PUBLIC_BYTES = 32;
export const SIGNATURE_BYTES = 64;

const DOMAIN_ATTEST = 'aegisfl/attest/v1';
const DOMAIN_ROUND_KEYS = 'aegisfl/secagg/v1/round-keys';
const DOMAIN_SURVIVORS = 'aegisfl/secagg/v1/survivors';
const DOMAIN_SHARE = 'aegisfl/secagg/v1/share-sig';

export interface SigningKeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

export function generateSigningKeyPair(): SigningKeyPair {
  const secretKey = ed25519.utils.randomSecretKey();
  return { secretKey, publicKey: ed25519.getPublicKey(secretKey) };
}

/** Length-prefixed concatenation: no two different field lists encode to the same bytes. */
function frame(parts: readonly Uint8Array[]): Uint8Array {
  const total = parts.reduce((s, p) => s + 4 + p.length, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  let off = 0;
  for (const p of parts) {
    dv.setUint32(off, p.length);
    out.set(p, off + 4);
    off += 4 + p.length;
  }
  return out;
}

function u32(v: number): Uint8Array {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`not a uint32: ${v}`);
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v);
  return b;
}

/** What is wrong with an Ed25519 public key. */
export type SigningKeyProblem = 'wrong_length' | 'not_a_point' | 'low_order';

/**
 * Checks a peer's Ed25519 public key before anyone relies on its signatures; null when it is fine.
 * Refuses encodings RFC 8032 does not accept (y >= p, or x = 0 with the sign bit set) and small-order
 * points: strict verification rejects every signature under those, so a dealer with such a key could
 * not sign its shares, and it is better refused at R0 than discovered box by box.
 */
export function checkSigningKey(pk: Uint8Array): SigningKeyProblem | null {
  if (!(pk instanceof Uint8Array) || pk.length !== SIGN_PUBLIC_BYTES) return 'wrong_length';
  let point;
  try {
    point = ed25519.Point.fromBytes(pk, false);
  } catch {
    return 'not_a_point';
  }
  return point.isSmallOrder() ? 'low_order' : null;
}

/**
 * Strict verification of a signature over the message `build` frames: false, never a throw, for a
 * message that cannot be framed (e.g. an index outside uint32), a malformed point or signature.
 */
function verify(sig: Uint8Array, build: () => Uint8Array, pk: Uint8Array): boolean {
  if (sig.length !== SIGNATURE_BYTES || pk.length !== SIGN_PUBLIC_BYTES) return false;
  try {
    // Strict RFC 8032 checks: ZIP-215 rules would let a small-order key "sign" every message.
    return ed25519.verify(sig, build(), pk, { zip215: false });
  } catch {
    return false;
  }
}

/** What the site signs: the visitor's identity key. */
export function attestationMessage(identityPk: Uint8Array): Uint8Array {
  return frame([utf8ToBytes(DOMAIN_ATTEST), identityPk]);
}

/** The site's side (run by the embedding site's backend, or a test). */
export function attest(siteSecretKey: Uint8Array, identityPk: Uint8Array): Uint8Array {
  return ed25519.sign(attestationMessage(identityPk), siteSecretKey);
}

export function verifyAttestation(sitePk: Uint8Array, identityPk: Uint8Array, sig: Uint8Array): boolean {
  return verify(sig, () => attestationMessage(identityPk), sitePk);
}

/**
 * Binds a round's keys to the client's identity, its index and the round: both X25519 keys and the
 * per-round share-signing key gPk. gPk is bound too: a server that could swap it would make every box a
 * client deals fail its holders' signature check (the holders set them aside) and could get an honest
 * holder named for "altering" a share it relayed faithfully.
 */
export function roundKeysMessage(
  tag: string,
  index: number,
  cPk: Uint8Array,
  sPk: Uint8Array,
  gPk: Uint8Array,
): Uint8Array {
  return frame([utf8ToBytes(DOMAIN_ROUND_KEYS), utf8ToBytes(tag), u32(index), cPk, sPk, gPk]);
}

export function signRoundKeys(
  identitySk: Uint8Array,
  tag: string,
  index: number,
  cPk: Uint8Array,
  sPk: Uint8Array,
  gPk: Uint8Array,
): Uint8Array {
  return ed25519.sign(roundKeysMessage(tag, index, cPk, sPk, gPk), identitySk);
}

export function verifyRoundKeys(
  identityPk: Uint8Array,
  tag: string,
  index: number,
  cPk: Uint8Array,
  sPk: Uint8Array,
  gPk: Uint8Array,
  sig: Uint8Array,
): boolean {
  return verify(sig, () => roundKeysMessage(tag, index, cPk, sPk, gPk), identityPk);
}

/** What vouches for one client's round keys: its identity key, the site's word on it, its own on the keys. */
export interface KeyAuth {
  /** The visitor's long-lived Ed25519 identity public key. */
  idPk: Uint8Array;
  /** The site's signature on idPk (attest). */
  attestation: Uint8Array;
  /** idPk's signature on this round's keys (signRoundKeys). */
  keysSig: Uint8Array;
}

/** Why a client's round keys are not vouched for (a closed set). */
export type KeyAuthProblem = 'bad_identity' | 'not_attested' | 'bad_keys_signature';

/**
 * Checks that client `index`'s round keys are vouched for: its identity key is a usable Ed25519 point
 * (a small-order one would let anyone sign in its name), the site attested it, and it signed exactly
 * these keys for this round and index. Null when all hold.
 */
export function checkKeyAuth(
  sitePk: Uint8Array,
  tag: string,
  index: number,
  keys: { cPk: Uint8Array; sPk: Uint8Array; gPk: Uint8Array },
  auth: KeyAuth,
): KeyAuthProblem | null {
  if (checkSigningKey(auth.idPk)) return 'bad_identity';
  if (!verifyAttestation(sitePk, auth.idPk, auth.attestation)) return 'not_attested';
  if (!verifyRoundKeys(auth.idPk, tag, index, keys.cPk, keys.sPk, keys.gPk, auth.keysSig))
    return 'bad_keys_signature';
  return null;
}

/** The survivor set as signed: strictly increasing indices, so one set has exactly one encoding. */
export function survivorsMessage(tag: string, survivors: readonly number[]): Uint8Array {
  for (let i = 1; i < survivors.length; i++) {
    if (!(survivors[i] > survivors[i - 1])) throw new RangeError('survivor set must be strictly increasing');
  }
  // Each index goes through u32(): setUint32 alone would wrap 2^32 + 2 onto 2 and NaN onto 0.
  const list = new Uint8Array(4 * survivors.length);
  survivors.forEach((v, i) => list.set(u32(v), 4 * i));
  return frame([utf8ToBytes(DOMAIN_SURVIVORS), utf8ToBytes(tag), list]);
}

/**
 * Signs a survivor set. In the consistency round the key is the signer's share-signing key of this
 * attempt (fresh per attempt and bound to its attested identity by the round-keys signature), so a
 * signature cannot be replayed into another attempt that reuses the tag.
 */
export function signSurvivors(signingSk: Uint8Array, tag: string, survivors: readonly number[]): Uint8Array {
  return ed25519.sign(survivorsMessage(tag, survivors), signingSk);
}

/**
 * Counts the distinct signers among `signers` (indices with known signing keys) whose signature over
 * exactly `survivors` verifies. Signers outside the survivor set do not count: only survivors signed.
 */
export function countSurvivorSignatures(
  tag: string,
  survivors: readonly number[],
  signatures: readonly { index: number; sig: Uint8Array }[],
  identityKeys: ReadonlyMap<number, Uint8Array>,
): { valid: number[]; invalid: number[] } {
  const msg = survivorsMessage(tag, survivors);
  const inSet = new Set(survivors);
  const valid: number[] = [];
  const invalid: number[] = [];
  const seen = new Set<number>();
  for (const { index, sig } of signatures) {
    if (seen.has(index)) continue;
    seen.add(index);
    const pk = identityKeys.get(index);
    if (!pk || !inSet.has(index)) continue;
    (verify(sig, () => msg, pk) ? valid : invalid).push(index);
  }
  return { valid, invalid };
}

/** Which of a dealer's two secrets a share belongs to: its mask key s_u^SK or its self-mask seed b_u. */
export type ShareKind = 's' | 'b';

/**
 * Dealer-signed shares. Each client signs, with a per-round Ed25519 key advertised at R0 beside its X25519
 * keys, every share it deals, bound to the round, the kind, the dealer and the holder:
 * frame("aegisfl/secagg/v1/share-sig", tag, kind, u32 from, u32 to, y). A holder checks both signatures
 * when it opens a box and reveals each share with its signature, so the server can tell who is at fault
 * when a secret does not rebuild: a share without a valid signature was altered by its holder; validly
 * signed shares that do not lie on one polynomial (or that rebuild a secret failing its check) were dealt
 * so by the dealer. Holders cannot forge the dealer's signature, so they cannot move their shares.
 */
export function shareMessage(
  tag: string,
  kind: ShareKind,
  from: number,
  to: number,
  share: Uint8Array,
): Uint8Array {
  if (kind !== 's' && kind !== 'b')
    throw new RangeError(`share kind must be 's' or 'b', got ${String(kind)}`);
  return frame([utf8ToBytes(DOMAIN_SHARE), utf8ToBytes(tag), utf8ToBytes(kind), u32(from), u32(to), share]);
}

export function signShare(
  signingSk: Uint8Array,
  tag: string,
  kind: ShareKind,
  from: number,
  to: number,
  share: Uint8Array,
): Uint8Array {
  return ed25519.sign(shareMessage(tag, kind, from, to, share), signingSk);
}

/** Strict (RFC 8032, not ZIP-215) verification; false, never a throw, for anything malformed. */
export function verifyShare(
  dealerPk: Uint8Array,
  tag: string,
  kind: ShareKind,
  from: number,
  to: number,
  share: Uint8Array,
  sig: Uint8Array,
): boolean {
  return verify(sig, () => shareMessage(tag, kind, from, to, share), dealerPk);
}
