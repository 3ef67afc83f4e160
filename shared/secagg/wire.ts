import { bytes, record } from './check.ts';
import { ProtocolError } from '../base/errors.ts';
import { SIGN_PUBLIC_BYTES, SIGNATURE_BYTES } from './consistency.ts';
import { KEY_BYTES } from './keys.ts';
import { SHARE_BYTES } from './shamir.ts';
import type { Inbox, PeerKeys, Reveal, Roster, ShareKeys, SignedBy, UnmaskRequest } from './types.ts';

/**
 * Wire form of the secure-aggregation messages: each list of keys, boxes or shares travels as ONE binary
 * blob of fixed-size records (socket.io caps attachments per message at 10, and one blob is smaller).
 * Records start with a big-endian uint32 client index.
 */
/** Box plaintext: u32 from || u32 to || share of s || share of b || dealer's signature on each (s, then b). */
export const BOX_PLAIN_BYTES = 8 + 2 * SHARE_BYTES + 2 * SIGNATURE_BYTES;
export const BOX_BYTES = 12 + BOX_PLAIN_BYTES + 16; // nonce + plaintext + Poly1305 tag
const PEER_RECORD = 4 + 2 * KEY_BYTES + SIGN_PUBLIC_BYTES;
const BOX_RECORD = 4 + BOX_BYTES;
/** A revealed share on the wire: u32 of || share || its dealer's signature. */
export const REVEAL_RECORD = 4 + SHARE_BYTES + SIGNATURE_BYTES;
/** Consistency round: u32 index || idPk || site attestation || identity's signature on the round keys. */
const AUTH_RECORD = 4 + SIGN_PUBLIC_BYTES + 2 * SIGNATURE_BYTES;
const SIG_RECORD = 4 + SIGNATURE_BYTES;

export interface WireRoster {
  peers: Uint8Array;
  /** Consistency round only: one AUTH_RECORD per peer, in the order of `peers`. */
  auth?: Uint8Array;
}
export interface WireShares {
  commit: Uint8Array;
  shares: Uint8Array;
}
export interface WireInbox {
  shares: Uint8Array;
}
export interface WireReveal {
  b: Uint8Array;
  s: Uint8Array;
}

function pack<T>(
  items: T[],
  size: number,
  write: (dv: DataView, out: Uint8Array, off: number, item: T) => void,
): Uint8Array {
  const out = new Uint8Array(items.length * size);
  const dv = new DataView(out.buffer);
  items.forEach((it, i) => write(dv, out, i * size, it));
  return out;
}

function unpack<T>(
  raw: unknown,
  what: string,
  size: number,
  maxCount: number,
  read: (dv: DataView, b: Uint8Array, off: number) => T,
): T[] {
  const b = bytes(raw, what, undefined, maxCount * size);
  if (b.length % size !== 0)
    throw new ProtocolError(
      'malformed',
      `${what} is ${b.length} bytes, not a whole number of ${size}-byte records`,
    );
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: T[] = [];
  for (let off = 0; off < b.length; off += size) out.push(read(dv, b, off));
  return out;
}

export function packRoster(r: Roster): WireRoster {
  const authed = r.peers.filter((p) => p.auth).length;
  if (authed !== 0 && authed !== r.peers.length)
    throw new RangeError('either every peer of a roster carries its key attestation or none does');
  const peers = pack(r.peers, PEER_RECORD, (dv, out, off, p) => {
    if (p.cPk.length !== KEY_BYTES || p.sPk.length !== KEY_BYTES || p.gPk.length !== SIGN_PUBLIC_BYTES)
      throw new RangeError(`peer ${p.index} has a key of the wrong length`);
    dv.setUint32(off, p.index);
    out.set(p.cPk, off + 4);
    out.set(p.sPk, off + 4 + KEY_BYTES);
    out.set(p.gPk, off + 4 + 2 * KEY_BYTES);
  });
  if (!authed) return { peers }; // no auth field at all: the roster of a round without R3, as before
  const auth = pack(r.peers, AUTH_RECORD, (dv, out, off, p) => {
    const a = p.auth!;
    if (
      a.idPk.length !== SIGN_PUBLIC_BYTES ||
      a.attestation.length !== SIGNATURE_BYTES ||
      a.keysSig.length !== SIGNATURE_BYTES
    )
      throw new RangeError(`peer ${p.index} has an attestation of the wrong length`);
    dv.setUint32(off, p.index);
    out.set(a.idPk, off + 4);
    out.set(a.attestation, off + 4 + SIGN_PUBLIC_BYTES);
    out.set(a.keysSig, off + 4 + SIGN_PUBLIC_BYTES + SIGNATURE_BYTES);
  });
  return { peers, auth };
}

