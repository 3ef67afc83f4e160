import { describe, expect, it } from 'vitest';
import { asBytes, bytesToFloat32, float32ToBuffer } from '../base/bytes.ts';
import { PROTOCOL_VERSION } from './messages.ts';
import { checkHello, checkReady, checkUpdate } from './validate.ts';

const ID = 'abcdefghijklmnop_-12';
const limits = { numParams: 4, maxExamples: 1000 };
const good = () => ({
  round: 1,
  attempt: 1,
  numExamples: 10,
  trainMs: 5,
  loss: 1.2,
  delta: new Float32Array([1, 2, 3, 4]).buffer,
});

describe('checkHello', () => {
  const resume = { sessionId: ID, resumeToken: 'T'.repeat(43) };
  it('accepts a hello for a new session, and one resuming a session', () => {
    expect(checkHello({ protocolVersion: PROTOCOL_VERSION, source: 'demo' })).toEqual({
      ok: true,
      value: { protocolVersion: PROTOCOL_VERSION, source: 'demo' },
    });
    // Only the known fields come through (an old clientId is ignored).
    expect(checkHello({ protocolVersion: PROTOCOL_VERSION, source: 'node', resume, clientId: ID })).toEqual({
      ok: true,
      value: { protocolVersion: PROTOCOL_VERSION, source: 'node', resume },
    });
  });
  it.each([
    [null, 'malformed'],
    ['hi', 'malformed'],
    [{ protocolVersion: 999, source: 'demo' }, 'protocol_version'],
    [{ protocolVersion: 1, clientId: ID, source: 'demo' }, 'protocol_version'],
    [{ protocolVersion: PROTOCOL_VERSION, source: 'evil' }, 'malformed'],
    [{ protocolVersion: PROTOCOL_VERSION, source: 'demo', resume: ID }, 'malformed'],
    [{ protocolVersion: PROTOCOL_VERSION, source: 'demo', resume: { sessionId: ID } }, 'malformed'],
    [
      { protocolVersion: PROTOCOL_VERSION, source: 'demo', resume: { ...resume, sessionId: 'short' } },
      'malformed',
    ],
    [
      {
        protocolVersion: PROTOCOL_VERSION,
        source: 'demo',
        resume: { ...resume, resumeToken: ID + '<script>' },
      },
      'malformed',
    ],
    [
      {
        protocolVersion: PROTOCOL_VERSION,
        source: 'demo',
        resume: { ...resume, resumeToken: 'x'.repeat(65) },
      },
      'malformed',
    ],
  ])('rejects %j as %s', (raw, reason) => {
    const r = checkHello(raw);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe(reason);
  });
  it('answers a hostile protocolVersion without stringifying it (a nested array overflows String())', () => {
    const depth = 100_000;
    const nested: unknown = JSON.parse('['.repeat(depth) + ']'.repeat(depth));
    const r = checkHello({ protocolVersion: nested, source: 'node' });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toBe('protocol_version');
      expect(r.message.length).toBeLessThan(200);
    }
    const huge = checkHello({ protocolVersion: 'x'.repeat(1_000_000), source: 'node' });
    expect(!huge.ok && huge.message.length).toBeLessThan(200);
  });
});

describe('checkReady', () => {
  it('accepts { backend } with a known backend', () => {
    expect(checkReady({ backend: 'webgpu' })).toEqual({ ok: true, value: { backend: 'webgpu' } });
    expect(checkReady({ backend: 'cuda' }).ok).toBe(false);
    expect(checkReady(null).ok).toBe(false);
  });

  it('refuses an example count (it would leak) and any other field, naming only known ones', () => {
    expect(checkReady({ backend: 'cpu', numExamples: 5 })).toEqual({
      ok: false,
      reason: 'malformed',
      message: 'ready carries only backend, not "numExamples"',
    });
    const odd = checkReady({ backend: 'cpu', ['<b>'.repeat(100)]: 1 });
    expect(odd).toEqual({
      ok: false,
      reason: 'malformed',
      message: 'ready carries only backend, not an unknown field',
    });
  });
});

