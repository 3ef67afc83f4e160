import { describe, expect, it } from 'vitest';
import { createRng } from '../shared/data/rng.ts';
import {
  BACKENDS,
  PROTOCOL_VERSION,
  type SessionCredentials,
  type ServerToClientEvents,
} from '../shared/protocol/messages.ts';
import { ProtocolError } from '../shared/base/errors.ts';
import { ClientRegistry, type ClientLink, type RegistryOptions } from './clients.ts';
import { ManualClock } from './clock.ts';
import { createMetrics } from './metrics.ts';
import { issueResumeToken, newResumeKey, verifyResumeToken } from './sessions.ts';
import { metricValue } from './test-fixtures.ts';

class MemLink implements ClientLink {
  sent: { event: keyof ServerToClientEvents; args: unknown[] }[] = [];
  send(event: keyof ServerToClientEvents, ...args: unknown[]): void {
    this.sent.push({ event, args });
  }
}

const fresh = { protocolVersion: PROTOCOL_VERSION, source: 'node' };
const resume = (c: SessionCredentials) => ({ ...fresh, resume: c });
const reason = (fn: () => unknown): string => {
  try {
    fn();
    return 'accepted';
  } catch (e) {
    if (e instanceof ProtocolError) return e.reason;
    throw e;
  }
};

const KEY = newResumeKey();

function registry(over: Partial<RegistryOptions> = {}, clock = new ManualClock(1_700_000_000_000)) {
  const metrics = createMetrics();
  const r = new ClientRegistry({
    clock,
    sessionTtlMs: 60_000,
    maxSessions: 1000,
    metrics,
    resumeKey: KEY,
    ...over,
  });
  /** A new session on a new link. */
  const join = (ready = false) => {
    const link = new MemLink();
    const { record, credentials } = r.hello(link, fresh);
    if (ready) r.ready(record.id, { backend: 'cpu' });
    return { link, id: record.id, credentials };
  };
  return { r, clock, metrics, join };
}

