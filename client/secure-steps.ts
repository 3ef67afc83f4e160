import { vectorLength } from '../shared/fl/encoding.ts';
import { SecAggClientSession, type ClientAttestation } from '../shared/secagg/client-session.ts';
import { ProtocolError, type RejectReason } from '../shared/base/errors.ts';
import { packReveal, packShares, unpackInbox, unpackRoster, unpackUnmask } from '../shared/secagg/wire.ts';
import type { Floors } from '../shared/protocol/floors.ts';
import type { RoundRef, RoundStart, SecAggRoundInfo } from '../shared/protocol/messages.ts';
import type { ClientEvents } from './client-api.ts';
import type { Clock } from './clock.ts';
import type { SocketLike } from './socket.ts';

/** The secure-aggregation attempt we last joined. */
export interface SecureRound {
  ref: RoundRef;
  n: number;
  session: SecAggClientSession;
  /** Settles once the inbox (the key shares we mask with) has been received; it may come while we train. */
  inbox: Promise<void>;
  gotInbox: () => void;
}

/** Why we sit a secure attempt out: the server hears the reason (it counts it) and the message. */
export interface Refusal {
  reason: RejectReason;
  message: string;
}

/** What the secure steps need from the client: its connection now, the attempt it joined, its 'secagg' event. */
export interface SecureHost {
  socket(): SocketLike | null;
  current(): SecureRound | null;
  report(e: ClientEvents['secagg']): void;
}

/**
 * Why we do not take part in this round, if we do not: a client given a site key runs only secure rounds
 * with the consistency round (a floor the server cannot lower); a round with it needs that key.
 */
export function attestationRefusal(
  r: RoundStart,
  attestation: ClientAttestation | undefined,
): Refusal | null {
  const r3 = r.secagg?.consistency === true;
  if (attestation && !r3)
    return {
      reason: 'below_floor',
      message:
        'this client takes part only in secure rounds with authenticated keys and the consistency round',
    };
  if (r3 && !attestation)
    return {
      reason: 'unattested',
      message: 'the round needs an attested identity, and this client has none',
    };
  return null;
}

/** Opens the round's secure-aggregation session; its keys go out at once, so key exchange runs while we train. */
export function joinSecure(
  host: SecureHost,
  ref: RoundRef,
  info: SecAggRoundInfo,
  numParams: number,
  floors: Floors,
  attestation: ClientAttestation | undefined,
): SecureRound {
  const session = new SecAggClientSession({
    ...info,
    vectorLength: vectorLength(numParams),
    floors,
    consistency: info.consistency === true,
    attestation,
  });
  let gotInbox!: () => void;
  const inbox = new Promise<void>((res) => (gotInbox = res));
  host.socket()?.emit('secagg:keys', { ...ref, ...session.advertise() });
  host.report({ round: ref.round, step: 'keys' });
  return { ref, n: info.n, session, inbox, gotInbox };
}

/** Refuses a secure attempt: the server (when tellServer) hears why, the page a 'refused' step. */
export function refuseSecure(host: SecureHost, ref: RoundRef, refusal: Refusal, tellServer: boolean): void {
  if (tellServer)
    host.socket()?.emit('secagg:refuse', {
      round: ref.round,
      attempt: ref.attempt,
      reason: refusal.reason,
      message: refusal.message,
    });
  host.report({ round: ref.round, step: 'refused', detail: `${refusal.reason}: ${refusal.message}` });
}

/** Answers the server's secure-aggregation requests on s, for the attempt the client joined last. */
export function wireSecureSteps(s: SocketLike, host: SecureHost): void {
  s.on('secagg:roster', (m) =>
    onSecure(host, m, 'shares', (sec) => {
      const shares = sec.session.receiveRoster(unpackRoster(m, sec.n));
      s.emit('secagg:shares', { round: m.round, attempt: m.attempt, ...packShares(shares) });
    }),
  );
  s.on('secagg:inbox', (m) =>
    onSecure(host, m, 'inbox', (sec) => {
      const peers = sec.session.receiveInbox(unpackInbox(m, sec.n));
      sec.gotInbox();
      const bad = sec.session.badBoxes.length;
      return `${peers.length} peers${bad ? `, ${bad} bad boxes` : ''}`;
    }),
  );
  s.on('secagg:survivors', (m) =>
    onSecure(host, m, 'signature', (sec) => {
      const { sig } = sec.session.receiveSurvivors(m);
      s.emit('secagg:signature', { round: m.round, attempt: m.attempt, sig });
      return `signed a survivor set of ${m.survivors.length}`;
    }),
  );
  s.on('secagg:unmask', (m) =>
    onSecure(host, m, 'reveal', (sec) => {
      const r = sec.session.receiveUnmask(unpackUnmask(m, sec.n));
      s.emit('secagg:reveal', { round: m.round, attempt: m.attempt, ...packReveal(r) });
      return `${r.b.length} self-mask shares, ${r.s.length} key shares`;
    }),
  );
}

/** Runs one secure-aggregation step for the current round; a request we must not answer is refused and reported. */
function onSecure(
  host: SecureHost,
  m: RoundRef,
  step: 'shares' | 'inbox' | 'signature' | 'reveal',
  fn: (sec: SecureRound) => string | void,
): void {
  const sec = host.current();
  if (!sec || sec.ref.round !== m?.round || sec.ref.attempt !== m?.attempt) return; // not our round (stale)
  try {
    const detail = fn(sec);
    host.report({ round: m.round, step, detail: detail ?? undefined });
  } catch (e) {
    const reason = e instanceof ProtocolError ? e.reason : 'malformed';
    refuseSecure(host, m, { reason, message: (e as Error).message }, true);
  }
}

/** How a wait for the inbox ended. */
export type InboxWait = 'inbox' | 'timeout' | 'cancelled';

/** Waits for sec's inbox, at most deadlineMs on clock; cancel() ends the wait at once. */
export function inboxOrDeadline(
  sec: SecureRound,
  clock: Clock,
  deadlineMs: number,
): { got: Promise<InboxWait>; cancel: () => void } {
  let finish!: (how: InboxWait) => void;
  const got = new Promise<InboxWait>((res) => (finish = res));
  const stopTimer = clock.after(deadlineMs, () => finish('timeout'));
  void got.then(stopTimer);
  void sec.inbox.then(() => finish('inbox'));
  return { got, cancel: () => finish('cancelled') };
}
