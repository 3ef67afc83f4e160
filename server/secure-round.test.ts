import { describe, expect, it } from 'vitest';
import { SecAggClientSession } from '../shared/secagg/client-session.ts';
import type { SecAggPhase } from '../shared/secagg/types.ts';
import { packReveal, packShares, unpackInbox, unpackRoster, unpackUnmask } from '../shared/secagg/wire.ts';
import { ManualClock } from './clock.ts';
import { createMetrics } from './metrics.ts';
import {
  OnlineWitness,
  SecureRound,
  type SecureOutcome,
  type SecureRoundOptions,
  type WaitingView,
} from './secure-round.ts';

/** A phase's waiting set and who is online, changed by hand; the witness is checked against a scan. */
class Fake implements WaitingView {
  phase: SecAggPhase = 'keys';
  waiting = new Set<number>();
  online = new Set<number>();
  calls = 0;
  lookups = 0;
  open(phase: SecAggPhase, members: number[]): void {
    this.phase = phase;
    this.waiting = new Set(members);
  }
  waitingFor(): number[] {
    return [...this.waiting];
  }
  isWaitingFor(u: number): boolean {
    this.lookups++;
    return this.waiting.has(u);
  }
  isOnline = (u: number): boolean => {
    this.calls++;
    return this.online.has(u);
  };
  scan(): boolean {
    return [...this.waiting].some((u) => this.online.has(u));
  }
}

/** xorshift32: the same sequence of operations on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

describe('OnlineWitness: is any member the phase waits for online?', () => {
  it('answers as a full scan does through random answers, disconnects, reconnects and phase changes', () => {
    const f = new Fake();
    const w = new OnlineWitness(f, f.isOnline);
    const rand = rng(12345);
    const n = 12;
    const ids = Array.from({ length: n }, (_, i) => i + 1);
    const phases: SecAggPhase[] = ['keys', 'shares', 'masked', 'consistency', 'unmask'];
    let disagreements = 0;
    let trueAnswers = 0;
    let falseAnswers = 0;
    for (let trial = 0; trial < 400; trial++) {
      f.online = new Set(ids.filter(() => rand() < 0.6));
      f.open(
        phases[trial % phases.length],
        ids.filter(() => rand() < 0.9),
      );
      for (let step = 0; step < 40 && f.waiting.size; step++) {
        const u = 1 + Math.floor(rand() * n);
        const r = rand();
        if (r < 0.5)
          f.waiting.delete(u); // u answered
        else if (r < 0.8)
          f.online.delete(u); // u went offline
        else f.online.add(u); // u came back
        const want = f.scan();
        if (w.any() !== want) disagreements++;
        if (want) trueAnswers++;
        else falseAnswers++;
      }
    }
    expect(disagreements).toBe(0);
    // Both answers were exercised, many times each.
    expect(trueAnswers).toBeGreaterThan(1000);
    expect(falseAnswers).toBeGreaterThan(100);
  });

  it('costs O(1) online checks per message: 10 000 members answering with 10% offline', () => {
    const f = new Fake();
    const w = new OnlineWitness(f, f.isOnline);
    const n = 10_000;
    const ids = Array.from({ length: n }, (_, i) => i + 1);
    f.online = new Set(ids.filter((u) => u % 10 !== 0)); // every tenth vanished
    f.open('shares', ids);
    let asked = 0;
    // The online members answer in a scattered order; the witness is asked after every message.
    for (let i = 0; i < n; i++) {
      const u = 1 + ((i * 7919) % n);
      if (!f.online.has(u)) continue;
      f.waiting.delete(u);
      expect(w.any()).toBe(f.waiting.size > 0 && f.scan());
      asked++;
    }
    expect(f.waiting.size).toBe(n / 10); // only the offline tenth is left: the phase can close
    expect(w.any()).toBe(false);
    // A scan per message would have made ~n^2 / 2 = 5e7 checks; the cursor walks the list about once.
    expect(asked).toBe(9000);
    expect(f.calls).toBeLessThan(4 * n);
  });

  it('stays O(1) when two members take turns to disconnect at the two ends of the list', () => {
    const f = new Fake();
    const w = new OnlineWitness(f, f.isOnline);
    const n = 10_000;
    const ids = Array.from({ length: n }, (_, i) => i + 1);
    f.online = new Set(ids);
    f.open('shares', ids);
    for (let u = 2; u < n; u++) {
      f.waiting.delete(u); // everyone but 1 and n answers
      expect(w.any()).toBe(true);
    }
    const before = f.lookups + f.calls;
    for (let r = 0; r < 1000; r++) {
      f.online.delete(1);
      expect(w.any()).toBe(true); // n is online
      f.online.add(1);
      f.online.delete(n);
      expect(w.any()).toBe(true); // 1 is back
      f.online.add(n);
    }
    expect((f.lookups + f.calls - before) / 2000).toBeLessThan(10); // checks per disconnect, not ~n
    f.online.delete(1);
    f.online.delete(n);
    expect(w.any()).toBe(false);
  });

  it('finds a member that came back after the cursor passed it as offline', () => {
    const f = new Fake();
    const w = new OnlineWitness(f, f.isOnline);
    f.online = new Set([3]);
    f.open('masked', [1, 2, 3]);
    expect(w.any()).toBe(true); // 3
    f.waiting.delete(3);
    expect(w.any()).toBe(false); // 1 and 2 are offline
    f.online.add(1);
    expect(w.any()).toBe(true); // 1 is back: the cursor had passed it
    f.waiting.delete(1);
    expect(w.any()).toBe(false);
    f.open('unmask', [2]); // a new phase starts over
    f.online.add(2);
    expect(w.any()).toBe(true);
  });
});

/** A 3-client SecureRound on a complete graph over in-memory sessions; what it sends is kept in `outbox`. */
function threeClients(extra: Partial<SecureRoundOptions> = {}) {
  const n = 3;
  const L = 8;
  const online = new Set([1, 2, 3]);
  const clients = [1, 2, 3].map(
    (i) => new SecAggClientSession({ tag: 'charge', index: i, n, t: 2, vectorLength: L }),
  );
  const outbox: { to: number; kind: string; m: unknown }[] = [];
  const deliver = (kind: string) => (to: number, m: unknown) => {
    outbox.push({ to, kind, m });
    return online.has(to);
  };
  let outcome: SecureOutcome | null = null;
  const round = new SecureRound({
    tag: 'charge',
    n,
    neighbours: [
      [2, 3],
      [1, 3],
      [1, 2],
    ],
    t: 2,
    vectorLength: L,
    minSurvivors: 2,
    ref: { round: 1, attempt: 1 },
    clock: new ManualClock(0),
    defer: (fn) => queueMicrotask(fn),
    keysDeadlineMs: 1000,
    sharesDeadlineMs: 1000,
    maskedDeadlineAt: 1000,
    unmaskDeadlineMs: 1000,
    consistencyDeadlineMs: 1000,
    metrics: createMetrics(),
    send: {
      roster: deliver('roster'),
      inbox: deliver('inbox'),
      survivors: deliver('survivors'),
      unmask: deliver('unmask'),
      release: deliver('release'),
    },
    online: (i) => online.has(i),
    log: () => {},
    done: (o) => (outcome = o),
    ...extra,
  });
  const to = (kind: string, i: number): any => outbox.find((x) => x.kind === kind && x.to === i)!.m;
  return { round, clients, outbox, online, to, n, L, outcome: () => outcome };
}