describe('ClientRegistry: sessions', () => {
  it('issues a random session id and a resume token MACed under the key; resuming needs the token and renews it', () => {
    const { r, join, clock } = registry();
    const a = join();
    const b = join();
    expect(a.id).not.toBe(b.id);
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(a.credentials.sessionId).toBe(a.id);
    expect(a.credentials.resumeToken).toMatch(/^[A-Za-z0-9_-]{55}$/);
    expect(a.credentials.resumeToken).not.toBe(b.credentials.resumeToken);
    expect(verifyResumeToken({ key: KEY }, a.id, a.credentials.resumeToken, clock.now())).toEqual({
      index: 0,
      issuedAt: clock.now() / 1000,
    });
    r.disconnect(a.link);
    clock.advance(5_000);
    const back = new MemLink();
    const res = r.hello(back, resume(a.credentials));
    expect(res.record.id).toBe(a.id);
    // Same session, a token issued now: an active client keeps a fresh one.
    expect(res.credentials.sessionId).toBe(a.id);
    expect(res.credentials.resumeToken).not.toBe(a.credentials.resumeToken);
    expect(verifyResumeToken({ key: KEY }, a.id, res.credentials.resumeToken, clock.now())).toEqual({
      index: 0,
      issuedAt: clock.now() / 1000,
    });
    expect(r.get(a.id)?.link).toBe(back);
  });

  it("a stolen id with a wrong token, or another session's token, is refused (bad_token) and changes nothing", () => {
    const { r, join } = registry();
    const victim = join(true);
    const thief = join();
    r.disconnect(victim.link); // even while the victim is offline
    const guess = {
      sessionId: victim.id,
      resumeToken: victim.credentials.resumeToken.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')),
    };
    expect(reason(() => r.hello(new MemLink(), resume(guess)))).toBe('bad_token');
    expect(
      reason(() =>
        r.hello(new MemLink(), resume({ sessionId: victim.id, resumeToken: thief.credentials.resumeToken })),
      ),
    ).toBe('bad_token');
    expect(
      reason(() =>
        r.hello(
          new MemLink(),
          resume({ sessionId: 'no-such-session-000', resumeToken: victim.credentials.resumeToken }),
        ),
      ),
    ).toBe('bad_token');
    expect(r.get(victim.id)?.link).toBeNull();
    expect(r.counts()).toEqual({ connected: 1, ready: 0, byBackend: {} });
  });

  it('taking over a live session is refused (session_taken), even with the right token', () => {
    const { r, join } = registry();
    const a = join(true);
    const other = new MemLink();
    expect(reason(() => r.hello(other, resume(a.credentials)))).toBe('session_taken');
    expect(r.get(a.id)?.link).toBe(a.link);
    // The refused link has no identity: it may still start its own session.
    expect(r.hello(other, fresh).record.id).not.toBe(a.id);
  });

  it('one link, one identity: a second hello on it is refused (already_identified), new or resume', () => {
    const { r, join } = registry();
    const a = join();
    const b = join();
    r.disconnect(b.link);
    expect(reason(() => r.hello(a.link, fresh))).toBe('already_identified');
    expect(reason(() => r.hello(a.link, resume(b.credentials)))).toBe('already_identified');
    expect(r.size).toBe(2);
    // Disconnecting releases exactly the one identity; a stale disconnect of an unknown link does nothing.
    expect(r.disconnect(new MemLink())).toBeNull();
    expect(r.disconnect(a.link)?.id).toBe(a.id);
    expect(r.counts().connected).toBe(0);
  });

  it('a disconnected session expires after its TTL (manual clock); a live one never does', async () => {
    const { r, clock, join, metrics } = registry({ sessionTtlMs: 60_000, resumeMaxAgeMs: 3_600_000 });
    const gone = join(true);
    const live = join(true);
    r.disconnect(gone.link);
    clock.advance(59_999);
    r.expire();
    expect(r.get(gone.id)).toBeDefined();
    const back = new MemLink();
    r.hello(back, resume(gone.credentials)); // resumed in time: the TTL stops
    r.disconnect(back);
    clock.advance(59_999);
    r.expire();
    expect(r.get(gone.id)).toBeDefined();
    clock.advance(1);
    r.expire();
    expect(r.get(gone.id)).toBeUndefined();
    clock.advance(10 * 60_000);
    r.expire();
    expect(r.get(live.id)).toBeDefined();
    expect(r.size).toBe(1);
    expect(await metricValue(metrics, 'aegis_sessions_ended_total', { why: 'expired' })).toBe(1);
    expect(await metricValue(metrics, 'aegis_sessions')).toBe(1);
  });

  it('an expired record with a token still within its max age is recreated on its shard; an expired token is refused', () => {
    const { r, clock, join } = registry({ sessionTtlMs: 60_000, resumeMaxAgeMs: 3_600_000 });
    join();
    const gone = join(true);
    r.disconnect(gone.link);
    clock.advance(60_000);
    r.expire();
    expect(r.get(gone.id)).toBeUndefined();
    const back = new MemLink();
    const res = r.hello(back, resume(gone.credentials));
    expect(res.record).toMatchObject({ id: gone.id, index: 1, link: back, backend: null });
    expect(r.sessionOf(res.credentials)).toBe(gone.id);
    // The token it held, left to age out: refused, by hello and at the handshake alike.
    r.disconnect(back);
    clock.advance(3_600_000 - 60_000 + 1000);
    expect(r.sessionOf(gone.credentials)).toBeNull();
    expect(reason(() => r.hello(new MemLink(), resume(gone.credentials)))).toBe('bad_token');
    // The renewed one (issued at the resume) still works.
    expect(r.hello(new MemLink(), resume(res.credentials)).record.id).toBe(gone.id);
  });

  it('holds at most maxSessions: the longest-disconnected goes first; with every one live, new ones are refused', async () => {
    const { r, join, metrics } = registry({ maxSessions: 3 });
    const a = join();
    const b = join();
    const c = join();
    r.disconnect(b.link);
    r.disconnect(a.link); // b has been offline longest
    const d = join();
    expect(r.get(b.id)).toBeUndefined();
    expect([a, c, d].every((x) => r.get(x.id))).toBe(true);
    join(); // evicts a
    expect(r.get(a.id)).toBeUndefined();
    expect(reason(() => join())).toBe('server_full');
    expect(r.size).toBe(3);
    expect(await metricValue(metrics, 'aegis_sessions_ended_total', { why: 'evicted' })).toBe(2);
    // A recreated session counts against the cap like a new one.
    expect(reason(() => r.hello(new MemLink(), resume(a.credentials)))).toBe('server_full');
    expect(r.get(a.id)).toBeUndefined();
  });

  it('many hellos on one link leave one identity: no ready ghosts', () => {
    const { r } = registry();
    const link = new MemLink();
    const { record } = r.hello(link, fresh);
    r.ready(record.id, { backend: 'cpu' });
    for (let i = 0; i < 1000; i++) expect(reason(() => r.hello(link, fresh))).toBe('already_identified');
    expect(r.size).toBe(1);
    r.disconnect(link);
    expect(r.counts()).toEqual({ connected: 0, ready: 0, byBackend: {} });
  });
});

