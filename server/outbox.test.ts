import { describe, expect, it } from 'vitest';
import { Outbox } from './outbox.ts';

/** An outbox whose slices run only when the test says, on a clock the sends themselves advance. */
function manual(budgetMs: number, msPerSend: number) {
  const slices: (() => void)[] = [];
  let t = 0;
  const box = new Outbox({ budgetMs, schedule: (fn) => slices.push(fn), now: () => t });
  const sent: number[] = [];
  const send = (i: number) => () => {
    t += msPerSend;
    sent.push(i);
  };
  const runSlice = (): number => {
    const before = sent.length;
    slices.shift()!();
    return sent.length - before;
  };
  return { box, sent, send, slices, runSlice };
}

describe('Outbox', () => {
  it('sends nothing in the turn that queued it, then everything in order', () => {
    const { box, sent, send, runSlice } = manual(1000, 0);
    for (let i = 0; i < 100; i++) box.push(send(i));
    expect(sent).toEqual([]);
    expect(box.pending).toBe(100);
    expect(runSlice()).toBe(100);
    expect(sent).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(box.pending).toBe(0);
  });

  it('yields once a slice has spent its budget, and goes on in the next one', () => {
    // 1 ms per send, 8 ms budget, the clock read every 8 sends: slices of 8.
    const { box, sent, send, slices, runSlice } = manual(8, 1);
    for (let i = 0; i < 20; i++) box.push(send(i));
    expect(runSlice()).toBe(8);
    expect(slices).toHaveLength(1); // the rest is scheduled, not dropped
    expect(runSlice()).toBe(8);
    expect(runSlice()).toBe(4);
    expect(slices).toHaveLength(0);
    expect(sent).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('sends queued during a slice after those queued before, in the same order', () => {
    const { box, sent, send, runSlice } = manual(1000, 0);
    box.push(() => {
      sent.push(0);
      box.push(send(2));
    });
    box.push(send(1));
    runSlice();
    expect(sent).toEqual([0, 1, 2]);
  });

  it('a send that throws is reported and the others still go out', () => {
    const errors: unknown[] = [];
    const slices: (() => void)[] = [];
    const box = new Outbox({ schedule: (fn) => slices.push(fn), onError: (e) => errors.push(e) });
    const sent: number[] = [];
    box.push(() => sent.push(1));
    box.push(() => {
      throw new Error('boom');
    });
    box.push(() => sent.push(3));
    slices.shift()!();
    expect(sent).toEqual([1, 3]);
    expect(errors).toHaveLength(1);
  });

  it('drains with the real scheduler', async () => {
    const box = new Outbox({ budgetMs: 0 });
    const sent: number[] = [];
    for (let i = 0; i < 50; i++) box.push(() => sent.push(i));
    await new Promise((r) => setTimeout(r, 20));
    expect(sent).toHaveLength(50);
  });
});
