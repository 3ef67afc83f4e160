import type { RejectReason } from '../shared/base/errors.ts';
import type { ClientToServerEvents } from '../shared/protocol/messages.ts';

export type ClientEvent = keyof ClientToServerEvents;
/** Every value the `event` label of aegis_messages_rejected_total can take (a closed set). */
export type EventLabel = ClientEvent | 'unknown' | 'transport' | 'connect';

const SECAGG = ['secagg:keys', 'secagg:shares', 'secagg:signature', 'secagg:reveal'] as const;
/** Messages that name a round attempt and are checked against it. */
const IN_ROUND = ['update', ...SECAGG, 'round:refuse'] as const;
const ALL: readonly ClientEvent[] = ['hello', 'ready', ...IN_ROUND, 'secagg:refuse'];

/**
 * The events on which the server can reject a message for each reason: the series of
 * aegis_messages_rejected_total that are zero-initialised, so a dashboard shows flat lines where a count can
 * appear and nothing where it cannot. Reasons only clients raise (against a server) have none. Keep in step
 * with the throws in server/intake.ts, server/clients.ts, server/socket.ts and shared/secagg/server-session.ts.
 */
export const REJECT_EVENTS: { readonly [R in RejectReason]: readonly EventLabel[] } = {
  malformed: ['hello', 'ready', ...IN_ROUND, 'unknown'],
  protocol_version: ['hello'],
  too_large: ['transport'],
  wrong_length: ['update'],
  not_finite: ['update'],
  wrong_round: IN_ROUND,
  late: IN_ROUND,
  duplicate: IN_ROUND,
  not_selected: IN_ROUND,
  unknown_client: ['ready', ...IN_ROUND],
  wrong_phase: ['update', ...SECAGG],
  not_neighbour: ['secagg:shares'],
  misaddressed: [],
  unrequested_share: ['secagg:reveal'],
  both_shares: ['secagg:reveal'],
  bad_key: ['secagg:keys'],
  malformed_share: ['secagg:reveal'],
  below_floor: [],
  too_few_peers: [],
  too_few_shares: [],
  unattested: ['secagg:keys'],
  inconsistent_view: ['secagg:signature'],
  internal_error: ALL,
  rate_limited: [...ALL, 'unknown', 'connect'],
  session_taken: ['hello'],
  // 'connect': a missing, invalid, expired, replayed or wrong-origin join token at the handshake.
  bad_token: ['hello', 'connect'],
  already_identified: ['hello'],
  server_full: ['hello', 'connect'],
  bad_origin: ['connect'],
  task_mismatch: [],
};