export function unpackRoster(raw: unknown, maxPeers: number): Roster {
  const m = record(raw, 'roster');
  const peers: PeerKeys[] = unpack(m.peers, 'roster.peers', PEER_RECORD, maxPeers, (dv, b, off) => ({
    index: dv.getUint32(off),
    cPk: b.slice(off + 4, off + 4 + KEY_BYTES),
    sPk: b.slice(off + 4 + KEY_BYTES, off + 4 + 2 * KEY_BYTES),
    gPk: b.slice(off + 4 + 2 * KEY_BYTES, off + PEER_RECORD),
  }));
  if (m.auth === undefined) return { peers };
  const auth = unpack(m.auth, 'roster.auth', AUTH_RECORD, maxPeers, (dv, b, off) => ({
    index: dv.getUint32(off),
    idPk: b.slice(off + 4, off + 4 + SIGN_PUBLIC_BYTES),
    attestation: b.slice(off + 4 + SIGN_PUBLIC_BYTES, off + 4 + SIGN_PUBLIC_BYTES + SIGNATURE_BYTES),
    keysSig: b.slice(off + 4 + SIGN_PUBLIC_BYTES + SIGNATURE_BYTES, off + AUTH_RECORD),
  }));
  if (auth.length !== peers.length || auth.some((a, i) => a.index !== peers[i].index))
    throw new ProtocolError('malformed', 'roster.auth does not list the same peers as roster.peers');
  return {
    peers: peers.map((p, i) => ({
      ...p,
      auth: { idPk: auth[i].idPk, attestation: auth[i].attestation, keysSig: auth[i].keysSig },
    })),
  };
}

export function packShares(s: ShareKeys): WireShares {
  return {
    commit: s.commit,
    shares: pack(s.shares, BOX_RECORD, (dv, out, off, e) => {
      if (e.ct.length !== BOX_BYTES) throw new RangeError(`box must be ${BOX_BYTES} bytes`);
      dv.setUint32(off, e.to);
      out.set(e.ct, off + 4);
    }),
  };
}

export function unpackShares(raw: unknown, maxPeers: number): ShareKeys {
  const m = record(raw, 'shares');
  return {
    commit: bytes(m.commit, 'commit', 32),
    shares: unpack(m.shares, 'shares', BOX_RECORD, maxPeers, (dv, b, off) => ({
      to: dv.getUint32(off),
      ct: b.slice(off + 4, off + BOX_RECORD),
    })),
  };
}

export function packInbox(i: Inbox): WireInbox {
  return {
    shares: pack(i.shares, BOX_RECORD, (dv, out, off, e) => {
      dv.setUint32(off, e.from);
      out.set(e.ct, off + 4);
    }),
  };
}

export function unpackInbox(raw: unknown, maxPeers: number): Inbox {
  const m = record(raw, 'inbox');
  return {
    shares: unpack(m.shares, 'inbox', BOX_RECORD, maxPeers, (dv, b, off) => ({
      from: dv.getUint32(off),
      ct: b.slice(off + 4, off + BOX_RECORD),
    })),
  };
}

export function packReveal(r: Reveal): WireReveal {
  const one = (l: Reveal['b']) =>
    pack(l, REVEAL_RECORD, (dv, out, off, e) => {
      if (e.share.length !== SHARE_BYTES) throw new RangeError(`share must be ${SHARE_BYTES} bytes`);
      if (e.sig.length !== SIGNATURE_BYTES)
        throw new RangeError(`signature must be ${SIGNATURE_BYTES} bytes`);
      dv.setUint32(off, e.of);
      out.set(e.share, off + 4);
      out.set(e.sig, off + 4 + SHARE_BYTES);
    });
  return { b: one(r.b), s: one(r.s) };
}

export function unpackReveal(raw: unknown, maxPeers: number): Reveal {
  const m = record(raw, 'reveal');
  const one = (v: unknown, what: string) =>
    unpack(v, what, REVEAL_RECORD, maxPeers, (dv, b, off) => ({
      of: dv.getUint32(off),
      share: b.slice(off + 4, off + 4 + SHARE_BYTES),
      sig: b.slice(off + 4 + SHARE_BYTES, off + REVEAL_RECORD),
    }));
  return { b: one(m.b, 'reveal.b'), s: one(m.s, 'reveal.s') };
}

/** secagg:unmask: survivors and dropouts as JSON arrays; with R3 the relayed signatures as one blob. */
export interface WireUnmask {
  survivors: number[];
  dropped: number[];
  /** Consistency round only: `u32 index || sig(64)` per neighbour that signed U3. */
  signatures?: Uint8Array;
}

export function packUnmask(r: UnmaskRequest): WireUnmask {
  const out: WireUnmask = { survivors: r.survivors, dropped: r.dropped };
  if (r.signatures)
    out.signatures = pack(r.signatures, SIG_RECORD, (dv, o, off, e) => {
      if (e.sig.length !== SIGNATURE_BYTES)
        throw new RangeError(`signature must be ${SIGNATURE_BYTES} bytes`);
      dv.setUint32(off, e.index);
      o.set(e.sig, off + 4);
    });
  return out;
}

/** survivors and dropped are passed on as they came (the client session checks them). */
export function unpackUnmask(raw: unknown, maxPeers: number): UnmaskRequest {
  const m = record(raw, 'unmask request');
  const out = { survivors: m.survivors, dropped: m.dropped } as UnmaskRequest;
  if (m.signatures !== undefined)
    out.signatures = unpack(
      m.signatures,
      'unmask.signatures',
      SIG_RECORD,
      maxPeers,
      (dv, b, off): SignedBy => ({
        index: dv.getUint32(off),
        sig: b.slice(off + 4, off + SIG_RECORD),
      }),
    );
  return out;
}
