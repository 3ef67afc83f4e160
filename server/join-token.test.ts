import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  JoinTokenVerifier,
  MAX_TOKEN_CHARS,
  mintJoinToken,
  newTokenKey,
  normalizeOrigin,
  parseTokenKey,
  ReplayCache,
} from './join-token.ts';

const KEY = Buffer.alloc(32, 7);
const OTHER = Buffer.alloc(32, 8);
const NOW = 1_700_000_000_000;
const SITE = 'https://site.example';
const verifier = (o: Partial<ConstructorParameters<typeof JoinTokenVerifier>[0]> = {}) =>
  new JoinTokenVerifier({ key: KEY, maxTtlSeconds: 600, replayCapacity: 1000, ...o });
const mint = (o: Partial<Parameters<typeof mintJoinToken>[1]> = {}, key = KEY): string =>
  mintJoinToken(key, { origin: SITE, ttlSeconds: 300, now: NOW, ...o }).token;
const problem = (v: ReturnType<JoinTokenVerifier['verify']>): string => (v.ok ? 'ok' : v.problem);

describe('join tokens', () => {
  it('known answer: fixed key, origin, time and jti give this token (checked against Python hmac)', () => {
    const { token, payload } = mintJoinToken(KEY, {
      origin: SITE,
      ttlSeconds: 300,
      now: NOW,
      jti: new Uint8Array(16).fill(1),
      site: 'news',
    });
    expect(token).toBe(
      'eyJ2IjoxLCJvIjoiaHR0cHM6Ly9zaXRlLmV4YW1wbGUiLCJleHAiOjE3MDAwMDAzMDAsImp0aSI6IkFRRUJBUUVCQVFFQkFRRUJBUUVCQVEiLCJzaXRlIjoibmV3cyJ9' +
        '.bzd3PIX6WnBnbyOMGDDVr-Vh70cI-aXOK0kwhm6KNbQ',
    );
    expect(payload).toEqual({
      v: 1,
      o: SITE,
      exp: 1_700_000_300,
      jti: 'AQEBAQEBAQEBAQEBAQEBAQ',
      site: 'news',
    });
    // The MAC is HMAC-SHA256 over the context string and the first part, as documented.
    const [part, sig] = token.split('.');
    expect(createHmac('sha256', KEY).update(`aegisfl-join-token.${part}`).digest('base64url')).toBe(sig);
    expect(verifier().verify(token, SITE, NOW)).toEqual({ ok: true, payload });
  });

  it('accepts a fresh token once: the same token again is a replay', () => {
    const v = verifier();
    const t = mint();
    expect(problem(v.verify(t, SITE, NOW))).toBe('ok');
    expect(problem(v.verify(t, SITE, NOW + 1000))).toBe('replayed');
    expect(problem(v.verify(mint(), SITE, NOW))).toBe('ok'); // a new jti is a new token
  });

  it('refuses a token for another origin, and one presented without an Origin', () => {
    const v = verifier();
    expect(problem(v.verify(mint(), 'https://evil.example', NOW))).toBe('wrong_origin');
    expect(problem(v.verify(mint(), undefined, NOW))).toBe('wrong_origin');
    expect(problem(v.verify(mint(), 'https://site.example:444', NOW))).toBe('wrong_origin');
  });

  it('expires at exp; refuses one dated further ahead than the longest lifetime allowed', () => {
    const v = verifier();
    expect(problem(v.verify(mint(), SITE, NOW + 299_000))).toBe('ok');
    expect(problem(v.verify(mint(), SITE, NOW + 300_000))).toBe('expired');
    expect(problem(v.verify(mint({ ttlSeconds: 601 }), SITE, NOW))).toBe('too_long_lived');
    expect(problem(v.verify(mint({ ttlSeconds: 86_400 }), SITE, NOW))).toBe('too_long_lived');
  });

  it('refuses any change to the payload or the MAC, and tokens under another key', () => {
    const v = verifier();
    const t = mint();
    const [part, sig] = t.split('.');
    const flip = (s: string, i: number): string =>
      s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    for (let i = 0; i < part.length; i += 7)
      expect(problem(v.verify(`${flip(part, i)}.${sig}`, SITE, NOW))).toBe('bad_signature');
    for (let i = 0; i < sig.length - 1; i += 5)
      expect(problem(v.verify(`${part}.${flip(sig, i)}`, SITE, NOW))).toBe('bad_signature');
    // Another origin spliced in with the old MAC.
    const forged = Buffer.from(
      JSON.stringify({ v: 1, o: 'https://evil.example', exp: 1_700_000_300, jti: 'A'.repeat(22) }),
    ).toString('base64url');
    expect(problem(v.verify(`${forged}.${sig}`, 'https://evil.example', NOW))).toBe('bad_signature');
    expect(problem(v.verify(mint({}, OTHER), SITE, NOW))).toBe('bad_signature');
    expect(problem(v.verify(t, SITE, NOW))).toBe('ok'); // none of the above spent it
  });

  it('rotation: tokens under the previous key stay valid until dropped from the verifier', () => {
    const v = verifier({ key: OTHER, previousKey: KEY });
    expect(problem(v.verify(mint({}, KEY), SITE, NOW))).toBe('ok');
    expect(problem(v.verify(mint({}, OTHER), SITE, NOW))).toBe('ok');
    expect(problem(verifier({ key: OTHER }).verify(mint({}, KEY), SITE, NOW))).toBe('bad_signature');
  });

  it('garbage, huge and odd-typed tokens are refused before the MAC, and never remembered', () => {
    const v = verifier();
    const cases: unknown[] = [
      'x'.repeat(MAX_TOKEN_CHARS + 1),
      'a'.repeat(10_000_000),
      'not a token',
      'abc.def',
      `${'A'.repeat(20)}.${'A'.repeat(44)}`,
      `${'A'.repeat(20)}..${'A'.repeat(43)}`,
      42,
      { token: 'x' },
      ['a'],
    ];
    for (const c of cases) expect(problem(v.verify(c, SITE, NOW))).toBe('malformed');
    expect(problem(v.verify(undefined, SITE, NOW))).toBe('missing');
    expect(problem(v.verify('', SITE, NOW))).toBe('missing');
    for (let i = 0; i < 1000; i++) v.verify(`${'A'.repeat(20 + (i % 50))}.${'B'.repeat(43)}`, SITE, NOW);
    expect(v.remembered).toBe(0);
  });

  it('an authentic payload that is not a token (a key holder bug) is refused as malformed', () => {
    const v = verifier();
    for (const payload of [
      { v: 2, o: SITE, exp: 1_700_000_100, jti: 'A'.repeat(22) },
      { v: 1, o: SITE, exp: '1', jti: 'A'.repeat(22) },
      { v: 1, o: SITE, exp: 1_700_000_100, jti: 'short' },
    ]) {
      const part = Buffer.from(JSON.stringify(payload)).toString('base64url');
      const sig = createHmac('sha256', KEY).update(`aegisfl-join-token.${part}`).digest('base64url');
      expect(problem(v.verify(`${part}.${sig}`, SITE, NOW))).toBe('malformed');
    }
  });

  it('minting checks its inputs', () => {
    expect(() => mint({ origin: 'https://site.example/path' })).toThrow(/origin/);
    expect(() => mint({ origin: 'javascript:alert(1)' })).toThrow(/origin/);
    expect(() => mint({ origin: 'null' })).toThrow(/origin/);
    expect(() => mint({ ttlSeconds: 0 })).toThrow(/ttl/);
    expect(() => mint({ ttlSeconds: 1.5 })).toThrow(/ttl/);
    expect(() => mint({ site: 'a b' })).toThrow(/site/);
    expect(() => mintJoinToken(Buffer.alloc(16), { origin: SITE, ttlSeconds: 1 })).toThrow(/32 bytes/);
    expect(normalizeOrigin('https://site.example/')).toBe(SITE);
    expect(normalizeOrigin('http://127.0.0.1:8080')).toBe('http://127.0.0.1:8080');
  });

  it('keys: hex of at least 32 bytes; new keys are random', () => {
    const k = newTokenKey();
    expect(parseTokenKey(`${k}\n`)).toEqual(Buffer.from(k, 'hex'));
    expect(k).not.toBe(newTokenKey());
    expect(() => parseTokenKey('ab'.repeat(31))).toThrow(/32 bytes/);
    expect(() => parseTokenKey('zz'.repeat(32))).toThrow(/hex/);
  });
});

describe('replay cache', () => {
  it('keeps each jti until its expiry and is bounded: when full of live tokens it refuses, it never forgets one', () => {
    const c = new ReplayCache(3);
    const t0 = 1_000_000;
    expect(c.add('a', 1010, t0)).toBe('added');
    expect(c.add('b', 1100, t0)).toBe('added');
    expect(c.add('c', 1100, t0)).toBe('added');
    expect(c.add('d', 1100, t0)).toBe('full');
    expect(c.add('a', 1010, t0)).toBe('replayed');
    expect(c.size).toBe(3);
    // 'a' expired: its slot is free again.
    expect(c.add('d', 1100, 1_011_000)).toBe('added');
    expect(c.add('b', 1100, 1_011_000)).toBe('replayed');
  });

  it('frees expired entries behind a live one (a full sweep, at most once a second)', () => {
    const c = new ReplayCache(3);
    expect(c.add('long', 2000, 1_000_000)).toBe('added');
    expect(c.add('s1', 1010, 1_000_000)).toBe('added');
    expect(c.add('s2', 1010, 1_000_000)).toBe('added');
    expect(c.add('x', 2000, 1_020_000)).toBe('added'); // s1, s2 swept although 'long' sits in front
    expect(c.size).toBe(2);
  });
});
