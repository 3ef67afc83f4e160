import { afterAll, describe, expect, it } from 'vitest';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { KeyChecker } from './key-check.ts';

const keys = () => ({
  cPk: x25519.getPublicKey(x25519.utils.randomSecretKey()),
  sPk: x25519.getPublicKey(x25519.utils.randomSecretKey()),
  gPk: ed25519.getPublicKey(ed25519.utils.randomSecretKey()),
});
/** The identity point's encoding: a small-order Ed25519 key. */
const IDENTITY = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0));
/** u = 0: a small-order X25519 key. */
const ZERO = new Uint8Array(32);

const checker = new KeyChecker();
afterAll(() => checker.close());

describe('KeyChecker (advertised keys checked on a worker thread)', () => {
  it('clears fine keys on the worker, for exactly those bytes of that message', async () => {
    const raw = keys();
    await checker.prepare(raw);
    expect(checker.started).toBe(true);
    expect(checker.prechecked(raw, raw.cPk, raw.sPk, raw.gPk)).toBe(true);
    // Other bytes, or the same bytes in another message, are not cleared.
    const other = raw.gPk.slice();
    other[5] ^= 1;
    expect(checker.prechecked(raw, raw.cPk, raw.sPk, other)).toBe(false);
    expect(checker.prechecked({ ...raw }, raw.cPk, raw.sPk, raw.gPk)).toBe(false);
    // Bytes changed in the message after the check: what the session reads then is not what was cleared.
    raw.sPk[0] ^= 1;
    expect(checker.prechecked(raw, raw.cPk, raw.sPk, raw.gPk)).toBe(false);
  });

  it('does not clear a small-order key, nor a malformed message (the session checks those itself)', async () => {
    const badG = { ...keys(), gPk: IDENTITY };
    const badC = { ...keys(), cPk: ZERO };
    const short = { ...keys(), sPk: new Uint8Array(31) };
    await Promise.all([
      checker.prepare(badG),
      checker.prepare(badC),
      checker.prepare(short),
      checker.prepare(null),
    ]);
    expect(checker.prechecked(badG, badG.cPk, badG.sPk, badG.gPk)).toBe(false);
    expect(checker.prechecked(badC, badC.cPk, badC.sPk, badC.gPk)).toBe(false);
    expect(checker.prechecked(short, short.cPk, short.sPk, short.gPk)).toBe(false);
  });

  it('a burst larger than one job is cleared in batches, every message answered', async () => {
    const burst = Array.from({ length: 600 }, (_, i) =>
      i % 100 === 7 ? { ...keys(), gPk: IDENTITY } : keys(),
    );
    await Promise.all(burst.map((r) => checker.prepare(r)));
    // Exactly the six bad ones are left for the session: results map back to their own messages.
    burst.forEach((r, i) => expect(checker.prechecked(r, r.cPk, r.sPk, r.gPk)).toBe(i % 100 !== 7));
  });

  it('past maxPending, a message is left to the session at once (the cost without a worker, no queue)', async () => {
    const small = new KeyChecker({ maxPending: 2 });
    const [a, b, c] = [keys(), keys(), keys()];
    await Promise.all([small.prepare(a), small.prepare(b), small.prepare(c)]);
    expect([a, b, c].map((r) => small.prechecked(r, r.cPk, r.sPk, r.gPk))).toEqual([true, true, false]);
    await small.close();
  });

  it('a worker that fails or does not answer in time: messages go on unchecked, and it is bypassed a while', async () => {
    const closed = new KeyChecker();
    await closed.close();
    const a = keys();
    await closed.prepare(a); // resolves: the thread is closed
    expect(closed.prechecked(a, a.cPk, a.sPk, a.gPk)).toBe(false);
    // 1 ms is less than a worker takes to start: the batch times out and the worker is bypassed.
    let now = 0;
    const slow = new KeyChecker({ timeoutMs: 1, bypassMs: 1000, now: () => now });
    const b = keys();
    await slow.prepare(b);
    expect(slow.prechecked(b, b.cPk, b.sPk, b.gPk)).toBe(false);
    const c = keys();
    await slow.prepare(c); // bypassed: at once
    expect(slow.prechecked(c, c.cPk, c.sPk, c.gPk)).toBe(false);
    now = 2000; // the bypass is over: the (started by now) worker clears keys again
    await new Promise((r) => setTimeout(r, 3000));
    const d = keys();
    await slow.prepare(d);
    expect(slow.prechecked(d, d.cPk, d.sPk, d.gPk)).toBe(true);
    await slow.close();
  }, 20_000);
});
