import { describe, expect, it } from 'vitest';
import { createRng } from '../shared/data/rng.ts';
import { BACKENDS, PROTOCOL_VERSION, type ServerToClientEvents } from '../shared/protocol/messages.ts';
import { ProtocolError } from '../shared/base/errors.ts';
import { ClientRegistry, type ClientLink } from './clients.ts';
import { createMetrics } from './metrics.ts';
import { clientId, metricValue } from './test-fixtures.ts';

class MemLink implements ClientLink {
  sent: { event: keyof ServerToClientEvents; args: unknown[] }[] = [];
  send(event: keyof ServerToClientEvents, ...args: unknown[]): void {
    this.sent.push({ event, args });
  }
}

const hello = (n: number) => ({ protocolVersion: PROTOCOL_VERSION, clientId: clientId(n), source: 'node' });
const reason = (fn: () => unknown): string => {
  try {
    fn();
    return 'accepted';
  } catch (e) {
    if (e instanceof ProtocolError) return e.reason;
    throw e;
  }
};

describe('ClientRegistry', () => {
  it('counts connected, ready and ready-by-backend as clients come, get ready, drop and return', async () => {
    const metrics = createMetrics();
    const r = new ClientRegistry({ maxExamples: 100, metrics });
    const a = new MemLink();
    const b = new MemLink();
    r.hello(a, hello(1));
    r.hello(b, hello(2));
    expect(r.counts()).toEqual({ connected: 2, ready: 0, byBackend: {} });
    r.ready(clientId(1), { backend: 'webgpu', numExamples: 10 });
    r.ready(clientId(2), { backend: 'wasm', numExamples: 20 });
    expect(r.counts()).toEqual({ connected: 2, ready: 2, byBackend: { webgpu: 1, wasm: 1 } });
    expect(await metricValue(metrics, 'aegis_clients_ready', { backend: 'wasm' })).toBe(1);

    expect(r.disconnect(clientId(1), a)).not.toBeNull();
    expect(r.counts()).toEqual({ connected: 1, ready: 1, byBackend: { wasm: 1 } });
    expect(await metricValue(metrics, 'aegis_clients_connected')).toBe(1);
    expect(await metricValue(metrics, 'aegis_clients_ready', { backend: 'webgpu' })).toBe(0);

    // Client 2 reconnects on a new link: the old link's late disconnect changes nothing.
    const b2 = new MemLink();
    const rec = r.hello(b2, hello(2));
    expect(rec.index).toBe(1); // same record, same data shard
    expect(r.disconnect(clientId(2), b)).toBeNull();
    expect(r.get(clientId(2))?.link).toBe(b2);
    expect(r.counts()).toEqual({ connected: 1, ready: 1, byBackend: { wasm: 1 } });

    // A returning client is ready again with what it said before.
    r.hello(new MemLink(), hello(1));
    expect(r.counts()).toEqual({ connected: 2, ready: 2, byBackend: { webgpu: 1, wasm: 1 } });
    expect(r.size).toBe(2);
  });

  it('lists ready clients in order of first hello, whatever order they became ready in', () => {
    const r = new ClientRegistry({ maxExamples: 100 });
    const links = [1, 2, 3].map((n) => {
      const l = new MemLink();
      r.hello(l, hello(n));
      return l;
    });
    r.ready(clientId(3), { backend: 'cpu', numExamples: 1 });
    r.ready(clientId(1), { backend: 'cpu', numExamples: 1 });
    r.disconnect(clientId(1), links[0]);
    r.hello(new MemLink(), hello(1));
    expect(r.readyClients().map((c) => c.id)).toEqual([clientId(1), clientId(3)]);
    expect(r.readyCount).toBe(2);
  });

  it('validates hello and ready, and refuses ready before hello', () => {
    const r = new ClientRegistry({ maxExamples: 100 });
    expect(reason(() => r.hello(new MemLink(), { ...hello(1), protocolVersion: 0 }))).toBe(
      'protocol_version',
    );
    expect(reason(() => r.hello(new MemLink(), { ...hello(1), clientId: 'short' }))).toBe('malformed');
    expect(reason(() => r.ready(clientId(1), { backend: 'cpu', numExamples: 1 }))).toBe('unknown_client');
    expect(reason(() => r.ready(null, { backend: 'cpu', numExamples: 1 }))).toBe('unknown_client');
    const l = new MemLink();
    r.hello(l, hello(1));
    expect(reason(() => r.ready(clientId(1), { backend: 'cpu', numExamples: 101 }))).toBe('malformed');
    expect(reason(() => r.ready(clientId(1), { backend: 'quantum', numExamples: 1 }))).toBe('malformed');
    r.disconnect(clientId(1), l);
    expect(reason(() => r.ready(clientId(1), { backend: 'cpu', numExamples: 1 }))).toBe('unknown_client');
    expect(r.counts()).toEqual({ connected: 0, ready: 0, byBackend: {} });
  });

  it('sends only to online clients; a link that throws is reported and the others still get the message', () => {
    const errors: unknown[] = [];
    const r = new ClientRegistry({ maxExamples: 100, onSendError: (e) => errors.push(e) });
    const ok = new MemLink();
    const bad: ClientLink = {
      send: () => {
        throw new Error('socket gone');
      },
    };
    const off = new MemLink();
    r.hello(bad, hello(1));
    r.hello(ok, hello(2));
    r.hello(off, hello(3));
    r.disconnect(clientId(3), off);
    r.broadcast('round:end', {} as never);
    expect(ok.sent.map((s) => s.event)).toEqual(['round:end']);
    expect(off.sent).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(r.send(r.get(clientId(3))!, 'round:end', {} as never)).toBe(false);
    expect(r.send(r.get(clientId(1))!, 'round:end', {} as never)).toBe(false);
    expect(r.send(r.get(clientId(2))!, 'round:end', {} as never)).toBe(true);
  });

  it('property: the kept counts always equal a walk over the records, under random hellos, readies and drops', () => {
    const rng = createRng(7);
    const r = new ClientRegistry({ maxExamples: 100 });
    const links = new Map<number, MemLink>();
    for (let step = 0; step < 2000; step++) {
      const n = rng.int(30);
      const op = rng.next();
      if (op < 0.4) {
        const l = new MemLink();
        r.hello(l, hello(n));
        links.set(n, l);
      } else if (op < 0.7) {
        if (r.get(clientId(n))?.link)
          r.ready(clientId(n), { backend: BACKENDS[rng.int(BACKENDS.length)], numExamples: 5 });
      } else {
        const l = rng.next() < 0.8 ? links.get(n) : new MemLink(); // sometimes a stale link
        if (l) r.disconnect(clientId(n), l);
      }
      const all = Array.from({ length: 30 }, (_, i) => r.get(clientId(i))).filter((c) => c !== undefined);
      const ready = all.filter((c) => c.link && c.backend);
      const byBackend: Record<string, number> = {};
      for (const c of ready) byBackend[c.backend!] = (byBackend[c.backend!] ?? 0) + 1;
      expect(r.counts()).toEqual({
        connected: all.filter((c) => c.link).length,
        ready: ready.length,
        byBackend,
      });
      expect(r.readyClients()).toEqual([...ready].sort((a, b) => a.index - b.index));
    }
  });
});
