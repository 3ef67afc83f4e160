/** Secure-aggregation messages (privacy.md C). Clients are named by their 1-based index in the round. */
import type { KeyAuth } from './consistency.ts';

export type { KeyAuth };

/** R0 AdvertiseKeys, client -> server. */
export interface AdvertiseKeys {
  /** Public key for the share channel. */
  cPk: Uint8Array;
  /** Public key for pairwise masks. */
  sPk: Uint8Array;
  /** Ed25519 public key, fresh each round, that signs every share this client deals. */
  gPk: Uint8Array;
  /** With the consistency round only: the identity behind these keys, attested by the site. */
  auth?: KeyAuth;
}

export interface PeerKeys extends AdvertiseKeys {
  index: number;
}

/** R0 -> R1, server -> client: the keys of the neighbours that advertised. */
export interface Roster {
  peers: PeerKeys[];
}

/** R1 ShareKeys, client -> server: one AEAD box per neighbour, plus a commitment to the self-mask seed. */
export interface ShareKeys {
  shares: { to: number; ct: Uint8Array }[];
  commit: Uint8Array;
}

/** R1 -> R2, server -> client: the boxes addressed to this client by neighbours that sent shares (U2). */
export interface Inbox {
  shares: { from: number; ct: Uint8Array }[];
}

/** R3 ConsistencyCheck, server -> client (consistency round only): the survivor set U3, ascending. */
export interface SurvivorSet {
  survivors: number[];
}

/** R3, client -> server: its identity's signature over the survivor set it was told (survivorsMessage). */
export interface SurvivorSignature {
  sig: Uint8Array;
}

/** One client's signature over U3, as relayed with an unmask request. */
export interface SignedBy {
  index: number;
  sig: Uint8Array;
}

/** R4, server -> client: which neighbours survived (reveal b-shares) and which dropped (reveal s-shares). */
export interface UnmaskRequest {
  survivors: number[];
  dropped: number[];
  /** Consistency round only: the R3 signatures of this client's neighbours that signed U3. */
  signatures?: SignedBy[];
}

/** One revealed share of client `of`'s secret, with the signature `of` put on it when it dealt it. */
export interface RevealedShare {
  of: number;
  share: Uint8Array;
  /** Ed25519 signature by `of`'s gPk over consistency.ts shareMessage(tag, kind, of, holder, share). */
  sig: Uint8Array;
}

/** R4, client -> server. */
export interface Reveal {
  b: RevealedShare[];
  s: RevealedShare[];
}

/**
 * Why the server names a client (closed set: these become metric labels).
 * - malformed_share: it revealed a share that is not a field element (honest holders set such boxes aside);
 * - altered_share: it revealed a share that does not carry its dealer's valid signature;
 * - inconsistent_dealer: shares it signed do not lie on one polynomial of degree < t, or rebuild a secret
 *   that does not match its commitment or public key.
 */
export const CULPRIT_KINDS = ['malformed_share', 'altered_share', 'inconsistent_dealer'] as const;
export type CulpritKind = (typeof CULPRIT_KINDS)[number];

export interface Culprit {
  index: number;
  kind: CulpritKind;
}

/** The phases that collect client messages, in order (R0, R1, R2, R3, R4); R3 runs only with the flag on. */
export const SECAGG_PHASES = ['keys', 'shares', 'masked', 'consistency', 'unmask'] as const;
export type SecAggActivePhase = (typeof SECAGG_PHASES)[number];
export type SecAggPhase = SecAggActivePhase | 'done' | 'failed';
