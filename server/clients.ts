import { ProtocolError } from '../shared/base/errors.ts';
import type {
  BackendName,
  ClientSource,
  SessionCredentials,
  ServerToClientEvents,
} from '../shared/protocol/messages.ts';
import { checkHello, checkReady } from '../shared/protocol/validate.ts';
import type { Clock } from './clock.ts';
import type { Metrics } from './metrics.ts';
import {
  checkResumeKeys,
  DEFAULT_RESUME_MAX_AGE_MS,
  issueResumeToken,
  newSessionId,
  resumedSession,
  verifyResumeToken,
  type ResumeKeys,
} from './sessions.ts';

/** How the server talks to one connected client; socket.io in production, anything in tests. */
export interface ClientLink {
  send<E extends keyof ServerToClientEvents>(event: E, ...args: Parameters<ServerToClientEvents[E]>): void;
}

/** One client identity (a session): its data shard index, its current link (null while offline), readiness. */
export interface ClientRecord {
  /** The server-issued session id. */
  readonly id: string;
  /** Order of creation; picks the client's data shard. */
  readonly index: number;
  readonly source: ClientSource;
  readonly link: ClientLink | null;
  readonly backend: BackendName | null;
}

interface MutableRecord {
  id: string;
  index: number;
  source: ClientSource;
  link: ClientLink | null;
  backend: BackendName | null;
}

export interface ClientCounts {
  connected: number;
  ready: number;
  byBackend: Record<string, number>;
}

export interface RegistryOptions {
  clock: Clock;
  /** A disconnected session is forgotten this long after its link closed. */
  sessionTtlMs: number;
  /** Most sessions held; at the cap the longest-disconnected is forgotten, or a new one refused. */
  maxSessions: number;
  /** Gauges of connected and ready clients, kept current (optional in tests). */
  metrics?: Metrics;
  /** Sending to one link threw: that client misses the message, nobody else is affected. */
  onSendError?: (e: unknown) => void;
  /** Signs resume tokens (at least 32 bytes); every registry sharing it accepts the others' sessions. */
  resumeKey: Uint8Array;
  /** The key before the last rotation: its tokens still resume (until they age out), none is issued. */
  previousResumeKey?: Uint8Array | null;
  /** A resume token is refused this long after it was issued (default 7 days); each welcome renews it. */
  resumeMaxAgeMs?: number;
  /**
   * The first index given to a new session (default 0). Registries sharing a key hand out indices
   * independently: a coordinator taking over starts its term above the indices its predecessor used.
   */
  firstIndex?: number;
}

/**
 * Who is known to the server: sessions, their links and readiness. Identities are server-issued and
 * unforgeable: a hello without credentials starts a session (random id + a resume token MACed under the
 * resume key, server/sessions.ts; nothing about the token is stored); resuming needs a valid token, and
 * is refused while another link holds the session. A valid token whose session this registry does not
 * hold (it expired, was evicted, or was issued by another registry with the same key: the coordinator
 * before a failover) recreates the session with its id and data-shard index. One link has exactly one
 * identity. Disconnected sessions expire after sessionTtlMs and at most maxSessions are held. Every
 * operation is O(1): counts (connected, ready, ready by backend) are kept as records change, and expiry
 * walks only the sessions that are due.
 */
export class ClientRegistry {
  private readonly records = new Map<string, MutableRecord>();
  private readonly byLink = new Map<ClientLink, MutableRecord>();
  /** Disconnected sessions in order of disconnection, with the time each expires. */
  private readonly idle = new Map<MutableRecord, number>();
  private readonly readySet = new Set<MutableRecord>();
  private readonly backendCounts = new Map<BackendName, number>();
  private connected = 0;
  private nextIndex: number;
  private readonly keys: ResumeKeys;
  private readonly maxAgeMs: number;

