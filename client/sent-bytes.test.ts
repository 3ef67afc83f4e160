import { describe, expect, it } from 'vitest';
import type { SocketLike } from './socket.ts';
import { countingSocket, messageBytes, type SentMessage } from './sent-bytes.ts';

describe('bytes sent', () => {
  it('counts binary parts by their length and the rest as JSON', () => {
    expect(messageBytes({ round: 1 })).toBe('{"round":1}'.length);
    const delta = new Uint32Array(1000);
    const header = JSON.stringify({ round: 2, attempt: 1, delta: { _placeholder: true, num: 0 } });
    expect(messageBytes({ round: 2, attempt: 1, delta: delta.buffer })).toBe(header.length + 4000);
    expect(messageBytes({ round: 2, attempt: 1, delta })).toBe(header.length + 4000);
    expect(messageBytes(undefined)).toBe(4); // null
  });

  it('reports every emit, with or without an ack, and passes it on unchanged', async () => {
    const passed: unknown[][] = [];
    const inner = {
      connected: true,
      on: () => undefined,
      emit: (...a: unknown[]) => passed.push(a),
      timeout: () => ({ emitWithAck: async (...a: unknown[]) => (passed.push(a), { ok: true as const }) }),
      disconnect: () => undefined,
    } as unknown as SocketLike;
    const seen: SentMessage[] = [];
    const s = countingSocket(inner, (m) => seen.push(m));
    s.emit('ready', { backend: 'wasm' });
    const u = { round: 3, attempt: 1, delta: new ArrayBuffer(64) };
    expect(await s.timeout(10).emitWithAck('update', u)).toEqual({ ok: true });
    expect(passed).toEqual([
      ['ready', { backend: 'wasm' }],
      ['update', u],
    ]);
    expect(seen).toEqual([
      { event: 'ready', round: null, bytes: '{"backend":"wasm"}'.length },
      { event: 'update', round: 3, bytes: messageBytes(u) },
    ]);
    expect(seen[1].bytes).toBeGreaterThan(64);
    expect(s.connected).toBe(true);
  });
});
