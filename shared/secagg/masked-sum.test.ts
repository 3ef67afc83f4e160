import { describe, expect, it } from 'vitest';
import { harary } from './graph.ts';
import { runInMemoryRound, type DropPoint } from './in-memory-round.ts';
import { addInto } from './ring.ts';
import type { SecAggServerSession } from './server-session.ts';
import { reason } from './test-support.ts';

/** A small seeded generator (mulberry32): a failing trial can be replayed from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Values as clients send them (offset-encoded, far from uniform), from the seeded generator. */
function inputs(n: number, L: number, r: () => number): Uint32Array[] {
  return Array.from({ length: n }, () => Uint32Array.from({ length: L }, () => Math.floor(r() * 2 ** 20)));
}

/** Splits `xs` at random into `k` non-empty groups (k <= xs.length), each in a random order. */
function split(xs: number[], k: number, r: () => number): number[][] {
  const shuffled = [...xs];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
  }
  const groups: number[][] = Array.from({ length: k }, (_, i) => [shuffled[i]]);
  for (const u of shuffled.slice(k)) groups[Math.floor(r() * k)].push(u);
  return groups;
}

function sumOf(members: readonly number[], masked: ReadonlyMap<number, Uint32Array>, L: number): Uint32Array {
  const s = new Uint32Array(L);
  for (const u of members) addInto(s, masked.get(u)!);
  return s;
}

describe('masked inputs arriving as partial sums (scale-out gateways)', () => {
  it('the masks cancel: over random splits into 2-3 groups and dropouts, the sum is the plaintext sum', async () => {
    for (let trial = 0; trial < 6; trial++) {
      const seed = 0x5eed + trial;
      const r = rng(seed);
      const n = 10 + Math.floor(r() * 4); // 10..13
      const L = 17 + Math.floor(r() * 40);
      // k = 8, t = 5: with at most 3 of a client's neighbours gone, 5 holders remain for every secret.
      const drops = new Map<number, DropPoint>();
      const gone = 1 + Math.floor(r() * 2); // 1..2 dropouts after their shares (their s-masks are rebuilt)
      while (drops.size < gone) drops.set(1 + Math.floor(r() * n), 'after-shares');
      if (r() < 0.5) {
        // One survivor that sends its input, then vanishes before revealing.
        let u = 1 + Math.floor(r() * n);
        while (drops.has(u)) u = 1 + Math.floor(r() * n);
        drops.set(u, 'after-masked');
      }
      let seen: number[][] = [];
      const res = await runInMemoryRound({
        tag: `presum/${seed}`,
        neighbours: harary(n, 8).map((l) => l.map((v) => v + 1)),
        t: 5,
        minSurvivors: 5,
        inputs: inputs(n, L, r),
        drops,
        groups: (senders) => (seen = split(senders, 2 + Math.floor(r() * 2), r)),
      });
      const what = `seed ${seed}, n ${n}, groups ${JSON.stringify(seen)}`;
      expect(res.rejected, what).toEqual([]);
      expect(
        seen.flat().sort((a, b) => a - b),
        what,
      ).toEqual(res.survivors);
      expect(res.survivors.length, what).toBe(n - gone);
      expect(res.sum, what).toEqual(res.expected);
      // No client that vanished before sending its input is among those summed.
      expect(
        res.survivors.some((u) => drops.get(u) === 'after-shares'),
        what,
      ).toBe(false);
    }
  });

  it('refuses a bad sum whole, counting nothing: the sum and who it waits for are unchanged', async () => {
    const n = 8;
    const L = 23;
    const r = rng(99);
    let server!: SecAggServerSession;
    const checks: string[] = [];
    const res = await runInMemoryRound({
      tag: 'presum/refusals',
      neighbours: harary(n, n - 1).map((l) => l.map((v) => v + 1)),
      t: 4,
      minSurvivors: 4,
      inputs: inputs(n, L, r),
      drops: new Map<number, DropPoint>([[8, 'after-keys']]), // in U1, never in U2
      onServer: (s) => (server = s),
      groups: (senders, masked) => {
        expect(senders).toEqual([1, 2, 3, 4, 5, 6, 7]);
        // The first gateway's sum (members 1 and 2) is in.
        server.receiveMaskedSum([2, 1], sumOf([1, 2], masked, L));
        expect(server.waitingFor()).toEqual([3, 4, 5, 6, 7]);
        const good = sumOf([3, 4], masked, L);
        const refused = (members: number[], sum: Uint32Array): string => {
          const why = reason(() => server.receiveMaskedSum(members, sum));
          checks.push(why);
          expect(server.waitingFor()).toEqual([3, 4, 5, 6, 7]);
          return why;
        };
        expect(refused([], good)).toBe('malformed');
        expect(refused([3, 8], good)).toBe('not_selected'); // 8 shared no keys: not in U2
        expect(refused([3, 9], good)).toBe('not_selected'); // no such client
        expect(refused([0], good)).toBe('not_selected');
        expect(refused([3, 1], good)).toBe('duplicate'); // 1 is in already
        expect(refused([3, 4, 3], good)).toBe('duplicate'); // named twice
        expect(refused([3, 4], good.subarray(1))).toBe('wrong_length');
        expect(refused([3, 4], new Uint32Array(L + 1))).toBe('wrong_length');
        // Had any refused sum been added, or any member marked in, the round below would not be exact.
        return [
          [3, 4],
          [5, 6, 7],
        ];
      },
    });
    expect(checks).toHaveLength(8);
    expect(res.rejected).toEqual([]);
    expect(res.survivors).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(res.sum).toEqual(res.expected);
    // Outside the masked phase a sum is refused as well.
    expect(reason(() => server.receiveMaskedSum([3], new Uint32Array(L)))).toBe('late');
  });

  it('a sum naming every survivor at once is one input like any other', async () => {
    const n = 6;
    const res = await runInMemoryRound({
      tag: 'presum/one',
      neighbours: harary(n, n - 1).map((l) => l.map((v) => v + 1)),
      t: 3,
      minSurvivors: 3,
      inputs: inputs(n, 9, rng(7)),
      groups: (senders) => [senders],
    });
    expect(res.survivors).toEqual([1, 2, 3, 4, 5, 6]);
    expect(res.sum).toEqual(res.expected);
  });
});
