import { describe, expect, it } from 'vitest';
import { ManualClock } from './clock.ts';
import { KeyedLimiter, LogLimiter, TokenBucket } from './limits.ts';

describe('TokenBucket', () => {
  it('allows a burst, then the sustained rate (on a manual clock)', () => {
    const clock = new ManualClock();
    const b = new TokenBucket({ perSecond: 2, burst: 3 }, clock);
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
    clock.advance(499);
    expect(b.take()).toBe(false);
    clock.advance(1); // 0.5 s at 2/s: one token
    expect([b.take(), b.take()]).toEqual([true, false]);
    expect(b.idle).toBe(false);
    clock.advance(10_000); // refills to the burst, not beyond
    expect(b.idle).toBe(true);
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
  });

  it('rejects nonsense rates', () => {
    const clock = new ManualClock();
    expect(() => new TokenBucket({ perSecond: 0, burst: 1 }, clock)).toThrow(RangeError);
    expect(() => new TokenBucket({ perSecond: 1, burst: 0.5 }, clock)).toThrow(RangeError);
    expect(() => new TokenBucket({ perSecond: NaN, burst: 1 }, clock)).toThrow(RangeError);
  });
});

describe('KeyedLimiter', () => {
  it('keeps one bucket per key', () => {
    const clock = new ManualClock();
    const k = new KeyedLimiter({ perSecond: 1, burst: 2 }, clock);
    expect([k.take('a'), k.take('a'), k.take('a')]).toEqual([true, true, false]);
    expect([k.take('b'), k.take('b'), k.take('b')]).toEqual([true, true, false]);
  });

  it('holds at most maxKeys buckets, dropping the least recently used', () => {
    const clock = new ManualClock();
    const k = new KeyedLimiter({ perSecond: 1, burst: 1 }, clock, 3);
    k.take('a');
    k.take('b');
    k.take('c');
    expect(k.take('a')).toBe(false); // a is now the most recent
    k.take('d'); // drops b, the least recently used
    expect(k.size).toBe(3);
    expect(k.take('a')).toBe(false); // a kept its spending
    expect(k.take('b')).toBe(true); // b was forgotten, starts full (and drops c)
    for (let i = 0; i < 10_000; i++) k.take(`flood-${i}`);
    expect(k.size).toBe(3);
  });
});

describe('LogLimiter', () => {
  it('writes at most burst lines per window and says how many it held back', () => {
    const clock = new ManualClock();
    const lines: string[] = [];
    const log = new LogLimiter((m) => lines.push(m), clock, 3, 1000);
    for (let i = 0; i < 50_000; i++) log.write(`rejected input ${i}`);
    expect(lines).toEqual(['rejected input 0', 'rejected input 1', 'rejected input 2']);
    clock.advance(1000);
    log.write('next window');
    expect(lines.slice(3)).toEqual(['(49997 similar log lines suppressed)', 'next window']);
  });
});