  constructor(private readonly o: RegistryOptions) {
    if (!(o.sessionTtlMs >= 0)) throw new RangeError(`sessionTtlMs must be >= 0, got ${o.sessionTtlMs}`);
    if (!(Number.isInteger(o.maxSessions) && o.maxSessions >= 1))
      throw new RangeError(`maxSessions must be an integer >= 1, got ${o.maxSessions}`);
    this.keys = { key: o.resumeKey, previousKey: o.previousResumeKey ?? null };
    checkResumeKeys(this.keys);
    this.maxAgeMs = o.resumeMaxAgeMs ?? DEFAULT_RESUME_MAX_AGE_MS;
    if (!(this.maxAgeMs > 0)) throw new RangeError(`resumeMaxAgeMs must be > 0, got ${o.resumeMaxAgeMs}`);
    this.nextIndex = o.firstIndex ?? 0;
    if (!(Number.isInteger(this.nextIndex) && this.nextIndex >= 0 && this.nextIndex <= 0xffff_ffff))
      throw new RangeError(`firstIndex must be an integer in 0..2^32-1, got ${o.firstIndex}`);
  }

  /**
   * A `hello` on `link`: starts a session, or resumes one with its token. Returns the record and the
   * credentials to send back in `welcome`: on a resume, the same id with a freshly issued token.
   */
  hello(link: ClientLink, raw: unknown): { record: ClientRecord; credentials: SessionCredentials } {
    if (this.byLink.has(link))
      throw new ProtocolError('already_identified', 'this connection already has an identity');
    const h = checkHello(raw);
    if (!h.ok) throw new ProtocolError(h.reason, h.message);
    this.expire();
    const resume = h.value.resume;
    if (!resume) return this.create(link, h.value.source);
    const claim = verifyResumeToken(
      this.keys,
      resume.sessionId,
      resume.resumeToken,
      this.o.clock.now(),
      this.maxAgeMs,
    );
    if (!claim)
      throw new ProtocolError('bad_token', 'no such session (it may have expired): start a new one');
    let r = this.records.get(resume.sessionId);
    // Ids are 16 random bytes: a held record on another shard than its authentic token names is a key
    // holder's bug, refused rather than guessed at.
    if (r && r.index !== claim.index)
      throw new ProtocolError('bad_token', 'these credentials do not match the session: start a new one');
    if (r?.link) throw new ProtocolError('session_taken', 'this session is live on another connection');
    if (r) this.idle.delete(r);
    else r = this.admit(resume.sessionId, claim.index, h.value.source);
    this.attach(r, link);
    return { record: r, credentials: this.credentials(r) };
  }

  /**
   * The id of the session these credentials resume, or null (forged, expired or other-key token, not
   * even credentials). Only the token is checked, not whether this registry holds the session: hello
   * recreates it. Lets a reconnecting client back in without a new join token; changes nothing.
   */
  sessionOf(raw: unknown): string | null {
    return resumedSession(this.keys, raw, this.o.clock.now(), this.maxAgeMs);
  }

  /** A `ready` message from the client with this id: validated and recorded. */
  ready(id: string | null, raw: unknown): ClientRecord {
    const r = this.records.get(id ?? '');
    if (!r?.link) throw new ProtocolError('unknown_client', 'say hello before ready');
    const m = checkReady(raw);
    if (!m.ok) throw new ProtocolError(m.reason, m.message);
    this.change(r, () => (r.backend = m.value.backend));
    return r;
  }

  /** The link closed. Returns its record, or null when the link had no identity. */
  disconnect(link: ClientLink): ClientRecord | null {
    const r = this.byLink.get(link);
    if (!r) return null;
    this.byLink.delete(link);
    this.change(r, () => (r.link = null));
    this.idle.set(r, this.o.clock.now() + this.o.sessionTtlMs);
    this.expire();
    return r;
  }

  get(id: string | null): ClientRecord | undefined {
    return id === null ? undefined : this.records.get(id);
  }

  /** Sessions held (connected or not). */
  get size(): number {
    return this.records.size;
  }

  counts(): ClientCounts {
    const byBackend: Record<string, number> = {};
    for (const [b, n] of this.backendCounts) if (n > 0) byBackend[b] = n;
    return { connected: this.connected, ready: this.readySet.size, byBackend };
  }

