import { decodeChecked, reconstructChecked, type LagrangeCache, type Share } from './shamir.ts';

/** A revealed share with the signature its dealer put on it (consistency.ts shareMessage). */
export interface SignedShare extends Share {
  sig: Uint8Array;
}

export interface Recovery {
  /** The secret, checked against its commitment or public key; null when it cannot be rebuilt. */
  secret: Uint8Array | null;
  /** True when the first t shares gave it: no signature was checked and nobody is named. */
  fast: boolean;
  /** Holders whose share does not carry a valid signature of its dealer: they altered it. Ascending. */
  altered: number[];
  /** Shares with a valid dealer signature (slow path only). */
  signed: number;
  /**
   * The dealer is at fault: shares it signed do not lie on one polynomial of degree < t, or they rebuild
   * a value that fails the check. An honest dealer's signed shares do neither.
   */
  dealerAtFault: boolean;
}

/**
 * Rebuilds one dealer's secret from revealed, dealer-signed shares, and says who is to blame when it
 * does not rebuild at once.
 *
 * Fast path (every honest round): Lagrange over the first t shares, checked by `verify`. No signature is
 * checked: at a thousand clients with k = 38 that would be ~38k verifications per round for nothing.
 *
 * Slow path (the fast path failed): every share's signature is checked with `signedByDealer`. A share
 * without a valid one was altered by its holder (an honest holder checked the signature when it opened
 * the box and reveals it unchanged): it is named and left out. The signed shares are the dealer's own
 * word, so they are decoded together (Gao, correcting up to floor((m - t) / 2) off the polynomial): when
 * they are not all on one polynomial, or that polynomial's value fails `verify`, the dealer is at fault;
 * the secret is still returned when decoding finds a value that passes `verify`. Holders cannot move
 * their shares off the dealt polynomial (they cannot sign for the dealer), so decoding cannot be steered
 * into blaming an honest holder or an honest dealer.
 *
 * Shares must be field elements (the server refuses others on receipt) and have distinct holders.
 */
export function recoverSecret(
  shares: readonly SignedShare[],
  t: number,
  verify: (secret: Uint8Array) => boolean,
  signedByDealer: (share: SignedShare) => boolean,
  cache?: LagrangeCache,
): Recovery {
  const fast = reconstructChecked(shares, t, verify, cache);
  if (fast) return { secret: fast, fast: true, altered: [], signed: 0, dealerAtFault: false };
  const signed: SignedShare[] = [];
  const altered: number[] = [];
  for (const s of shares) {
    let ok: boolean;
    try {
      ok = signedByDealer(s);
    } catch {
      ok = false;
    }
    if (ok) signed.push(s);
    else altered.push(s.x);
  }
  altered.sort((a, b) => a - b);
  if (signed.length < t)
    return { secret: null, fast: false, altered, signed: signed.length, dealerAtFault: false };
  const d = decodeChecked(signed, t, verify);
  return {
    secret: d.secret,
    fast: false,
    altered,
    signed: signed.length,
    dealerAtFault: !(d.consistent && d.secret),
  };
}
