import { describe, expect, it } from 'vitest';
import { checkCpuShare, Pacer } from './pacer.ts';

/** A pacer on a manual clock: sleeping advances time by exactly what was asked. */
function manual(): { pacer: Pacer; t: { now: number }; slept: number[] } {
  const t = { now: 0 };
  const slept: number[] = [];
  const pacer = new Pacer(
    () => t.now,
    async (ms) => {
      slept.push(ms);
      t.now += ms;
    },
  );
  return { pacer, t, slept };
}

describe('Pacer', () => {
  it('full share: never sleeps', async () => {
    const { pacer, t, slept } = manual();
    t.now = 50;
    await pacer.between();
    expect(slept).toEqual([]);
  });

  it('a share of s keeps busy / (busy + idle) at s', async () => {
    const { pacer, t, slept } = manual();
    pacer.set({ paused: false, cpuShare: 0.25 });
    pacer.start();
    let busy = 0;
    for (const work of [10, 40, 7]) {
      t.now += work;
      busy += work;
      await pacer.between();
    }
    expect(slept).toEqual([30, 120, 21]);
    expect(busy / t.now).toBeCloseTo(0.25, 12);
  });

  it('paused: waits until resumed, and the pause is not counted as busy time', async () => {
    const { pacer, t, slept } = manual();
    pacer.set({ paused: true, cpuShare: 0.5 });
    let done = false;
    const p = pacer.between().then(() => (done = true));
    await new Promise((r) => setTimeout(r, 5));
    expect(done).toBe(false);
    t.now += 1000; // hidden for a second
    pacer.set({ paused: false, cpuShare: 0.5 });
    await p;
    expect(done).toBe(true);
    t.now += 10;
    await pacer.between();
    expect(slept).toEqual([10]);
  });

  it('refuses a share outside (0, 1]', () => {
    for (const bad of [0, -0.5, 1.5, NaN]) expect(() => checkCpuShare(bad)).toThrow(/cpu share/);
    expect(checkCpuShare(0.3)).toBe(0.3);
  });
});