  get readyCount(): number {
    return this.readySet.size;
  }

  /** Ready clients (online, backend reported), in order of creation. */
  readyClients(): ClientRecord[] {
    return [...this.readySet].sort((a, b) => a.index - b.index);
  }

  /** Sends to one client if it is online; false if it is not (or the send failed). */
  send<E extends keyof ServerToClientEvents>(
    rec: ClientRecord,
    event: E,
    ...args: Parameters<ServerToClientEvents[E]>
  ): boolean {
    const link = rec.link;
    if (!link) return false;
    try {
      link.send(event, ...args);
      return true;
    } catch (e) {
      this.o.onSendError?.(e);
      return false;
    }
  }

  /** Sends to every online client. */
  broadcast<E extends keyof ServerToClientEvents>(
    event: E,
    ...args: Parameters<ServerToClientEvents[E]>
  ): void {
    for (const r of this.byLink.values()) this.send(r, event, ...args);
  }

  /** Forgets disconnected sessions whose time is up (the oldest first; stops at the first still due). */
  expire(): void {
    const now = this.o.clock.now();
    for (const [r, at] of this.idle) {
      if (at > now) break;
      this.forget(r, 'expired');
    }
  }

  private create(
    link: ClientLink,
    source: ClientSource,
  ): { record: ClientRecord; credentials: SessionCredentials } {
    if (this.nextIndex > 0xffff_ffff) throw new ProtocolError('server_full', 'no data-shard index is left');
    const r = this.admit(newSessionId(), this.nextIndex, source);
    this.attach(r, link);
    return { record: r, credentials: this.credentials(r) };
  }

  /** A new record (a new session, or one recreated from its token), within maxSessions. */
  private admit(id: string, index: number, source: ClientSource): MutableRecord {
    if (this.records.size >= this.o.maxSessions) {
      const oldest = this.idle.keys().next();
      if (oldest.done) throw new ProtocolError('server_full', 'the server holds all the sessions it may');
      this.forget(oldest.value, 'evicted');
    }
    const r: MutableRecord = { id, index, source, link: null, backend: null };
    this.records.set(id, r);
    // New sessions never take an index a recreated one holds (or held): the counter stays above them all.
    this.nextIndex = Math.max(this.nextIndex, index + 1);
    return r;
  }

  /** The session's credentials, with a token issued now (renewed at every welcome). */
  private credentials(r: MutableRecord): SessionCredentials {
    return {
      sessionId: r.id,
      resumeToken: issueResumeToken(this.o.resumeKey, r.id, r.index, this.o.clock.now()),
    };
  }

  private attach(r: MutableRecord, link: ClientLink): void {
    this.byLink.set(link, r);
    this.change(r, () => (r.link = link));
  }

  private forget(r: MutableRecord, why: 'expired' | 'evicted'): void {
    this.idle.delete(r);
    this.records.delete(r.id);
    this.o.metrics?.sessionsEnded.inc({ why });
    this.o.metrics?.sessions.set(this.records.size);
  }

  /** Applies a mutation to one record with its contribution to the counts taken out and put back. */
  private change(r: MutableRecord, mutate: () => void): void {
    this.count(r, -1);
    mutate();
    this.count(r, +1);
    this.refreshGauges();
  }

  private count(r: MutableRecord, sign: 1 | -1): void {
    if (!r.link) return;
    this.connected += sign;
    if (!r.backend) return;
    if (sign > 0) this.readySet.add(r);
    else this.readySet.delete(r);
    this.backendCounts.set(r.backend, (this.backendCounts.get(r.backend) ?? 0) + sign);
  }

  private refreshGauges(): void {
    const m = this.o.metrics;
    if (!m) return;
    m.sessions.set(this.records.size);
    m.clientsConnected.set(this.connected);
    m.clientsByBackend.reset();
    for (const [b, n] of this.backendCounts) if (n > 0) m.clientsByBackend.set({ backend: b }, n);
  }
}
