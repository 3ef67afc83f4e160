import { describe, expect, it } from 'vitest';
import { FakeClock } from './fake-clock.ts';

describe('fake clock', () => {
  it('runs due calls in time order at their own time, and only when time reaches them', () => {
    const c = new FakeClock();
    const seen: string[] = [];
    c.after(30, () => seen.push(`b@${c.now()}`));
    c.after(10, () => seen.push(`a@${c.now()}`));
    c.after(30, () => seen.push(`c@${c.now()}`));
    c.advance(9);
    expect(seen).toEqual([]);
    c.advance(25);
    expect(seen).toEqual(['a@10', 'b@30', 'c@30']);
    expect(c.now()).toBe(34);
    expect(c.pending).toBe(0);
  });

  it('does not run a cancelled call; a call scheduled by a call runs if it falls due in the same advance', () => {
    const c = new FakeClock();
    const seen: number[] = [];
    const cancel = c.after(5, () => seen.push(5));
    c.after(1, () => c.after(2, () => seen.push(c.now())));
    cancel();
    c.advance(10);
    expect(seen).toEqual([3]);
    expect(() => c.after(-1, () => {})).toThrow(RangeError);
    expect(() => c.advance(Number.NaN)).toThrow(RangeError);
  });
});
