import { serialize } from 'node:v8';
import { describe, expect, it } from 'vitest';
import {
  decodeDown,
  decodeUp,
  encodeFrame,
  MAX_MESSAGE_DEPTH,
  withinDepth,
  type DownFrame,
  type UpFrame,
} from './frames.ts';

const META = { resumes: null, observerOnly: false, observe: false };

describe('cluster frames', () => {
  it('round-trips a client message with Buffers, typed arrays and nesting intact', () => {
    const delta = new Float32Array([1.5, -2.25, Number.NaN, 3e-39]);
    const raw = {
      round: 3,
      nested: { deep: [{ bytes: Buffer.from([0, 255, 7]) }, null, 'x'] },
      delta: Buffer.from(delta.buffer),
      view: new Uint8Array([9, 8, 7]).subarray(1),
      i32: new Int32Array([-1, 2 ** 31 - 1]),
      ab: new Uint16Array([65535, 1]).buffer,
    };
    const f: UpFrame = { t: 'msg', g: 'gw-1', c: '1a', m: META, e: 'update', r: raw, a: 42 };
    const back = decodeUp(encodeFrame(f)) as Extract<UpFrame, { t: 'msg' }>;
    expect(back).toEqual(f);
    const r = back.r as typeof raw;
    // Types survive, not just values: a Buffer stays a Buffer (what socket.io gives the handlers).
    expect(Buffer.isBuffer(r.delta)).toBe(true);
    expect(Buffer.isBuffer((r.nested.deep[0] as { bytes: Buffer }).bytes)).toBe(true);
    expect(Array.from(new Float32Array(new Uint8Array(r.delta).buffer))).toEqual(Array.from(delta));
    expect(r.view).toBeInstanceOf(Uint8Array);
    expect(Array.from(r.view)).toEqual([8, 7]);
    expect(r.i32).toBeInstanceOf(Int32Array);
    expect(Array.from(r.i32)).toEqual([-1, 2 ** 31 - 1]);
    expect(r.ab).toBeInstanceOf(ArrayBuffer);
    expect(Array.from(new Uint16Array(r.ab))).toEqual([65535, 1]);
  });

  it('round-trips open, close, send and ack frames', () => {
    const ups: UpFrame[] = [
      {
        t: 'open',
        g: 'g',
        c: 'c',
        m: { resumes: 'sess-abcdefghijklmnop', observerOnly: false, observe: true },
      },
      { t: 'close', g: 'g', c: 'c' },
    ];
    for (const f of ups) expect(decodeUp(encodeFrame(f))).toEqual(f);
    const downs: DownFrame[] = [
      { t: 'send', c: 'c', e: 'round:start', a: [{ round: 1, weights: new Uint8Array([1, 2]) }] },
      { t: 'ack', c: 'c', a: 7, r: { ok: true } },
      { t: 'ack', c: 'c', a: 8, r: { ok: false, reason: 'malformed', message: 'no' } },
    ];
    for (const f of downs) expect(decodeDown(encodeFrame(f))).toEqual(f);
  });

  it('keeps a client key named __proto__ as data, without touching any prototype', () => {
    const raw = JSON.parse('{"__proto__": {"polluted": true}, "round": 1}') as unknown;
    const back = decodeUp(encodeFrame({ t: 'msg', g: 'g', c: 'c', m: META, e: 'ready', r: raw, a: 1 }));
    expect(back).not.toBeNull();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf((back as { r: object }).r)).toBe(Object.prototype);
  });

  it('decodes garbage bytes and non-object values to null, never throwing', () => {
    const garbage: Buffer[] = [
      Buffer.alloc(0),
      Buffer.from('not a frame'),
      Buffer.from([0xff, 0x0f, 0x6f, 0x22, 0x01]), // a v8 header, then a truncated object
      serialize(42),
      serialize('open'),
      serialize(null),
      serialize(undefined),
      serialize([1, 2]),
      serialize(['open', 'g', 'c']),
    ];
    for (let seed = 1; seed <= 200; seed++) {
      const b = Buffer.alloc(1 + (seed % 40));
      for (let i = 0; i < b.length; i++) b[i] = (seed * 131 + i * 71) & 0xff;
      garbage.push(b);
    }
    // A valid frame cut short at every length.
    const whole = encodeFrame({ t: 'msg', g: 'g', c: 'c', m: META, e: 'hello', r: { x: [1, 2] }, a: 1 });
    for (let n = 0; n < whole.length; n++) garbage.push(whole.subarray(0, n));
    for (const b of garbage) {
      expect(() => decodeUp(b)).not.toThrow();
      expect(() => decodeDown(b)).not.toThrow();
      expect(decodeUp(b)).toBeNull();
      expect(decodeDown(b)).toBeNull();
    }
  });

  it('refuses frames of the wrong kind or with a field missing or mistyped', () => {
    const msg = { t: 'msg', g: 'g', c: 'c', m: META, e: 'hello', r: {}, a: 1 };
    const badUp: unknown[] = [
      { ...msg, t: 'send' },
      { ...msg, t: 'ack' },
      { ...msg, t: undefined },
      { ...msg, g: undefined },
      { ...msg, g: 7 },
      { ...msg, g: '' },
      { ...msg, c: undefined },
      { ...msg, m: undefined },
      { ...msg, m: { resumes: null, observerOnly: false } },
      { ...msg, m: { resumes: 5, observerOnly: false, observe: false } },
      { ...msg, m: { resumes: null, observerOnly: 'no', observe: false } },
      { ...msg, e: undefined },
      { ...msg, e: 'constructor' }, // not a client event, whatever a handler table inherits
      { ...msg, e: 'toString' },
      { ...msg, e: 'status' },
      { ...msg, a: undefined },
      { ...msg, a: '1' },
      { ...msg, a: 0 },
      { ...msg, a: 1.5 },
      { t: 'open', g: 'g', c: 'c' },
      { t: 'close', g: 'g' },
    ];
    for (const f of badUp) expect(decodeUp(serialize(f)), JSON.stringify(f)).toBeNull();
    expect(decodeUp(serialize(msg))).not.toBeNull();

    const ack = { t: 'ack', c: 'c', a: 1, r: { ok: true } };
    const send = { t: 'send', c: 'c', e: 'welcome', a: [] };
    const badDown: unknown[] = [
      { ...ack, t: 'msg' },
      { ...ack, c: undefined },
      { ...ack, a: undefined },
      { ...ack, a: -1 },
      { ...ack, r: undefined },
      { ...ack, r: 'ok' },
      { ...ack, r: { ok: false } },
      { ...send, e: undefined },
      { ...send, a: undefined },
      { ...send, a: { 0: 1 } },
      { ...send, t: 'open' },
    ];
    for (const f of badDown) expect(decodeDown(serialize(f)), JSON.stringify(f)).toBeNull();
    expect(decodeDown(serialize(ack))).not.toBeNull();
    expect(decodeDown(serialize(send))).not.toBeNull();
    // One direction's frames are not the other's.
    expect(decodeDown(serialize(msg))).toBeNull();
    expect(decodeUp(serialize(ack))).toBeNull();
  });

  it('measures nesting without recursion: binary values are leaves, a deep chain is refused', () => {
    const chain = (n: number): unknown => {
      let v: unknown = Buffer.alloc(4);
      for (let i = 0; i < n; i++) v = i % 2 ? { k: v } : [v];
      return v;
    };
    expect(withinDepth(chain(MAX_MESSAGE_DEPTH))).toBe(true);
    expect(withinDepth(chain(MAX_MESSAGE_DEPTH + 1))).toBe(false);
    expect(withinDepth(chain(1_000_000))).toBe(false); // no stack overflow
    for (const leaf of [null, 1, 'x', new Float32Array(1e5), new ArrayBuffer(8), undefined])
      expect(withinDepth(leaf, 0)).toBe(true);
    expect(withinDepth({ a: 1 }, 0)).toBe(false);
    // A real protocol shape is far within the bound.
    expect(withinDepth({ round: 1, shares: [{ to: 'x', box: Buffer.alloc(8) }] })).toBe(true);
  });
});
