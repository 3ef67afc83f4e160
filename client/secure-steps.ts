import { vectorLength } from '../shared/fl/encoding.ts';
import type { ClientAttestation } from '../shared/secagg/client-session.ts';
import { ProtocolError, type RejectReason } from '../shared/base/errors.ts';
import type { Floors } from '../shared/protocol/floors.ts';
import type { RoundRef, RoundStart, SecAggRoundInfo } from '../shared/protocol/messages.ts';
import type { ClientEvents } from './client-api.ts';
import type { Clock } from './clock.ts';
import type { SocketLike } from './socket.ts';
import { andThen, type Awaitable, type SecureEngine } from './secure-engine.ts';

/** The secure-aggregation attempt we last joined. */
export interface SecureRound {
  ref: RoundRef;
  n: number;
  /** Where the session lives (a worker in browsers), and its name there. */
  engine: SecureEngine;
  id: string;
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

/**
 * Opens the round's secure-aggregation session; its keys go out as soon as they exist, so key exchange runs
 * while we train. A plan the session refuses throws (or rejects, from a worker).
 */
export function joinSecure(
  host: SecureHost,
  engine: SecureEngine,
  ref: RoundRef,
  info: SecAggRoundInfo,
  numParams: number,
  floors: Floors,
  attestation: ClientAttestation | undefined,
): Awaitable<SecureRound> {
  const id = `${ref.round}.${ref.attempt}`;
  const advert = engine.open(id, {
    ...info,
    vectorLength: vectorLength(numParams),
    floors,
    consistency: info.consistency === true,
    attestation,
  });
  return andThen(advert, (keys) => {
    let gotInbox!: () => void;
    const inbox = new Promise<void>((res) => (gotInbox = res));
    host.socket()?.emit('secagg:keys', { ...ref, ...keys });
    host.report({ round: ref.round, step: 'keys' });
    return { ref, n: info.n, engine, id, inbox, gotInbox };
  });
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
    onSecure(host, m, 'shares', (sec) =>
      andThen(sec.engine.roster(sec.id, m, sec.n), (shares) => {
        s.emit('secagg:shares', { round: m.round, attempt: m.attempt, ...shares });
      }),
    ),
  );
  s.on('secagg:inbox', (m) =>
    onSecure(host, m, 'inbox', (sec) =>
      andThen(sec.engine.inbox(sec.id, m, sec.n), ({ peers, bad }) => {
        sec.gotInbox();
        return `${peers} peers${bad ? `, ${bad} bad boxes` : ''}`;
      }),
    ),
  );
  s.on('secagg:survivors', (m) =>
    onSecure(host, m, 'signature', (sec) =>
      andThen(sec.engine.survivors(sec.id, m), ({ sig }) => {
        s.emit('secagg:signature', { round: m.round, attempt: m.attempt, sig });
        return `signed a survivor set of ${m.survivors.length}`;
      }),
    ),
  );
  s.on('secagg:unmask', (m) =>
    onSecure(host, m, 'reveal', (sec) =>
      andThen(sec.engine.unmask(sec.id, m, sec.n), (r) => {
        s.emit('secagg:reveal', { round: m.round, attempt: m.attempt, ...r.reveal });
        return `${r.b} self-mask shares, ${r.s} key shares`;
      }),
    ),
  );
}

/** Runs one secure-aggregation step for the current round; a request we must not answer is refused and reported. */
function onSecure(
  host: SecureHost,
  m: RoundRef,
  step: 'shares' | 'inbox' | 'signature' | 'reveal',
  fn: (sec: SecureRound) => Awaitable<string | void>,
): void {
  const sec = host.current();
  if (!sec || sec.ref.round !== m?.round || sec.ref.attempt !== m?.attempt) return; // not our round (stale)
  const done = (detail: string | void): void =>
    host.report({ round: m.round, step, detail: detail ?? undefined });
  const refuse = (e: unknown): void => {
    const reason = e instanceof ProtocolError ? e.reason : 'malformed';
    refuseSecure(host, m, { reason, message: (e as Error).message }, true);
  };
  // The engine answers at once inline, later from a worker; either way in the order the requests came.
  try {
    const r = fn(sec);
    if (r instanceof Promise) r.then(done, refuse);
    else done(r);
  } catch (e) {
    refuse(e);
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
