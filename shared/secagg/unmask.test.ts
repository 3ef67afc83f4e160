import { describe, expect, it } from 'vitest';
import { packShares, packUnmaskJob, REVEALED_BYTES, type RevealLog, type UnmaskSecret } from './unmask.ts';

/** A log from [holder, of, kind] triples; each entry's data is its index, repeated. */
function logOf(entries: readonly [number, number, 0 | 1][]): RevealLog {
  const data = new Uint8Array(entries.length * REVEALED_BYTES);
  entries.forEach((_, e) => data.fill(e, e * REVEALED_BYTES, (e + 1) * REVEALED_BYTES));
  return {
    revealHolder: Int32Array.from(entries, ([h]) => h),
    revealOf: Int32Array.from(entries, ([, of]) => of),
    revealKind: Uint8Array.from(entries, ([, , k]) => k),
    revealData: data,
  };
}

const groups = (p: { shareStart: Int32Array; entry: Int32Array }): number[][] =>
  Array.from({ length: p.shareStart.length - 1 }, (_, i) =>
    Array.from(p.entry.subarray(p.shareStart[i], p.shareStart[i + 1])),
  );

describe('packShares', () => {
  it("groups the log's entries by secret, each group in log order, b and s of one client apart", () => {
    // Secrets: 0 = b of 3, 1 = b of 5, 2 = s of 3 (a client has one kind in a round; the kinds still must not mix).
    const job = { secretOf: Int32Array.of(3, 5, 3), secretKind: Uint8Array.of(0, 0, 1) };
    const log = logOf([
      [1, 3, 0], // 0
      [1, 5, 0], // 1
      [2, 3, 1], // 2
      [2, 5, 0], // 3
      [4, 3, 0], // 4
      [4, 9, 0], // 5: no such secret
      [6, 5, 1], // 6: s of 5 was not asked for
      [7, 3, 1], // 7
    ]);
    const p = packShares({ ...job, ...log });
    expect(groups(p)).toEqual([
      [0, 4],
      [1, 3],
      [2, 7],
    ]);
  });

  it('an empty log gives every secret no share', () => {
    const p = packShares({ secretOf: Int32Array.of(1, 2), secretKind: Uint8Array.of(0, 1), ...logOf([]) });
    expect(Array.from(p.shareStart)).toEqual([0, 0, 0]);
    expect(p.entry.length).toBe(0);
  });

  it('property: every entry of a secret of the job lands once, in its own group, in log order', () => {
    let seed = 7;
    const rnd = (m: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % m;
    for (let trial = 0; trial < 50; trial++) {
      const n = 2 + rnd(40);
      const secretOf: number[] = [];
      const secretKind: number[] = [];
      for (let of = 1; of <= n; of++)
        if (rnd(4)) {
          secretOf.push(of);
          secretKind.push(rnd(2));
        }
      const entries: [number, number, 0 | 1][] = Array.from({ length: rnd(300) }, () => [
        1 + rnd(n),
        1 + rnd(n + 5), // some beyond every secret
        rnd(2) as 0 | 1,
      ]);
      const job = { secretOf: Int32Array.from(secretOf), secretKind: Uint8Array.from(secretKind) };
      const got = groups(packShares({ ...job, ...logOf(entries) }));
      const want = secretOf.map((of, i) =>
        entries.flatMap(([, o, k], e) => (o === of && k === secretKind[i] ? [e] : [])),
      );
      expect(got).toEqual(want);
    }
  });
});

describe('packUnmaskJob', () => {
  const secret: UnmaskSecret = { of: 1, kind: 'b', check: new Uint8Array(32), dealerKey: new Uint8Array(32) };

  it('refuses a log whose columns disagree in length', () => {
    const log = logOf([
      [2, 1, 0],
      [3, 1, 0],
    ]);
    for (const bad of [
      { ...log, revealHolder: log.revealHolder.subarray(1) },
      { ...log, revealKind: log.revealKind.subarray(1) },
      { ...log, revealData: log.revealData.subarray(1) },
    ])
      expect(() => packUnmaskJob('tag', 2, [secret], bad, [], new Uint32Array(4))).toThrow(/reveal log/);
  });

  it("carries the log as it is: the job's shares are the holders' bytes", () => {
    const log = logOf([
      [2, 1, 0],
      [3, 1, 0],
    ]);
    const job = packUnmaskJob('tag', 2, [secret], log, [], new Uint32Array(4));
    expect(job.revealData).toBe(log.revealData);
    expect(Array.from(job.revealHolder)).toEqual([2, 3]);
    expect(Array.from(job.secretOf)).toEqual([1]);
  });
});

describe('packUnmaskJob checks the log it carries to another thread', () => {
  const secret: UnmaskSecret = { of: 3, kind: 'b', check: new Uint8Array(32), dealerKey: new Uint8Array(32) };
  it('refuses an entry naming client 0 or below, holder 0 or below, or a kind other than b (0) and s (1)', () => {
    for (const bad of [[[2, 0, 0]], [[2, -1, 0]], [[0, 3, 0]], [[2, 3, 2]]] as [number, number, 0 | 1][][])
      expect(() => packUnmaskJob('tag', 2, [secret], logOf(bad), [], new Uint32Array(4))).toThrow(
        /names no client or kind/,
      );
  });

  it('packShares leaves out an entry below 1 instead of filing it under the first secret', () => {
    const log = logOf([
      [1, 3, 0],
      [2, -1, 0],
    ]);
    const p = packShares({ secretOf: Int32Array.of(3), secretKind: Uint8Array.of(0), ...log });
    expect(groups(p)).toEqual([[0]]);
  });
});
