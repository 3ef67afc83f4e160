import { afterAll, describe, expect, it } from 'vitest';
import { runInMemoryRound, type DropPoint } from '../shared/secagg/in-memory-round.ts';
import type { SecAggServerSession } from '../shared/secagg/server-session.ts';
import { runUnmask, type UnmaskJob } from '../shared/secagg/unmask.ts';
import { UnmaskThread } from './unmask-thread.ts';

const thread = new UnmaskThread();
afterAll(() => thread.close());

/** A complete graph of n clients, random inputs; the session stops just before unmasking. */
async function roundAtUnmask(
  n: number,
  drops: Map<number, DropPoint>,
  reveal?: Parameters<typeof runInMemoryRound>[0]['tamper'],
): Promise<{ session: SecAggServerSession; job: UnmaskJob; expected: Uint32Array }> {
  let session!: SecAggServerSession;
  let job!: UnmaskJob;
  const L = 3000;
  const r = await runInMemoryRound({
    tag: 'unmask-thread-test',
    neighbours: Array.from({ length: n }, (_, i) =>
      Array.from({ length: n }, (_, j) => j + 1).filter((j) => j !== i + 1),
    ),
    t: Math.floor(n / 2) + 1,
    minSurvivors: 3,
    inputs: Array.from({ length: n }, () =>
      Uint32Array.from({ length: L }, () => (Math.random() * 2 ** 32) >>> 0),
    ),
    drops,
    tamper: reveal,
    onServer: (s) => {
      session = s;
      // Stop at R4 -> done: keep the job instead of unmasking here.
      s.closeUnmask = async () => {
        job = s.prepareUnmask();
        return new Uint32Array(L);
      };
    },
  });
  return { session, job, expected: r.expected };
}

describe('UnmaskThread', () => {
  it('warms up (worker and mask helpers started, code loaded) before any job, then unmasks exactly', async () => {
    const warm = new UnmaskThread(2);
    try {
      expect(warm.started).toBe(false);
      await warm.warm();
      expect(warm.started).toBe(true);
      const { session, job, expected } = await roundAtUnmask(6, new Map([[3, 'after-shares' as DropPoint]]));
      const r = await warm.run(job);
      expect(r.ok).toBe(true);
      expect(session.finishUnmask(r)).toEqual(expected);
    } finally {
      await warm.close();
    }
  });

  it('unmasks on a worker thread: the same exact sum as in-process, the job transferred, not copied', async () => {
    const drops = new Map<number, DropPoint>([
      [2, 'after-keys'],
      [5, 'after-shares'],
      [9, 'after-masked'], // asked to reveal and silent: the log's buffers have room it never filled
    ]);
    const { session, job, expected } = await roundAtUnmask(10, drops);
    // The job's log is views over larger buffers (sized for every request); the worker reads the views.
    expect(job.revealOf.length).toBeGreaterThan(0);
    expect(job.revealOf.buffer.byteLength).toBeGreaterThan(job.revealOf.byteLength);
    expect(job.revealData.buffer.byteLength).toBeGreaterThan(job.revealData.byteLength);
    const copy = structuredClone(job);
    const r = await thread.run(job);
    expect(thread.started).toBe(true);
    // Transferred: the buffers left this thread (detached here), the result came back from the worker.
    expect(job.sum.byteLength).toBe(0);
    expect(job.revealData.byteLength).toBe(0);
    expect(r).toMatchObject({ ok: true, culprits: [] });
    const local = await runUnmask(copy);
    expect(local.ok && r.ok && Buffer.from(r.sum.buffer).equals(Buffer.from(local.sum.buffer))).toBe(true);
    expect(session.finishUnmask(r)).toEqual(expected);
    expect(session.phase).toBe('done');
  });

  it('a round that cannot be unmasked fails with the same reason and culprits as in-process', async () => {
    // Every holder alters its share of client 1's self-mask seed: no valid signature left, client 1's
    // seed cannot be rebuilt, and the holders are named.
    const { session, job } = await roundAtUnmask(6, new Map(), {
      reveal: (_from, m) => ({
        ...m,
        b: m.b.map((e) =>
          e.of === 1 ? { ...e, share: Uint8Array.from(e.share, (v, i) => (i === 32 ? v ^ 1 : v)) } : e,
        ),
      }),
    });
    const local = await runUnmask(structuredClone(job));
    const r = await thread.run(job);
    expect(r.ok).toBe(false);
    expect(r).toEqual(local);
    expect(r.culprits.length).toBeGreaterThan(0);
    expect(() => session.finishUnmask(r)).toThrow(/self-mask seed of client 1/);
    expect(session.phase).toBe('failed');
    expect(session.culprits).toEqual(r.culprits.map((c) => c.index));
  });

  it('reveals after the unmasking started are refused as late', async () => {
    const { session } = await roundAtUnmask(5, new Map([[3, 'after-shares']]));
    expect(session.waitingFor()).toEqual([]);
    expect(() => session.receiveReveal(1, { b: [], s: [] })).toThrow(/already/);
  });
});