/** Lets queued work run: a timer turn, then an immediate queued after those the round queued (sends). */
const settle = (): Promise<void> => new Promise((r) => setTimeout(() => setImmediate(r), 0));

describe('SecureRound while the privacy charge is written', () => {
  it('closes nothing (not even "the rest are offline") until the charge is durable; then R4 runs', async () => {
    let charge!: () => void;
    const { round, clients, outbox, online, to, n, L, outcome } = threeClients({
      beforeUnmask: () => new Promise<void>((r) => (charge = r)),
    });
    for (const i of [1, 2, 3]) round.keys(i, clients[i - 1].advertise());
    round.maybeCloseEarly();
    await settle(); // a phase's requests go out in slices after the turn that closed it
    for (const i of [1, 2, 3])
      round.shares(i, packShares(clients[i - 1].receiveRoster(unpackRoster(to('roster', i), n))));
    round.maybeCloseEarly();
    await settle();
    for (const i of [1, 2, 3]) {
      clients[i - 1].receiveInbox(unpackInbox(to('inbox', i), n));
      round.masked(i, await clients[i - 1].mask(new Uint32Array(L).fill(i)));
    }
    round.maybeCloseEarly(); // R2 closes: the charge is being written
    await settle();
    expect(round.phase).toBe('unmask');
    // Everyone goes offline while the charge is written: nothing may close, nothing is sealed.
    online.clear();
    round.maybeCloseEarly();
    await settle();
    expect(outcome()).toBeNull();
    expect(round.session.waitingCount).toBe(3);
    expect(outbox.filter((x) => x.kind === 'unmask')).toEqual([]);
    // They are back before it is durable: the requests go out, and the reveals complete the round.
    for (const i of [1, 2, 3]) online.add(i);
    charge();
    await settle();
    expect(outbox.filter((x) => x.kind === 'unmask').map((x) => x.to)).toEqual([1, 2, 3]);
    for (const i of [1, 2, 3])
      round.reveal(i, packReveal(clients[i - 1].receiveUnmask(unpackUnmask(to('unmask', i), n))));
    round.maybeCloseEarly();
    for (let k = 0; k < 50 && !outcome(); k++) await settle();
    expect(outcome()).toMatchObject({ ok: true, survivors: [1, 2, 3] });
    expect([...(outcome() as unknown as { sum: Uint32Array }).sum]).toEqual(new Array(L).fill(6));
  });
});

