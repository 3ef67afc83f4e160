import { describe, expect, it } from 'vitest';
import type { RoundSummary } from '../shared/protocol/messages.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { ManualClock } from './clock.ts';
import { PUSH_HISTORY, pushedStatus, StatusPush } from './status-push.ts';

function rig(minIntervalMs = 200, checkEveryMs = 1000) {
  const clock = new ManualClock(1000);
  let status = { phase: 'waiting', round: 1, history: [] as RoundSummary[] } as unknown as ServerStatus;
  const sent: ServerStatus[] = [];
  const push = new StatusPush({
    status: () => status,
    emit: (s) => sent.push(s),
    clock,
    minIntervalMs,
    checkEveryMs,
  });
  const set = (patch: Partial<ServerStatus>): void => {
    status = { ...status, ...patch };
  };
  return { clock, push, sent, set };
}

describe('StatusPush', () => {
  it('pushes nothing without observers', () => {
    const r = rig();
    r.set({ round: 2 });
    r.push.kick();
    r.clock.advance(5000);
    expect(r.sent).toEqual([]);
  });

  it('coalesces a burst of kicks into one push, and pushes only what changed', () => {
    const r = rig();
    r.push.observerJoined();
    r.clock.advance(0); // the join's first check
    expect(r.sent).toHaveLength(1);
    r.set({ phase: 'training', reported: 1 });
    for (let i = 0; i < 50; i++) r.push.kick();
    r.set({ reported: 2 });
    r.clock.advance(200);
    expect(r.sent.map((s) => s.reported)).toEqual([undefined, 2]);
    r.push.kick();
    r.clock.advance(200);
    expect(r.sent).toHaveLength(2); // unchanged: not sent again
  });

  it('waits minIntervalMs between pushes; the periodic check catches changes no kick announced', () => {
    const r = rig(200, 1000);
    r.push.observerJoined();
    r.clock.advance(0);
    r.set({ round: 2 });
    r.push.kick();
    r.clock.advance(100);
    expect(r.sent).toHaveLength(1); // within the interval of the first push
    r.clock.advance(100);
    expect(r.sent.at(-1)!.round).toBe(2);
    r.set({ round: 3 }); // no kick; the periodic check (every 1000 ms from the join) comes at t + 1000
    r.clock.advance(799);
    expect(r.sent.at(-1)!.round).toBe(2);
    r.clock.advance(1);
    expect(r.sent.at(-1)!.round).toBe(3);
  });

  it('stops checking when the last observer leaves, and after stop()', () => {
    const r = rig();
    r.push.observerJoined();
    r.clock.advance(0);
    r.push.observerLeft();
    r.set({ round: 9 });
    r.push.kick();
    r.clock.advance(5000);
    expect(r.sent).toHaveLength(1);
    r.push.observerJoined();
    r.clock.advance(0);
    expect(r.sent.at(-1)!.round).toBe(9);
    r.push.stop();
    r.set({ round: 10 });
    r.push.kick();
    r.clock.advance(5000);
    expect(r.sent.at(-1)!.round).toBe(9);
  });

  it('a pushed status carries at most PUSH_HISTORY rounds, the newest', () => {
    const history = Array.from({ length: PUSH_HISTORY + 7 }, (_, i) => ({ round: i + 1 }) as RoundSummary);
    const s = pushedStatus({ history } as unknown as ServerStatus);
    expect(s.history).toHaveLength(PUSH_HISTORY);
    expect(s.history[0].round).toBe(8);
    expect(s.history.at(-1)!.round).toBe(PUSH_HISTORY + 7);
    const short = { history: history.slice(0, 3) } as unknown as ServerStatus;
    expect(pushedStatus(short)).toBe(short);
  });
});