describe('ClientRegistry: sessions across registries sharing a key (a coordinator failover)', () => {
  it('a registry that never saw the session accepts its token, restores its shard index, and renews the token', () => {
    const clock = new ManualClock(1_700_000_000_000);
    const old = registry({}, clock);
    const sessions = [old.join(), old.join(), old.join()];
    const s = sessions[2];
    // The new coordinator: same key, nothing of the old one's state; its new sessions start above the old term.
    const next = registry({ firstIndex: 1000 }, clock);
    expect(next.r.get(s.id)).toBeUndefined();
    expect(next.r.sessionOf(s.credentials)).toBe(s.id);
    const link = new MemLink();
    const res = next.r.hello(link, resume(s.credentials));
    expect(res.record).toMatchObject({ id: s.id, index: 2, link });
    expect(res.credentials.sessionId).toBe(s.id);
    expect(verifyResumeToken({ key: KEY }, s.id, res.credentials.resumeToken, clock.now())?.index).toBe(2);
    expect(next.r.counts().connected).toBe(1);
    // Held now: another link with the same credentials is refused while this one lives.
    expect(reason(() => next.r.hello(new MemLink(), resume(s.credentials)))).toBe('session_taken');
    expect(reason(() => next.r.hello(new MemLink(), resume(res.credentials)))).toBe('session_taken');
    // New sessions of the new term take indices from firstIndex on.
    expect(next.r.get(next.join().id)?.index).toBe(1000);
  });

  it('new sessions never take an index a recreated session holds', () => {
    const clock = new ManualClock(1_700_000_000_000);
    const old = registry({ firstIndex: 40 }, clock);
    const s = old.join();
    const next = registry({}, clock);
    const a = next.join();
    expect(next.r.get(a.id)?.index).toBe(0);
    expect(next.r.hello(new MemLink(), resume(s.credentials)).record.index).toBe(40);
    const b = next.join();
    expect(next.r.get(b.id)?.index).toBe(41);
  });

  it('a registry with another key refuses the token (bad_token, null at the handshake); a previous key still resumes', () => {
    const clock = new ManualClock(1_700_000_000_000);
    const old = registry({}, clock);
    const s = old.join();
    const stranger = registry({ resumeKey: newResumeKey() }, clock);
    expect(stranger.r.sessionOf(s.credentials)).toBeNull();
    expect(reason(() => stranger.r.hello(new MemLink(), resume(s.credentials)))).toBe('bad_token');
    expect(stranger.r.size).toBe(0);
    // Rotated: the old key verifies only, the new one signs the renewed token.
    const newKey = newResumeKey();
    const rotated = registry({ resumeKey: newKey, previousResumeKey: KEY }, clock);
    const res = rotated.r.hello(new MemLink(), resume(s.credentials));
    expect(res.record.id).toBe(s.id);
    expect(verifyResumeToken({ key: newKey }, s.id, res.credentials.resumeToken, clock.now())).not.toBeNull();
    expect(verifyResumeToken({ key: KEY }, s.id, res.credentials.resumeToken, clock.now())).toBeNull();
  });

  it('sessionOf needs no record and changes nothing; forged, oversized and non-credential input is null', () => {
    const { r, join, clock } = registry();
    const a = join();
    const other = registry({}, clock).join();
    expect(r.sessionOf(a.credentials)).toBe(a.id);
    expect(r.sessionOf(other.credentials)).toBe(other.id);
    expect(r.size).toBe(1);
    const forged = [
      null,
      'x',
      { sessionId: a.id },
      { sessionId: a.id, resumeToken: 'A'.repeat(55) },
      { sessionId: a.id, resumeToken: other.credentials.resumeToken },
      { sessionId: a.id, resumeToken: a.credentials.resumeToken + 'A' },
      { sessionId: a.id, resumeToken: 'A'.repeat(100_000) },
      { sessionId: 'A'.repeat(100_000), resumeToken: a.credentials.resumeToken },
    ];
    for (const f of forged) expect(r.sessionOf(f)).toBeNull();
  });

  it('a held session whose authentic token names another shard is refused (a key holder bug), and kept', () => {
    const { r, join, clock } = registry();
    join();
    const a = join();
    r.disconnect(a.link);
    const wrongShard = { sessionId: a.id, resumeToken: issueResumeToken(KEY, a.id, 0, clock.now()) };
    expect(reason(() => r.hello(new MemLink(), resume(wrongShard)))).toBe('bad_token');
    expect(r.get(a.id)?.index).toBe(1);
    expect(r.hello(new MemLink(), resume(a.credentials)).record.index).toBe(1);
  });
});

