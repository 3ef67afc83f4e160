/**
 * The one protocol error: a message that breaks the rules, rejected with a reason from a closed set.
 * Imports nothing, so protocol, secagg, client and server can all share it without a cycle.
 */

/** Closed set: reasons reach metric labels and the wire, so no other value may appear. */
export const REJECT_REASONS = [
  'malformed',
  'protocol_version',
  'too_large',
  'wrong_length',
  'not_finite',
  'wrong_round',
  'late',
  'duplicate',
  'not_selected',
  'unknown_client',
  'wrong_phase',
  'not_neighbour',
  'misaddressed',
  'unrequested_share',
  'both_shares',
  'bad_key',
  /** A revealed share that is not a field element. */
  'malformed_share',
  /** A round plan or threshold below what the client accepts (its floors, or the hard minimums). */
  'below_floor',
  /** A roster or unmask request naming fewer than t peers. */
  'too_few_peers',
  /** An inbox with fewer than t boxes that open. */
  'too_few_shares',
  /**
   * Consistency round: round keys without the site's attestation on their identity or the identity's
   * signature on them (or a client without an attested identity, or one identity at two indices).
   */
  'unattested',
  /**
   * Consistency round: an unmask request without t valid neighbour signatures over exactly the survivor set
   * this client signed, or whose survivors and dropouts differ from that set; a survivor set that cannot be
   * right; a signature over another set. An honest server never causes it: a lying one is caught by it.
   */
  'inconsistent_view',
  /** The server failed on the message (a bug, counted in aegis_internal_errors_total); the attempt is retried. */
  'internal_error',
  /** Too many messages (from this socket) or connections (from this address): slow down. */
  'rate_limited',
  /** A resume of a session that another socket holds: taking over a live session is refused. */
  'session_taken',
  /** A resume whose session is unknown or expired, or whose token is wrong: start a new session. */
  'bad_token',
  /** A second hello on a socket that already has an identity (one socket, one identity). */
  'already_identified',
  /** The server holds as many sessions as it may: try again later. */
  'server_full',
  /**
   * A connection from a page whose origin is not on the server's --allowed-origins list (or without an
   * Origin where one is required). Refused at the socket.io handshake.
   */
  'bad_origin',
  /**
   * The server's task (model topology, shapes or training plan) is not the one the page pinned (its hash
   * differs), or a round's plan is not its task's: the server may not choose what the visitor's data runs through.
   */
  'task_mismatch',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

const KNOWN = new Set<string>(REJECT_REASONS);

/** True for a member of REJECT_REASONS; anything else (e.g. a client's claim) must be mapped before use. */
export function isRejectReason(v: unknown): v is RejectReason {
  return typeof v === 'string' && KNOWN.has(v);
}

/** Thrown for a message that breaks the protocol; the transport answers `rejected` and counts the reason. */
export class ProtocolError extends Error {
  constructor(
    readonly reason: RejectReason,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}
