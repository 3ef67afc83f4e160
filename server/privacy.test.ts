import { describe, expect, it } from 'vitest';
import { PrivacyLedger } from './privacy.ts';

const ledger = (q: number, z: number, budget = 1e9) =>
  new PrivacyLedger({
    noiseMultiplier: z,
    delta: 1e-5,
    epsilonBudget: budget,
    q,
    initialClip: 0.1,
    adaptive: null,
    expectedClients: 10,
  });

// Reference values: ../shared/specs/privacy.md, section A3 (vectors 5 and 7).
describe('PrivacyLedger', () => {
  it('charges released models at q and the server at q = 1, side by side', () => {
    const l = ledger(0.01, 0.7);
    l.charge(null);
    l.charge(null);
    expect(l.epsilonAgainstServer()).toBeCloseTo(10.8602036, 4); // vector 7: q = 1, z = 0.7, T = 2
    for (let r = 2; r < 120; r++) l.charge(null);
    expect(l.epsilon().epsilon / 3.2392676 - 1).toBeLessThan(1e-4); // vector 5: q = 0.01, z = 0.7, T = 120
    expect(l.epsilon().epsilon / 3.2392676 - 1).toBeGreaterThan(-1e-4);
    const s = l.status();
    expect(s.epsilonAgainstServer).toBeGreaterThan(s.epsilon);
    expect(s.rounds).toBe(120);
  });

  it('with q = 1 both views agree, and nothing is spent before the first round', () => {
    const l = ledger(1, 1.5);
    expect(l.status()).toMatchObject({ epsilon: 0, epsilonAgainstServer: 0 });
    l.charge(null);
    expect(l.epsilon().epsilon).toBe(l.epsilonAgainstServer());
  });

  it('refuses the round that would pass the budget, and says so', () => {
    const l = ledger(1, 0.7, 10.8602 + 0.5);
    expect(l.checkNextRound().ok).toBe(true);
    l.charge(null);
    expect(l.checkNextRound().ok).toBe(true);
    l.charge(null);
    const c = l.checkNextRound();
    expect(c.ok).toBe(false);
    if (!c.ok) expect(c.message).toMatch(/privacy budget reached/);
  });
});
