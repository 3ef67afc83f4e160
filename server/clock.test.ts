import { describe, expect, it } from 'vitest';
import { ManualClock, systemClock } from './clock.ts';

describe('ManualClock', () => {
  it('runs callbacks only when advanced past their due time, in due order, with now() at each', () => {
    const c = new ManualClock(1000);
    const seen: [string, number][] = [];
    c.setTimeout(() => seen.push(['b', c.now()]), 20);
    c.setTimeout(() => seen.push(['a', c.now()]), 10);
    c.setTimeout(() => seen.push(['a2', c.now()]), 10); // same due time: scheduling order
    c.advance(9);
    expect(seen).toEqual([]);
    expect(c.now()).toBe(1009);
    c.advance(100);
    expect(seen).toEqual([
      ['a', 1010],
      ['a2', 1010],
      ['b', 1020],
    ]);
    expect(c.now()).toBe(1109);
    expect(c.pending).toBe(0);
  });

  it('runs callbacks scheduled by callbacks if they fall in the window, and not cleared ones', () => {
    const c = new ManualClock();
    const seen: number[] = [];
    const dropped = c.setTimeout(() => seen.push(-1), 5);
    c.setTimeout(() => {
      seen.push(c.now());
      c.setTimeout(() => seen.push(c.now()), 10); // due at 20
      c.setTimeout(() => seen.push(c.now()), 100); // due at 110, outside
    }, 10);
    c.clearTimeout(dropped);
    c.advance(50);
    expect(seen).toEqual([10, 20]);
    expect(c.pending).toBe(1);
    c.advance(60);
    expect(seen).toEqual([10, 20, 110]);
  });

  it('a zero or negative delay is due now (advance(0) runs it)', () => {
    const c = new ManualClock();
    let n = 0;
    c.setTimeout(() => n++, 0);
    c.setTimeout(() => n++, -5);
    expect(n).toBe(0);
    c.advance(0);
    expect(n).toBe(2);
  });

  it('an exception from a callback propagates, and later callbacks stay scheduled', () => {
    const c = new ManualClock();
    let ran = false;
    c.setTimeout(() => {
      throw new Error('boom');
    }, 1);
    c.setTimeout(() => (ran = true), 2);
    expect(() => c.advance(5)).toThrow('boom');
    expect(ran).toBe(false);
    c.advance(5);
    expect(ran).toBe(true);
  });

  it('rejects bad input', () => {
    expect(() => new ManualClock(NaN)).toThrow(RangeError);
    expect(() => new ManualClock().advance(-1)).toThrow(RangeError);
    expect(() => new ManualClock().advance(Infinity)).toThrow(RangeError);
    expect(() => new ManualClock().setTimeout(null as never, 1)).toThrow(TypeError);
  });
});

describe('systemClock', () => {
  it('schedules on the real timers and can cancel', async () => {
    let fired = false;
    const t = systemClock.setTimeout(() => (fired = true), 0);
    systemClock.clearTimeout(t);
    await new Promise<void>((r) => systemClock.setTimeout(r, 5));
    expect(fired).toBe(false);
    const before = Date.now();
    const now = systemClock.now();
    expect(now).toBeGreaterThanOrEqual(before);
    expect(now).toBeLessThanOrEqual(Date.now());
  });
});
