import { describe, expect, it } from 'vitest';
import { SecAggClientSession, type SessionFloors } from './client-session.ts';
import type { Inbox } from './types.ts';
import { reason } from './test-support.ts';

/**
 * Attack: the page's cohort floor is checked against the n the server CLAIMS, never against what the
 * client can see (roster, inbox, survivors). The server says n = 10 (meets data-min-cohort="10", the
 * README's example), runs only t + 1 = 7 real clients, and the client still masks and reveals: the sum
 * the server unmasks holds 7 inputs, below the page's floor of 10.
 */
const L = 8;

/** `real` honest sessions, indices 1..real, of a round that claims n clients; full key/share exchange. */
function claimedRound(n: number, k: number, t: number, real: number, floors: SessionFloors) {
  const tag = `claimed/${Math.random()}`;
  const ids = Array.from({ length: real }, (_, i) => i + 1);
  const sessions = ids.map(
    (index) => new SecAggClientSession({ tag, index, n, t, k, vectorLength: L, floors }),
  );
  const keys = sessions.map((s) => s.advertise());
  const inboxes = new Map<number, Inbox>(ids.map((u) => [u, { shares: [] }]));
  const outcomes = ids.map((u) => {
    const peers = ids.filter((v) => v !== u).map((v) => ({ index: v, ...keys[v - 1] }));
    return reason(() => {
      const dealt = sessions[u - 1].receiveRoster({ peers });
      for (const s of dealt.shares) inboxes.get(s.to)!.shares.push({ from: u, ct: s.ct });
    });
  });
  return { sessions, inboxes, outcomes, ids };
}

describe('attack: a cohort floor the server meets on paper only', () => {
  it('the complete graph: n = 10 claimed, 7 real clients, a page floor of 10 clients', () => {
    const floors = { minCohort: 10, minThreshold: 6 };
    const r = claimedRound(10, 9, 6, 7, floors);
    const me = r.sessions[0];
    // Each step the client sees says "7 clients" (6 neighbours + itself); none of them is below t = 6.
    // It should refuse at the latest here, before revealing: the released sum would hold 7 < 10 inputs.
    const accepted = [
      ...r.outcomes,
      reason(() => me.receiveInbox(r.inboxes.get(1))),
      reason(() => me.mask(new Uint32Array(L))),
      reason(() => me.receiveUnmask({ survivors: r.ids, dropped: [] })),
    ];
    expect(accepted).toContain('below_floor');
  });

  it('a sparse graph: n = 50 claimed with k = 2, t = 2, a page floor of 50 clients', () => {
    const floors = { minCohort: 50, minThreshold: 2 };
    // A degree far below what SecAgg+ needs for the claimed n hides a tiny real cohort: refused at once.
    expect(reason(() => claimedRound(50, 2, 2, 3, floors))).toBe('below_floor');
  });
});
