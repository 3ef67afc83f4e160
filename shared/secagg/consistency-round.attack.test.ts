import { randomBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { SecAggClientSession, type ClientAttestation } from './client-session.ts';
import { attest, generateSigningKeyPair } from './consistency.ts';
import { harary } from './graph.ts';
import { SecAggServerSession } from './server-session.ts';
import type { SignedBy } from './types.ts';
import { reason } from './test-support.ts';

/**
 * Attack on R3: survivor-set signatures are bound to the server-chosen tag and the set only, not to the
 * attempt's keys, and nothing stops a server from giving two attempts the same tag. Signatures collected in
 * one attempt (where everyone was told one set) then vouch for that set in a later attempt, where the
 * neighbours were told, and signed, something else: the consistency check no longer says that t neighbours
 * saw what this client saw.
 */
const L = 9;
const site = generateSigningKeyPair();

function attested(): ClientAttestation {
  const identity = generateSigningKeyPair();
  return { sitePublicKey: site.publicKey, identity, signature: attest(site.secretKey, identity.publicKey) };
}

/** One attempt of a complete-graph R3 round with the given identities and tag, up to every masked input. */
async function attemptUpToMasked(tag: string, ids: ClientAttestation[], t: number) {
  const n = ids.length;
  const server = new SecAggServerSession({
    tag,
    n,
    neighbours: harary(n, n - 1).map((l) => l.map((v) => v + 1)),
    t,
    vectorLength: L,
    minSurvivors: t,
    consistency: { sitePublicKey: site.publicKey },
  });
  const clients = ids.map(
    (attestation, i) =>
      new SecAggClientSession({ tag, index: i + 1, n, t, vectorLength: L, consistency: true, attestation }),
  );
  const all = clients.map((_, i) => i + 1);
  for (const u of all) server.receiveKeys(u, clients[u - 1].advertise());
  const rosters = server.closeKeys();
  for (const u of all) server.receiveShares(u, clients[u - 1].receiveRoster(rosters.get(u)));
  const inboxes = server.closeShares();
  for (const u of all) {
    clients[u - 1].receiveInbox(inboxes.get(u));
    server.receiveMasked(u, await clients[u - 1].mask(Uint32Array.from(randomBytes(L))));
  }
  return clients;
}

describe('attack: survivor signatures replayed from an earlier attempt with the same tag', () => {
  it('a client reveals in attempt 2 on signatures its neighbours made in attempt 1', async () => {
    const n = 5;
    const t = 3;
    const ids = Array.from({ length: n }, attested);
    const tag = 'aegisfl/run/7.1'; // the server sends the same tag again for the retry
    const all = [1, 2, 3, 4, 5];

    // Attempt 1: every client is told U3 = all and signs it; the server keeps the signatures and aborts.
    const first = await attemptUpToMasked(tag, ids, t);
    const old: SignedBy[] = first.map((c, i) => ({
      index: i + 1,
      sig: c.receiveSurvivors({ survivors: all }).sig,
    }));

    // Attempt 2, same tag, fresh sessions: clients 2..5 are told client 1 dropped ([2, 3, 4, 5]) and sign
    // that; client 1 is told everybody survived.
    const second = await attemptUpToMasked(tag, ids, t);
    const fresh: SignedBy[] = [2, 3, 4, 5].map((u) => ({
      index: u,
      sig: second[u - 1].receiveSurvivors({ survivors: [2, 3, 4, 5] }).sig,
    }));
    expect(fresh).toHaveLength(4);
    second[0].receiveSurvivors({ survivors: all });

    // No neighbour of client 1 signed `all` in this attempt; the server hands it attempt 1's signatures.
    const got = reason(() =>
      second[0].receiveUnmask({
        survivors: all,
        dropped: [],
        signatures: old.filter((s) => s.index !== 1),
      }),
    );
    expect(got).toBe('inconsistent_view');
  });
});
