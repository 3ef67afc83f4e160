/** Secure-aggregation messages (privacy.md C). Clients are named by their 1-based index in the round. */

/** R0 AdvertiseKeys, client -> server. */
export interface AdvertiseKeys {
  /** Public key for the share channel. */
  cPk: Uint8Array;
  /** Public key for pairwise masks. */
  sPk: Uint8Array;
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

/** R4, server -> client: which neighbours survived (reveal b-shares) and which dropped (reveal s-shares). */
export interface UnmaskRequest {
  survivors: number[];
  dropped: number[];
}

/** R4, client -> server. */
export interface Reveal {
  b: { of: number; share: Uint8Array }[];
  s: { of: number; share: Uint8Array }[];
}

/** The phases that collect client messages, in order (R0, R1, R2, R4). */
export const SECAGG_PHASES = ['keys', 'shares', 'masked', 'unmask'] as const;
export type SecAggActivePhase = (typeof SECAGG_PHASES)[number];
export type SecAggPhase = SecAggActivePhase | 'done' | 'failed';
