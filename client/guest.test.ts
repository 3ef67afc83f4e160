import { describe, expect, it } from 'vitest';
import { GuestPolicy, type BatteryLike, type GuestEnv } from './guest.ts';
import type { Pace } from './pacer.ts';
import type { TrainerPort } from './trainer-port.ts';

function fakeDocument(): NonNullable<GuestEnv['document']> & { fire(): void; listeners: number } {
  const fns = new Set<() => void>();
  return {
    hidden: false,
    addEventListener: (_t, fn) => void fns.add(fn),
    removeEventListener: (_t, fn) => void fns.delete(fn),
    fire: () => fns.forEach((f) => f()),
    get listeners() {
      return fns.size;
    },
  };
}

const paceRecorder = (): { port: TrainerPort; paces: Pace[] } => {
  const paces: Pace[] = [];
  const port = { pace: (p: Pace) => paces.push(p) } as unknown as TrainerPort;
  return { port, paces };
};

describe('GuestPolicy', () => {
  it('pauses the trainer while the tab is hidden and resumes it when visible, at its CPU share', () => {
    const doc = fakeDocument();
    const g = new GuestPolicy({ cpuShare: 0.5 }, { document: doc });
    const { port, paces } = paceRecorder();
    const detach = g.attach(port);
    doc.hidden = true;
    doc.fire();
    doc.hidden = false;
    doc.fire();
    expect(paces).toEqual([
      { paused: false, cpuShare: 0.5 },
      { paused: true, cpuShare: 0.5 },
      { paused: false, cpuShare: 0.5 },
    ]);
    detach();
    expect(doc.listeners).toBe(0);
  });

  it('holds off on data saver and on a low battery that is not charging', async () => {
    expect(new GuestPolicy({}, { navigator: { connection: { saveData: true } } }).holdOff()).toMatch(
      /save data/,
    );
    expect(new GuestPolicy({}, { navigator: { connection: { saveData: false } } }).holdOff()).toBeNull();
    const battery: BatteryLike = { charging: false, level: 0.15 };
    const g = new GuestPolicy({}, { navigator: { getBattery: async () => battery } });
    await Promise.resolve();
    await Promise.resolve();
    expect(g.holdOff()).toBe('battery at 15% and not charging');
    battery.charging = true; // the manager's values are live
    expect(g.holdOff()).toBeNull();
    battery.charging = false;
    battery.level = 0.5;
    expect(g.holdOff()).toBeNull();
  });

  it('knows nothing without the APIs (and a failing getBattery), so it takes part', async () => {
    const g = new GuestPolicy({}, { navigator: { getBattery: () => Promise.reject(new Error('denied')) } });
    await Promise.resolve();
    expect(g.holdOff()).toBeNull();
    expect(new GuestPolicy().pace()).toEqual({ paused: false, cpuShare: 1 });
  });

  it('refuses a CPU share outside (0, 1]', () => {
    expect(() => new GuestPolicy({ cpuShare: 0 })).toThrow(/cpu share/);
  });
});
