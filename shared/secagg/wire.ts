import { bytes, record } from './check.ts';
import { ProtocolError } from '../base/errors.ts';
import { SIGN_PUBLIC_BYTES, SIGNATURE_BYTES } from './consistency.ts';
import { KEY_BYTES } from './keys.ts';
import { SHARE_BYTES } from './shamir.ts';
import type { Inbox, Reveal, Roster, ShareKeys } from './types.ts';

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
const SHARE_RECORD = 4 + SHARE_BYTES + SIGNATURE_BYTES;

export interface WireRoster {
  peers: Uint8Array;
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
  return {
    peers: pack(r.peers, PEER_RECORD, (dv, out, off, p) => {
      if (p.cPk.length !== KEY_BYTES || p.sPk.length !== KEY_BYTES || p.gPk.length !== SIGN_PUBLIC_BYTES)
        throw new RangeError(`peer ${p.index} has a key of the wrong length`);
      dv.setUint32(off, p.index);
      out.set(p.cPk, off + 4);
      out.set(p.sPk, off + 4 + KEY_BYTES);
      out.set(p.gPk, off + 4 + 2 * KEY_BYTES);
    }),
  };
}

export function unpackRoster(raw: unknown, maxPeers: number): Roster {
  const m = record(raw, 'roster');
  return {
    peers: unpack(m.peers, 'roster.peers', PEER_RECORD, maxPeers, (dv, b, off) => ({
      index: dv.getUint32(off),
      cPk: b.slice(off + 4, off + 4 + KEY_BYTES),
      sPk: b.slice(off + 4 + KEY_BYTES, off + 4 + 2 * KEY_BYTES),
      gPk: b.slice(off + 4 + 2 * KEY_BYTES, off + PEER_RECORD),
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
    pack(l, SHARE_RECORD, (dv, out, off, e) => {
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
    unpack(v, what, SHARE_RECORD, maxPeers, (dv, b, off) => ({
      of: dv.getUint32(off),
      share: b.slice(off + 4, off + 4 + SHARE_BYTES),
      sig: b.slice(off + 4 + SHARE_BYTES, off + SHARE_RECORD),
    }));
  return { b: one(m.b, 'reveal.b'), s: one(m.s, 'reveal.s') };
}
