import {
  PROTOCOL_VERSION,
  type ClientSource,
  type Rejection,
  type RoundStart,
  type SessionCredentials,
  type Welcome,
} from '../shared/protocol/messages.ts';
import { checkRoundAgainstFloors, type FloorCheck, type Floors } from '../shared/protocol/floors.ts';
import type { RejectReason } from '../shared/base/errors.ts';
import { samePlan, tryCheckTask, type CheckedTask } from '../shared/model/task.ts';
import type { Clock } from './clock.ts';
import type { IdentityStore, Participation } from './profile.ts';
import type { SocketLike } from './socket.ts';

/** Before saying hello again when the server asked us to wait (our old connection still holds the session). */
const HELLO_RETRY_MS = 5_000;

function parseCredentials(v: string | null): SessionCredentials | null {
  if (!v) return null;
  try {
    const c = JSON.parse(v) as Partial<SessionCredentials>;
    return typeof c.sessionId === 'string' && typeof c.resumeToken === 'string'
      ? { sessionId: c.sessionId, resumeToken: c.resumeToken }
      : null;
  } catch {
    return null;
  }
}

/** The round's plan against the page's floors; a plan that cannot even be read is malformed. */
export function checkFloors(r: RoundStart, floors: Floors): FloorCheck {
  try {
    return checkRoundAgainstFloors(r, floors);
  } catch (e) {
    return { ok: false, reason: 'malformed', message: `unreadable round plan (${(e as Error).message})` };
  }
}

export type TaskCheck =
  { ok: true; value: CheckedTask } | { ok: false; reason: RejectReason; message: string };

/**
 * The welcome's task against the page's pin (null: nothing pinned yet). A task that fails checkTask is
 * malformed; a valid one with another hash is task_mismatch: the server may not choose what the
 * visitor's data is run through.
 */
export function checkWelcomeTask(w: Welcome, pinned: string | null): TaskCheck {
  const t = tryCheckTask(w?.task);
  if (!t.ok) return { ok: false, reason: 'malformed', message: `the server's task is refused: ${t.message}` };
  if (pinned !== null && t.value.hash !== pinned)
    return {
      ok: false,
      reason: 'task_mismatch',
      message: `the server's task "${t.value.task.name}" (${t.value.hash.slice(0, 16)}...) is not the task this page agreed to (${pinned.slice(0, 16)}...)`,
    };
  return t;
}

/** A round's task and plan against the pinned task: any difference is task_mismatch. */
export function checkRoundTask(r: RoundStart, pinned: string): FloorCheck {
  const t = tryCheckTask(r?.task);
  if (!t.ok) return { ok: false, reason: 'malformed', message: `the round's task is refused: ${t.message}` };
  if (t.value.hash !== pinned)
    return { ok: false, reason: 'task_mismatch', message: "the round trains another task than this page's" };
  if (!samePlan(r.train, t.value.task.plan))
    return {
      ok: false,
      reason: 'task_mismatch',
      message: "the round's training plan is not its task's plan",
    };
  return { ok: true, toleratedColluders: null, noiseMultiplier: 0 };
}

/** What the session needs from the client: its connection now, and whether the server has welcomed it. */
export interface SessionHost {
  socket(): SocketLike | null;
  welcomed(): boolean;
}

/**
 * The server-issued session (id + resume token), kept in the identity store: offered on every hello,
 * replaced on every welcome, dropped when the server no longer knows it.
 */
export class IdentitySession {
  private cancelHelloRetry: (() => void) | null = null;

  constructor(
    private readonly identity: IdentityStore,
    private readonly clock: Clock,
    private readonly source: ClientSource,
    private readonly host: SessionHost,
  ) {}

  get sessionId(): string | null {
    return parseCredentials(this.identity.get())?.sessionId ?? null;
  }

  /** The stored session's credentials (offered at a reconnect's handshake), or null. */
  credentials(): SessionCredentials | null {
    return parseCredentials(this.identity.get());
  }

  /** Starts a session, or resumes the stored one. */
  hello(): void {
    const resume = parseCredentials(this.identity.get());
    this.host.socket()?.emit('hello', {
      protocolVersion: PROTOCOL_VERSION,
      source: this.source,
      ...(resume ? { resume } : {}),
    });
  }

  welcomed(w: Welcome): void {
    this.identity.set(JSON.stringify({ sessionId: w.sessionId, resumeToken: w.resumeToken }));
  }

  onHelloRejected(r: Rejection): void {
    if (r.reason === 'bad_token') {
      // The session expired (or was never valid): start a new one now.
      this.identity.clear();
      this.hello();
    } else if (r.reason === 'session_taken' || r.reason === 'rate_limited' || r.reason === 'server_full') {
      // Our previous connection may still hold the session until the server notices it is gone: wait, retry.
      this.cancelHelloRetry?.();
      this.cancelHelloRetry = this.clock.after(HELLO_RETRY_MS, () => {
        this.cancelHelloRetry = null;
        if (this.host.socket()?.connected && !this.host.welcomed()) this.hello();
      });
    }
  }

  /** Gives up a pending hello retry (the connection dropped, or the client ends). */
  cancelRetry(): void {
    this.cancelHelloRetry?.();
  }
}

/**
 * The profile's participation slot (browsers: one tab of a profile takes part at a time). Asked for once
 * per client; released when it ends, so another tab may take part.
 */
export class ParticipationGate {
  /** Set while (and after) asking for the slot; aborted by release(). */
  private gate: AbortController | null = null;
  private slot: Participation | null = null;

  get asked(): boolean {
    return this.gate !== null;
  }

  /** Asks take for the slot: waiting() if another tab holds it, then taken() or failed(). */
  ask(
    take: (onWaiting: () => void, signal: AbortSignal) => Promise<Participation>,
    waiting: () => void,
    taken: () => void,
    failed: (e: Error) => void,
  ): void {
    const gate = (this.gate = new AbortController());
    take(() => {
      if (!gate.signal.aborted) waiting();
    }, gate.signal).then(
      (slot) => {
        if (gate.signal.aborted) return slot.release(); // released (stopped) meanwhile
        this.slot = slot;
        taken();
      },
      (e: unknown) => {
        if (!gate.signal.aborted) failed(e instanceof Error ? e : new Error(String(e)));
      },
    );
  }

  /** Stops asking and gives the slot back: another tab of the profile may take part now. */
  release(): void {
    this.gate?.abort();
    this.slot?.release();
    this.slot = null;
  }
}