describe('ClientRegistry: links and counts', () => {
  it('counts connected, ready and ready-by-backend as clients come, get ready, drop and return', async () => {
    const { r, metrics } = registry();
    const a = new MemLink();
    const b = new MemLink();
    const ca = r.hello(a, fresh).credentials;
    const cb = r.hello(b, fresh).credentials;
    expect(r.counts()).toEqual({ connected: 2, ready: 0, byBackend: {} });
    r.ready(ca.sessionId, { backend: 'webgpu' });
    r.ready(cb.sessionId, { backend: 'wasm' });
    expect(r.counts()).toEqual({ connected: 2, ready: 2, byBackend: { webgpu: 1, wasm: 1 } });
    expect(await metricValue(metrics, 'aegis_clients_ready', { backend: 'wasm' })).toBe(1);

    expect(r.disconnect(a)).not.toBeNull();
    expect(r.counts()).toEqual({ connected: 1, ready: 1, byBackend: { wasm: 1 } });
    expect(await metricValue(metrics, 'aegis_clients_connected')).toBe(1);
    expect(await metricValue(metrics, 'aegis_clients_ready', { backend: 'webgpu' })).toBe(0);

    // A returning client is ready again with what it said before, on the same data shard.
    const rec = r.hello(new MemLink(), resume(ca)).record;
    expect(rec.index).toBe(0);
    expect(r.counts()).toEqual({ connected: 2, ready: 2, byBackend: { webgpu: 1, wasm: 1 } });
  });

  it('lists ready clients in order of creation, whatever order they became ready in', () => {
    const { r, join } = registry();
    const [x, , z] = [join(), join(), join()];
    r.ready(z.id, { backend: 'cpu' });
    r.ready(x.id, { backend: 'cpu' });
    r.disconnect(x.link);
    r.hello(new MemLink(), resume(x.credentials));
    expect(r.readyClients().map((c) => c.id)).toEqual([x.id, z.id]);
    expect(r.readyCount).toBe(2);
  });

  it('validates hello and ready, and refuses ready before hello or while offline', () => {
    const { r } = registry();
    expect(reason(() => r.hello(new MemLink(), { ...fresh, protocolVersion: 0 }))).toBe('protocol_version');
    expect(reason(() => r.hello(new MemLink(), { ...fresh, resume: { sessionId: 'short' } }))).toBe(
      'malformed',
    );
    expect(reason(() => r.ready('some-session-id-000', { backend: 'cpu' }))).toBe('unknown_client');
    expect(reason(() => r.ready(null, { backend: 'cpu' }))).toBe('unknown_client');
    const l = new MemLink();
    const id = r.hello(l, fresh).record.id;
    // An example count in ready is refused: it would tell the server each client's data size.
    expect(reason(() => r.ready(id, { backend: 'cpu', numExamples: 10 }))).toBe('malformed');
    expect(reason(() => r.ready(id, { backend: 'quantum' }))).toBe('malformed');
    r.disconnect(l);
    expect(reason(() => r.ready(id, { backend: 'cpu' }))).toBe('unknown_client');
    expect(r.counts()).toEqual({ connected: 0, ready: 0, byBackend: {} });
  });

  it('sends only to online clients; a link that throws is reported and the others still get the message', () => {
    const errors: unknown[] = [];
    const { r } = registry({ onSendError: (e) => errors.push(e) });
    const ok = new MemLink();
    const bad: ClientLink = {
      send: () => {
        throw new Error('socket gone');
      },
    };
    const off = new MemLink();
    const badId = r.hello(bad, fresh).record.id;
    const okId = r.hello(ok, fresh).record.id;
    const offId = r.hello(off, fresh).record.id;
    r.disconnect(off);
    r.broadcast('round:end', {} as never);
    expect(ok.sent.map((s) => s.event)).toEqual(['round:end']);
    expect(off.sent).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(r.send(r.get(offId)!, 'round:end', {} as never)).toBe(false);
    expect(r.send(r.get(badId)!, 'round:end', {} as never)).toBe(false);
    expect(r.send(r.get(okId)!, 'round:end', {} as never)).toBe(true);
  });

  it('property: the kept counts always equal a walk over the records, under random hellos, resumes, readies, drops and expiry', () => {
    const rng = createRng(7);
    const { r, clock } = registry({ sessionTtlMs: 500, maxSessions: 25 });
    const known: { creds: SessionCredentials; link: MemLink | null }[] = [];
    for (let step = 0; step < 3000; step++) {
      const op = rng.next();
      const k = known.length ? known[rng.int(known.length)] : null;
      try {
        if (op < 0.25 || !k) {
          const link = new MemLink();
          known.push({ creds: r.hello(link, fresh).credentials, link });
        } else if (op < 0.45) {
          const link = new MemLink();
          r.hello(link, resume(k.creds));
          k.link = link;
        } else if (op < 0.7) {
          r.ready(k.creds.sessionId, { backend: BACKENDS[rng.int(BACKENDS.length)] });
        } else if (op < 0.9) {
          if (k.link) r.disconnect(k.link);
          k.link = null;
        } else {
          clock.advance(rng.int(200));
          r.expire();
        }
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
      }
      const all = known.map((x) => r.get(x.creds.sessionId)).filter((c) => c !== undefined);
      const ready = all.filter((c) => c.link && c.backend);
      const byBackend: Record<string, number> = {};
      for (const c of ready) byBackend[c.backend!] = (byBackend[c.backend!] ?? 0) + 1;
      expect(r.size).toBe(all.length);
      expect(r.size).toBeLessThanOrEqual(25);
      expect(r.counts()).toEqual({
        connected: all.filter((c) => c.link).length,
        ready: ready.length,
        byBackend,
      });
      expect(r.readyClients()).toEqual([...ready].sort((a, b) => a.index - b.index));
    }
  });
});