describe('checkUpdate', () => {
  it('accepts a binary delta of the right length as a Float32Array', () => {
    const r = checkUpdate(good(), limits);
    expect(r.ok).toBe(true);
    if (r.ok) expect([...r.value.delta!]).toEqual([1, 2, 3, 4]);
  });

  it('with a ring length, accepts { round, attempt, delta } of exactly that many uint32 values', () => {
    const ring = Uint32Array.of(1, 2, 0xffffffff, 4, 5, 6);
    const r = checkUpdate({ round: 2, attempt: 1, delta: ring.buffer }, { ...limits, ringLength: 6 });
    expect(r).toEqual({ ok: true, value: { round: 2, attempt: 1, delta: null, ring } });
    const short = checkUpdate(
      { round: 2, attempt: 1, delta: ring.subarray(1) },
      { ...limits, ringLength: 6 },
    );
    expect(!short.ok && short.reason).toBe('wrong_length');
    const json = checkUpdate({ round: 2, attempt: 1, delta: [...ring] }, { ...limits, ringLength: 6 });
    expect(!json.ok && json.reason).toBe('malformed');
  });

  it.each([
    ['numExamples', 8],
    ['loss', 1.2],
    ['trainMs', 5],
    ['weight', 1],
  ])(
    'refuses a ring update that carries %s in the clear (nothing per client travels beside the vector)',
    (field, value) => {
      const ring = new Uint32Array(6);
      const r = checkUpdate(
        { round: 1, attempt: 1, delta: ring.buffer, [field]: value },
        { ...limits, ringLength: 6 },
      );
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.reason).toBe('malformed');
      expect(r.message).toMatch(/a ring update carries only round, attempt and delta/);
      expect(r.message).toContain(field === 'weight' ? 'an unknown field' : `"${field}"`);
    },
  );

  it('a float update keeps its cleartext fields (the server sees each float update anyway)', () => {
    const r = checkUpdate(good(), limits);
    expect(r.ok && { ...r.value, delta: null }).toEqual({
      round: 1,
      attempt: 1,
      numExamples: 10,
      trainMs: 5,
      loss: 1.2,
      delta: null,
      ring: null,
    });
  });

  it('accepts a Node Buffer at an unaligned offset (as socket.io may deliver)', () => {
    const backing = new Uint8Array(17);
    backing.set(new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer), 1);
    const r = checkUpdate({ ...good(), delta: backing.subarray(1) }, limits);
    expect(r.ok && [...r.value.delta!]).toEqual([1, 2, 3, 4]);
  });

  it.each([
    [{ delta: [1, 2, 3, 4] }, 'malformed', /binary/],
    [{ delta: new Float32Array(3).buffer }, 'wrong_length', /12 bytes, expected 16/],
    [{ delta: new Float32Array(5).buffer }, 'wrong_length', /20 bytes/],
    [{ delta: new Float32Array([1, NaN, 0, 0]).buffer }, 'not_finite', /delta\[1\] is NaN/],
    [{ delta: new Float32Array([1, 0, Infinity, 0]).buffer }, 'not_finite', /delta\[2\]/],
    [{ numExamples: 0 }, 'malformed', /numExamples/],
    [{ numExamples: 1001 }, 'malformed', /numExamples/],
    [{ round: -1 }, 'malformed', /round/],
    [{ loss: 'x' }, 'malformed', /loss/],
    [{ trainMs: -3 }, 'malformed', /trainMs/],
  ])('rejects %j as %s', (patch, reason, msg) => {
    const r = checkUpdate({ ...good(), ...patch }, limits);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toBe(reason);
      expect(r.message).toMatch(msg);
    }
  });
});

describe('binary helpers', () => {
  it('views and copies exactly', () => {
    expect(asBytes('nope')).toBeNull();
    expect(asBytes(new ArrayBuffer(3))!.length).toBe(3);
    expect(() => bytesToFloat32(new Uint8Array(3))).toThrow(/multiple of 4/);
    const big = new Float32Array([9, 1, 2, 9]);
    const buf = float32ToBuffer(big.subarray(1, 3));
    expect(buf.byteLength).toBe(8);
    expect([...new Float32Array(buf)]).toEqual([1, 2]);
  });
});
