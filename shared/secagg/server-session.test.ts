import { randomBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { generateSigningKeyPair } from './consistency.ts';
import { harary } from './graph.ts';
import { runInMemoryRound, type DropPoint, type InMemoryRoundInput } from './in-memory-round.ts';
import { checkGraph, SecAggServerSession } from './server-session.ts';

/**
 * The waiting set is kept as messages arrive (O(1) per message). Its oracle is the definition it
 * replaced, recomputed from the session's whole state: who the phase covers, minus who answered or was
 * dropped from the attempt.
 */
function reference(server: SecAggServerSession): number[] {
  const s = server as unknown as {
    cfg: { n: number; cohort?: { size: number } | null };
    keys: Map<number, unknown>;
    boxes: Map<number, unknown>;
    masked: Set<number>;
    signatures: Map<number, unknown>;
    revealed: Set<number>;
    requests: Map<number, unknown>;
    excluded: Set<number>;
    sealed: boolean;
    u1: number[];
    u2: number[];
    u3: number[];
  };
  const all = Array.from({ length: s.cfg.n }, (_, i) => i + 1);
  switch (server.phase) {
    case 'keys':
      if (s.cfg.cohort && s.keys.size >= s.cfg.cohort.size) return [];
      return all.filter((u) => !s.keys.has(u) && !s.excluded.has(u));
    case 'shares':
      return s.u1.filter((u) => !s.boxes.has(u));
    case 'masked':
      return s.u2.filter((u) => !s.masked.has(u));
    case 'consistency':
      return s.u3.filter((u) => !s.signatures.has(u) && !s.excluded.has(u));
    case 'unmask':
      if (s.sealed) return [];
      return [...s.requests.keys()].filter((u) => !s.revealed.has(u) && !s.excluded.has(u));
    default:
      return [];
  }
}

const STEPS = [
  'receiveKeys',
  'receiveShares',
  'receiveMaskedSum',
  'receiveSignature',
  'receiveReveal',
  'closeKeys',
  'closeKeysLazily',
  'closeShares',
  'closeSharesLazily',
  'closeMasked',
  'closeMaskedToConsistency',
  'closeConsistency',
  'prepareUnmask',
  'finishUnmask',
] as const;

/** Wraps every step of the session so that after each one, accepted or refused, the set matches the oracle. */
function watch(server: SecAggServerSession): { checks: number } {
  const seen = { checks: 0 };
  const check = (): void => {
    const want = reference(server);
    expect(server.waitingFor()).toEqual(want);
    expect(server.waitingCount).toBe(want.length);
    for (let u = 0; u <= server.cfg.n + 1; u++) expect(server.isWaitingFor(u)).toBe(want.includes(u));
    seen.checks++;
  };
  check();
  const target = server as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const name of STEPS) {
    const f = target[name].bind(server);
    target[name] = (...a: unknown[]) => {
      try {
        return f(...a);
      } finally {
        check();
      }
    };
  }
  return seen;
}

function round(n: number, k: number, t: number, extra: Partial<InMemoryRoundInput>): InMemoryRoundInput {
  return {
    tag: `waiting/${Math.random()}`,
    neighbours: harary(n, k).map((l) => l.map((v) => v + 1)),
    t,
    minSurvivors: t,
    inputs: Array.from({ length: n }, () => Uint32Array.from(randomBytes(32), (b) => b)),
    ...extra,
  };
}