describe("SecureRound sends a phase's requests in slices", () => {
  it('after the turn that closed the phase; a member re-sent its request before then gets it once', async () => {
    const queued: (() => void)[] = [];
    const { round, clients, outbox } = threeClients({ schedule: (fn) => queued.push(fn) });
    for (const i of [1, 2, 3]) round.keys(i, clients[i - 1].advertise());
    round.maybeCloseEarly(); // R0 closes: three rosters to pack and send
    expect(round.phase).toBe('shares');
    expect(outbox.filter((x) => x.kind === 'roster')).toEqual([]);
    expect(round.resend(2)).toBe(true); // client 2 reconnected first: sent at once
    expect(outbox.filter((x) => x.kind === 'roster').map((x) => x.to)).toEqual([2]);
    while (queued.length) queued.shift()!();
    expect(outbox.filter((x) => x.kind === 'roster').map((x) => x.to)).toEqual([2, 1, 3]);
  });

  it('a request still queued when its phase closes is not sent (no unmask request after R4 closed)', async () => {
    const queued: (() => void)[] = [];
    const drain = (): void => {
      while (queued.length) queued.shift()!();
    };
    const { round, clients, outbox, online, to, n, L } = threeClients({ schedule: (fn) => queued.push(fn) });
    for (const i of [1, 2, 3]) round.keys(i, clients[i - 1].advertise());
    round.maybeCloseEarly();
    drain();
    for (const i of [1, 2, 3])
      round.shares(i, packShares(clients[i - 1].receiveRoster(unpackRoster(to('roster', i), n))));
    round.maybeCloseEarly();
    drain();
    for (const i of [1, 2, 3]) {
      clients[i - 1].receiveInbox(unpackInbox(to('inbox', i), n));
      round.masked(i, await clients[i - 1].mask(new Uint32Array(L).fill(i)));
    }
    online.clear(); // everyone leaves as R2 closes: R4 closes at once ('the rest are offline')
    round.maybeCloseEarly();
    await Promise.resolve(); // the deferred close check
    expect(round.phase).toBe('unmask');
    drain(); // the unmask requests queued at R2's close
    expect(outbox.filter((x) => x.kind === 'unmask')).toEqual([]);
  });

  it('an inbox still queued when R2 closes is not cut or sent (a client may mask before its inbox arrives)', async () => {
    const queued: (() => void)[] = [];
    const drain = (): void => {
      while (queued.length) queued.shift()!();
    };
    const errors: unknown[] = [];
    const { round, clients, outbox, to, n, L } = threeClients({
      schedule: (fn) => queued.push(fn),
      defer: (fn) =>
        queueMicrotask(() => {
          try {
            fn();
          } catch (e) {
            errors.push(e);
          }
        }),
    });
    for (const i of [1, 2, 3]) round.keys(i, clients[i - 1].advertise());
    round.maybeCloseEarly();
    drain();
    for (const i of [1, 2, 3])
      round.shares(i, packShares(clients[i - 1].receiveRoster(unpackRoster(to('roster', i), n))));
    round.maybeCloseEarly(); // R1 closes: three inboxes queued, none cut yet
    expect(queued.length).toBeGreaterThan(0);
    // All three send their masked input before any inbox went out (the server cannot tell): R2 closes.
    for (const i of [1, 2, 3]) round.masked(i, new Uint32Array(L).fill(i));
    round.maybeCloseEarly();
    await Promise.resolve();
    expect(round.phase).toBe('unmask');
    drain(); // the queued inboxes (for a closed phase) and the unmask requests
    await Promise.resolve();
    expect(outbox.filter((x) => x.kind === 'inbox')).toEqual([]);
    expect(outbox.filter((x) => x.kind === 'unmask').map((x) => x.to)).toEqual([1, 2, 3]);
    expect(errors).toEqual([]);
  });
});
