import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRng } from '../shared/data/rng.ts';
import {
  DEFAULT_RESUME_MAX_AGE_MS,
  issueResumeToken,
  newResumeKey,
  newSessionId,
  RESUME_CLOCK_SKEW_MS,
  RESUME_TOKEN_CHARS,
  verifyResumeToken,
} from './sessions.ts';

const KEY = new Uint8Array(32).map((_, i) => i + 1);
const OLD = new Uint8Array(32).fill(0xa5);
const ID = 'AAECAwQFBgcICQoLDA0ODw'; // 16 bytes 0..15, base64url
const NOW = 1_700_000_000_500; // unix ms; issuedAt = 1700000000
const keys = { key: KEY };

/** The token's bytes with one bit flipped, re-encoded canonically. */
function flip(token: string, byte: number, bit = 0): string {
  const b = Buffer.from(token, 'base64url');
  b[byte] ^= 1 << bit;
  return b.toString('base64url');
}

describe('resume tokens', () => {
  it('known answer: 0x01 | index u32be | issuedAt u32be | HMAC-SHA256(key, "aegisfl/resume/v1\\0" id \\0 index \\0 issuedAt), base64url', () => {
    const expectedMac = createHmac('sha256', KEY)
      .update(Buffer.from(`aegisfl/resume/v1\u0000${ID}\u0000258\u00001700000000`, 'utf8'))
      .digest();
    const head = Buffer.from([1, 0, 0, 1, 2, 0x65, 0x53, 0xf1, 0x00]); // 258, 1700000000 = 0x6553f100
    const expected = Buffer.concat([head, expectedMac]).toString('base64url');
    const token = issueResumeToken(KEY, ID, 258, NOW);
    expect(token).toBe(expected);
    expect(token).toHaveLength(RESUME_TOKEN_CHARS);
    // Inside the credential shape every validator already enforces: no wire change.
    expect(token).toMatch(/^[A-Za-z0-9_-]{16,64}$/);
    expect(verifyResumeToken(keys, ID, token, NOW)).toEqual({ index: 258, issuedAt: 1_700_000_000 });
  });

  it('round-trips for random ids, indices and times; a token names one session', () => {
    const rng = createRng(11);
    for (let i = 0; i < 200; i++) {
      const id = newSessionId();
      const index = i < 2 ? [0, 0xffff_ffff][i] : rng.int(1 << 30);
      const now = 1_600_000_000_000 + rng.int(1 << 30) * 1000;
      const t = issueResumeToken(KEY, id, index, now);
      expect(verifyResumeToken(keys, id, t, now + rng.int(1000))).toEqual({
        index,
        issuedAt: Math.floor(now / 1000),
      });
      expect(verifyResumeToken(keys, newSessionId(), t, now)).toBeNull();
    }
  });

  it('tampering with any field is refused: id, version, index, time, MAC', () => {
    const token = issueResumeToken(KEY, ID, 7, NOW);
    expect(verifyResumeToken(keys, ID, token, NOW)).not.toBeNull();
    expect(verifyResumeToken(keys, ID.replace(/^A/, 'B'), token, NOW)).toBeNull();
    expect(verifyResumeToken(keys, ID + 'A', token, NOW)).toBeNull();
    // Any other version byte, with the v1 MAC left in place, is refused.
    for (let bit = 0; bit < 8; bit++)
      expect(verifyResumeToken(keys, ID, flip(token, 0, bit), NOW)).toBeNull();
    // Index (bytes 1-4), time (5-8), MAC (9-40): every bit counts.
    for (let byte = 1; byte < 41; byte++)
      for (const bit of [0, 3, 7])
        expect(verifyResumeToken(keys, ID, flip(token, byte, bit), NOW)).toBeNull();
    // A field moved onto another session's token does not carry over.
    const other = issueResumeToken(KEY, ID, 8, NOW);
    const spliced = Buffer.concat([
      Buffer.from(other, 'base64url').subarray(0, 9),
      Buffer.from(token, 'base64url').subarray(9),
    ]).toString('base64url');
    expect(verifyResumeToken(keys, ID, spliced, NOW)).toBeNull();
  });

  it('a token is valid for the max age; an expired one, or one dated in the future beyond the skew, is refused', () => {
    const token = issueResumeToken(KEY, ID, 7, NOW);
    const issued = 1_700_000_000_000;
    expect(verifyResumeToken(keys, ID, token, issued + DEFAULT_RESUME_MAX_AGE_MS)).not.toBeNull();
    expect(verifyResumeToken(keys, ID, token, issued + DEFAULT_RESUME_MAX_AGE_MS + 1)).toBeNull();
    expect(verifyResumeToken(keys, ID, token, issued + 60_000, 60_000)).not.toBeNull();
    expect(verifyResumeToken(keys, ID, token, issued + 60_001, 60_000)).toBeNull();
    expect(verifyResumeToken(keys, ID, token, issued - RESUME_CLOCK_SKEW_MS)).not.toBeNull();
    expect(verifyResumeToken(keys, ID, token, issued - RESUME_CLOCK_SKEW_MS - 1)).toBeNull();
  });

  it('the previous key still verifies (rotation); an unknown key does not; only the current key issues', () => {
    const old = issueResumeToken(OLD, ID, 3, NOW);
    expect(verifyResumeToken({ key: KEY, previousKey: OLD }, ID, old, NOW)).toEqual({
      index: 3,
      issuedAt: 1_700_000_000,
    });
    expect(verifyResumeToken({ key: KEY }, ID, old, NOW)).toBeNull();
    expect(verifyResumeToken({ key: KEY, previousKey: null }, ID, old, NOW)).toBeNull();
    expect(verifyResumeToken({ key: newResumeKey(), previousKey: newResumeKey() }, ID, old, NOW)).toBeNull();
    expect(
      verifyResumeToken({ key: KEY, previousKey: OLD }, ID, issueResumeToken(KEY, ID, 3, NOW), NOW),
    ).not.toBeNull();
  });

  it('garbage, oversized and non-canonical input is refused before any MAC work, whatever its type', () => {
    const token = issueResumeToken(KEY, ID, 7, NOW);
    const bad: [unknown, unknown][] = [
      [undefined, token],
      [ID, undefined],
      [ID, null],
      [ID, 42],
      [{ toString: () => ID }, token],
      [ID, [token]],
      [ID, ''],
      [ID, token + 'A'],
      [ID, token.slice(1)],
      [ID, 'x'.repeat(1_000_000)],
      ['x'.repeat(1_000_000), token],
      [ID, token.slice(0, -1) + '.'],
      [ID, token.slice(0, -1) + '='],
      [ID + '\0', token],
      ['short', token],
    ];
    // createHmac throws on this key: reaching the MAC with any of these would fail loudly.
    const noKeys = { key: {} as Uint8Array };
    expect(() => verifyResumeToken(noKeys, ID, token, NOW)).toThrow();
    for (const [id, t] of bad) {
      expect(verifyResumeToken(keys, id, t, NOW)).toBeNull();
      expect(verifyResumeToken(noKeys, id, t, NOW)).toBeNull();
    }
    // 55 characters carry 2 spare bits: a spelling with them set decodes to the same bytes, and is refused.
    const last = token.at(-1)!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twin = token.slice(0, -1) + alphabet[alphabet.indexOf(last) ^ 1];
    expect(Buffer.from(twin, 'base64url')).toEqual(Buffer.from(token, 'base64url'));
    expect(verifyResumeToken(keys, ID, twin, NOW)).toBeNull();
  });

  it('issuing checks its inputs', () => {
    expect(() => issueResumeToken(new Uint8Array(16), ID, 0, NOW)).toThrow(/at least 32 bytes/);
    expect(() => issueResumeToken(KEY, 'bad id!', 0, NOW)).toThrow(/session id/);
    expect(() => issueResumeToken(KEY, ID, -1, NOW)).toThrow(/index/);
    expect(() => issueResumeToken(KEY, ID, 2 ** 32, NOW)).toThrow(/index/);
    expect(() => issueResumeToken(KEY, ID, 1.5, NOW)).toThrow(/index/);
    expect(() => issueResumeToken(KEY, ID, 0, NaN)).toThrow(/time/);
    expect(() => issueResumeToken(KEY, ID, 0, 2 ** 32 * 1000)).toThrow(/time/);
    expect(newSessionId()).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(newResumeKey()).toHaveLength(32);
  });
});