describe('the server session keeps who each phase waits for as messages arrive', () => {
  const drops = new Map<number, DropPoint>([
    [1, 'before-keys'],
    [2, 'after-keys'],
    [3, 'after-shares'],
    [4, 'after-masked'],
    [13, 'after-shares'],
  ]);

  it('matches the full recomputation after every message and close, with drops and refusals', async () => {
    let seen = { checks: 0 };
    const r = await runInMemoryRound(
      round(20, 16, 9, {
        drops,
        onServer: (s) => (seen = watch(s)),
        tamper: {
          // 5 advertises a small-order key (dropped from the attempt), 6 reveals a share out of the field.
          keys: (from, m) => (from === 5 ? { ...m, cPk: new Uint8Array(32) } : m),
          reveal: (from, m) =>
            from === 6 ? { b: m.b.map((e) => ({ ...e, share: new Uint8Array(33).fill(0xff) })), s: m.s } : m,
        },
      }),
    );
    expect(r.rejected.map((x) => [x.from, x.reason])).toEqual([
      [5, 'bad_key'],
      [6, 'malformed_share'],
    ]);
    expect(r.sum).toEqual(r.expected);
    expect(r.server.phase).toBe('done');
    expect(seen.checks).toBeGreaterThan(60); // every message and close was checked
  });

  it('matches it through the consistency round, with a client that signs and then vanishes', async () => {
    let seen = { checks: 0 };
    const d = new Map(drops).set(7, 'after-signature');
    const r = await runInMemoryRound(
      round(20, 16, 9, {
        drops: d,
        consistency: { site: generateSigningKeyPair() },
        onServer: (s) => (seen = watch(s)),
      }),
    );
    expect(r.sum).toEqual(r.expected);
    expect(seen.checks).toBeGreaterThan(60);
  });

  it('keeps its own copy of boxes and revealed shares: the transport may reuse its buffers', async () => {
    const wipe = (v: unknown): void => {
      if (v instanceof Uint8Array) v.fill(0xff);
      else if (v && typeof v === 'object') Object.values(v).forEach(wipe);
    };
    const r = await runInMemoryRound(
      round(12, 8, 5, {
        drops: new Map([[2, 'after-shares']]), // so s-shares are revealed too
        onServer: (server) => {
          const target = server as unknown as Record<string, (from: number, raw: unknown) => void>;
          for (const name of ['receiveShares', 'receiveReveal']) {
            const f = target[name].bind(server);
            target[name] = (from, raw) => {
              f(from, raw);
              wipe(raw); // after it was accepted: the session must not hold the caller's bytes
            };
          }
        },
      }),
    );
    expect(r.rejected).toEqual([]);
    expect(r.sum).toEqual(r.expected);
  });

  it.each([
    ['after R2', false],
    ['after the consistency round', true],
  ])(
    'logs exactly the reveals it took (%s): one refused at its last share (out of the field) leaves none of its shares in the job',
    async (_, withR3) => {
      type Entry = { of: number };
      const taken = new Map<number, string[]>(); // holder -> its shares as "kind:of", sorted
      let job: ReturnType<SecAggServerSession['prepareUnmask']> | null = null;
      const r = await runInMemoryRound(
        round(12, 8, 5, {
          drops: new Map([[2, 'after-shares']]), // so s-shares are revealed too
          ...(withR3 ? { consistency: { site: generateSigningKeyPair() } } : {}),
          tamper: {
            // The last share 6 reveals (its last s-share if it holds any: 2 may not be its neighbour, else its
            // last b-share) is out of the field: the ones before it were already checked and written.
            reveal: (from, m) => {
              if (from !== 6) return m;
              const bad = <E extends object>(l: E[]): E[] =>
                l.map((e, i) => (i === l.length - 1 ? { ...e, share: new Uint8Array(33).fill(0xff) } : e));
              return m.s.length ? { b: m.b, s: bad(m.s) } : { b: bad(m.b), s: m.s };
            },
          },
          onServer: (server) => {
            const target = server as unknown as {
              receiveReveal: (from: number, raw: { b: Entry[]; s: Entry[] }) => void;
              prepareUnmask: () => NonNullable<typeof job>;
            };
            const reveal = target.receiveReveal.bind(server);
            target.receiveReveal = (from, raw) => {
              reveal(from, raw);
              const all = [...raw.b.map((e) => `b:${e.of}`), ...raw.s.map((e) => `s:${e.of}`)];
              taken.set(from, all.sort());
            };
            const prepare = target.prepareUnmask.bind(server);
            target.prepareUnmask = () => (job = prepare());
          },
        }),
      );
      expect(r.rejected.map((x) => [x.from, x.reason])).toEqual([[6, 'malformed_share']]);
      expect(r.sum).toEqual(r.expected);
      const j = job!;
      const logged = new Map<number, string[]>();
      j.revealHolder.forEach((h, e) => {
        if (!logged.has(h)) logged.set(h, []);
        logged.get(h)!.push(`${j.revealKind[e] ? 's' : 'b'}:${j.revealOf[e]}`);
      });
      for (const l of logged.values()) l.sort();
      expect(taken.has(6)).toBe(false);
      expect(taken.size).toBeGreaterThan(5);
      expect(logged).toEqual(taken);
      expect(j.revealData.length).toBe(j.revealOf.length * 97);
    },
  );

  it('builds rosters lazily: each, when asked, lists the U1 neighbours with their keys; only while R1 is open', async () => {
    type Lazy = ReturnType<SecAggServerSession['closeKeysLazily']>;
    let lazy: Lazy | undefined;
    let inR1 = 0;
    const nb = harary(12, 8).map((l) => l.map((v) => v + 1));
    const advertised = new Map<number, unknown>();
    const r = await runInMemoryRound({
      ...round(12, 8, 5, { drops: new Map<number, DropPoint>([[2, 'before-keys']]) }),
      neighbours: nb,
      onServer: (s) => {
        const target = s as unknown as {
          closeKeysLazily: () => Lazy;
          receiveKeys: (from: number, raw: unknown) => void;
          receiveShares: (from: number, raw: unknown) => void;
        };
        const keys = target.receiveKeys.bind(s);
        target.receiveKeys = (from, raw) => (keys(from, raw), advertised.set(from, raw));
        const close = target.closeKeysLazily.bind(s);
        target.closeKeysLazily = () => (lazy = close());
        const shares = target.receiveShares.bind(s);
        target.receiveShares = (from, raw) => {
          // R1 open: asked now (as a re-send would be), each roster is the client's neighbours in U1, ascending.
          for (const u of lazy!.recipients) {
            const want = nb[u - 1]
              .filter((v) => v !== 2)
              .map((v) => ({ index: v, ...(advertised.get(v) as object) }));
            expect(lazy!.roster(u)).toEqual({ peers: want });
            inR1++;
          }
          expect(() => lazy!.roster(2)).toThrow(/client 2 is not in U1/);
          shares(from, raw);
        };
      },
    });
    expect(r.sum).toEqual(r.expected);
    expect(lazy!.recipients).toEqual([1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(inR1).toBe(11 * 11); // every roster, at each of the 11 clients' shares
    expect(() => lazy!.roster(1)).toThrow(/only while R1 is open \(phase done\)/);
  });

  it('relays inboxes lazily: each cut when asked equals the eager build, only while R2 is open', async () => {
    type Lazy = ReturnType<SecAggServerSession['closeSharesLazily']>;
    let lazy: Lazy | undefined;
    let server: SecAggServerSession | undefined;
    let checked = 0;
    const boxes = (): Map<number, unknown> => (server as unknown as { boxes: Map<number, unknown> }).boxes;
    const r = await runInMemoryRound(
      round(12, 8, 5, {
        drops: new Map<number, DropPoint>([
          [2, 'after-keys'], // no boxes: not in U2, no inbox
          [3, 'after-shares'],
        ]),
        onServer: (s) => {
          server = s;
          const target = s as unknown as {
            closeSharesLazily: () => Lazy;
            closeShares: () => Map<number, unknown>;
          };
          const lazyClose = target.closeSharesLazily.bind(s);
          target.closeSharesLazily = () => (lazy = lazyClose());
          const eagerClose = target.closeShares.bind(s);
          target.closeShares = () => {
            const eager = eagerClose();
            expect([...eager.keys()]).toEqual([...lazy!.recipients]);
            expect(lazy!.recipients).not.toContain(2);
            for (const [u, inbox] of eager) {
              // Asked again (a re-send): the same boxes. (Their content is checked by the sum: each
              // client decrypts its inbox's shares and the round unmasks exactly.)
              expect(lazy!.inbox(u)).toEqual(inbox);
              checked++;
            }
            expect(() => lazy!.inbox(2)).toThrow(/client 2 is not in U2/);
            expect(boxes().size).toBe(lazy!.recipients.length);
            return eager;
          };
        },
      }),
    );
    expect(r.sum).toEqual(r.expected);
    expect(checked).toBe(11);
    // R2 closed: the boxes are let go, and no inbox is cut any more.
    expect(boxes().size).toBe(0);
    expect(() => lazy!.inbox(1)).toThrow(/only while R2 is open \(phase done\)/);
  });

  it('lets the boxes go when the attempt aborts at R1 with boxes in (3 shared; pruned below t, none is left)', async () => {
    let server: SecAggServerSession | undefined;
    let held = 0;
    const five = new Map<number, DropPoint>(Array.from({ length: 5 }, (_, i) => [i + 4, 'after-keys']));
    await expect(
      runInMemoryRound(
        round(8, 7, 4, {
          drops: five,
          onServer: (s) => {
            server = s;
            const target = s as unknown as { closeSharesLazily: () => unknown; boxes: Map<number, unknown> };
            const close = target.closeSharesLazily.bind(s);
            target.closeSharesLazily = () => ((held = target.boxes.size), close());
          },
        }),
      ),
    ).rejects.toThrow(/only 0 clients shared keys \(need 4\)/);
    expect(held).toBe(3);
    expect((server as unknown as { boxes: Map<number, unknown> }).boxes.size).toBe(0);
  });

  it('waits for no one once the round aborted', async () => {
    let server: SecAggServerSession | undefined;
    const all = new Map<number, DropPoint>(Array.from({ length: 6 }, (_, i) => [i + 3, 'after-keys']));
    await expect(
      runInMemoryRound(round(8, 7, 4, { drops: all, onServer: (s) => (server = s) })),
    ).rejects.toThrow(/only 0 clients shared keys/);
    expect(server!.phase).toBe('failed');
    expect(server!.waitingFor()).toEqual([]);
    expect(server!.waitingCount).toBe(0);
  });
});

describe('checkGraph', () => {
  it('returns each list ascending for a simple undirected graph (Harary, and a hand-made one unsorted)', () => {
    const nb = harary(60, 8).map((l) => l.map((v) => v + 1));
    expect(checkGraph(nb).map((l) => Array.from(l))).toEqual(nb);
    expect(checkGraph([[3, 2], [1], [1]]).map((l) => Array.from(l))).toEqual([[2, 3], [1], [1]]);
  });

  it('refuses a one-sided edge, a self loop, a repeated neighbour, a client outside 1..n, a non-integer', () => {
    const cases: [number[][], RegExp][] = [
      [[[2], [1, 3], []], /not symmetric at 2-3/],
      [[[2, 3], [1], [1, 2]], /not symmetric/], // 3 lists 2, 2 does not list 3
      [[[2], [1], [3]], /neighbour 3: not another client/],
      [
        [
          [2, 2],
          [1, 1],
        ],
        /lists neighbour 2 twice/,
      ],
      [[[2, 4], [1]], /neighbour 4: not another client in 1..2/],
      [[[0], []], /neighbour 0/],
      [[[1.5], []], /neighbour 1.5/],
    ];
    for (const [lists, why] of cases) expect(() => checkGraph(lists)).toThrow(why);
  });

  it('property: a random symmetric graph passes; removing any one directed entry fails', () => {
    let seed = 11;
    const rnd = (m: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % m;
    for (let trial = 0; trial < 40; trial++) {
      const n = 2 + rnd(25);
      const lists: number[][] = Array.from({ length: n }, () => []);
      for (let u = 1; u <= n; u++)
        for (let v = u + 1; v <= n; v++)
          if (rnd(3) === 0) {
            lists[u - 1].push(v);
            lists[v - 1].push(u);
          }
      expect(() => checkGraph(lists)).not.toThrow();
      const u = rnd(n);
      if (!lists[u].length) continue;
      const gone = rnd(lists[u].length);
      const cut = lists.map((l, i) => (i === u ? l.filter((_, x) => x !== gone) : l));
      expect(() => checkGraph(cut)).toThrow(/not symmetric/);
    }
  });
});

describe('receiveRevealWire under random records (property)', () => {
  it('leaves no mark after any call, moves the log only on acceptance, and commits only requested shares, once', () => {
    const REC = 4 + 33 + 64;
    let seed = 99;
    const rnd = (m: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % m;
    const reasons = new Map<string, number>();
    for (let trial = 0; trial < 300; trial++) {
      const n = 3 + rnd(8);
      const nb = Array.from({ length: n }, (_, i) =>
        Array.from({ length: n }, (_, j) => j + 1).filter((v) => v !== i + 1),
      );
      const s = new SecAggServerSession({
        tag: 'x',
        n,
        neighbours: nb,
        t: 2,
        vectorLength: 4,
        minSurvivors: 2,
      });
      // Straight to R4 with a random U3 (the requests as closeMasked makes them), past the earlier phases.
      const inU3 = new Set(Array.from({ length: n }, (_, i) => i + 1).filter(() => rnd(10) < 7));
      const reqs = new Map(
        [...inU3].map((u) => [
          u,
          { survivors: nb[u - 1].filter((v) => inU3.has(v)), dropped: nb[u - 1].filter((v) => !inU3.has(v)) },
        ]),
      );
      const S = s as unknown as {
        phase: string;
        ask: (r: typeof reqs) => void;
        marks: Uint8Array | null;
        logLength: number;
        log: { revealHolder: Int32Array; revealOf: Int32Array; revealKind: Uint8Array };
      };
      S.phase = 'unmask';
      S.ask(reqs);
      const committed = new Set<number>();
      for (let call = 0; call < 30; call++) {
        const h = 1 + rnd(n + 1);
        const records = (count: number): Uint8Array => {
          const b = new Uint8Array(count * REC);
          const dv = new DataView(b.buffer);
          for (let i = 0; i < count; i++) {
            const r = rnd(100);
            dv.setUint32(
              i * REC,
              r < 5 ? 0 : r < 10 ? n + 1 : r < 12 ? 0xffffffff : r < 14 ? 0x80000001 : 1 + rnd(n),
            );
            if (rnd(100) < 3) b.fill(0xff, i * REC + 4, i * REC + 37); // out of the field
          }
          return b;
        };
        const b = records(rnd(n + 1));
        const m = rnd(10);
        const sb = m === 0 ? b : m === 1 && b.length >= 2 * REC ? b.subarray(REC) : records(rnd(n + 1));
        const before = S.logLength;
        let why = 'accepted';
        try {
          s.receiveRevealWire(h, { b, s: sb });
        } catch (e) {
          why = (e as { reason?: string }).reason ?? String(e);
        }
        reasons.set(why, (reasons.get(why) ?? 0) + 1);
        expect(S.marks?.every((x) => x === 0) ?? true).toBe(true);
        if (why !== 'accepted') {
          expect(S.logLength).toBe(before);
          continue;
        }
        const req = reqs.get(h)!;
        const ofs = (x: Uint8Array): number[] =>
          Array.from({ length: x.length / REC }, (_, i) =>
            new DataView(x.buffer, x.byteOffset).getUint32(i * REC),
          );
        const want = [...ofs(b).map((o) => `b${o}`), ...ofs(sb).map((o) => `s${o}`)].sort();
        expect(ofs(b).every((o) => req.survivors.includes(o))).toBe(true);
        expect(ofs(sb).every((o) => req.dropped.includes(o))).toBe(true);
        expect(new Set(want).size).toBe(want.length);
        const got: string[] = [];
        for (let e = before; e < S.logLength; e++) {
          expect(S.log.revealHolder[e]).toBe(h);
          got.push(`${S.log.revealKind[e] ? 's' : 'b'}${S.log.revealOf[e]}`);
        }
        expect(got.sort()).toEqual(want);
        expect(committed.has(h)).toBe(false);
        committed.add(h);
      }
    }
    // The draws reached acceptance and every refusal the checks make.
    for (const r of [
      'accepted',
      'malformed',
      'duplicate',
      'both_shares',
      'unrequested_share',
      'malformed_share',
    ])
      expect(reasons.get(r) ?? 0, r).toBeGreaterThan(0);
  });
});
