import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { mintJoinToken, parseTokenKey } from '../server/join-token.ts';
import { afterEach, describe, expect, it } from 'vitest';
import { asBytes } from '../shared/base/bytes.ts';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { PROTOCOL_VERSION, type RoundStart, type Welcome } from '../shared/protocol/messages.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { startCluster, waitForOutput, type Cluster } from './cluster-lib.ts';
import { metric } from './metrics.ts';
import { meanStepError, ScriptedClient } from './scripted-client.ts';
import { cohortOf, TINY_SERVER, waitFor } from './server-process.ts';
import { startSwarm, type Swarm } from './swarm-lib.ts';

/**
 * The scale-out mode for real: redis-server, coordinators and gateways as separate processes (as an
 * operator runs them), protocol clients and chromium tabs spread over the gateways. Rounds complete with
 * the exact sum of the survivors; a gateway killed mid-round costs only its own clients; a coordinator
 * killed mid-round is replaced by the standby, which resumes from the last completed round with the
 * privacy ledger intact.
 */
const P = numParams(MODELS.tiny);
const SERVER_LR = 0.5;
const EXAMPLES = 8;
const BASE = {
  ...TINY_SERVER,
  'server-lr': SERVER_LR,
  'round-pause-ms': 200,
  'round-deadline-ms': 30_000,
  'secagg-keys-deadline-ms': 30_000,
  'secagg-shares-deadline-ms': 30_000,
  'secagg-unmask-deadline-ms': 30_000,
  'max-examples-per-client': 16,
  'max-message-bytes': P * 4 + 64 * 1024,
};

const cleanup: (() => unknown)[] = [];
let cluster: Cluster | null = null;
afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail' && cluster) console.log(cluster.output());
  for (const f of cleanup.splice(0).reverse()) await f();
  await cluster?.stop();
  cluster = null;
});

const json = async <T>(url: string): Promise<T> => (await fetch(url).then((r) => r.json())) as T;
const status = (url: string): Promise<ServerStatus> => json(url + '/api/status');
const weightsOf = (s: RoundStart): Float32Array => new Float32Array(asBytes(s.weights)!.slice().buffer);
const modelAt = async (url: string): Promise<Float32Array> =>
  new Float32Array(await (await fetch(url + '/api/model/weights')).arrayBuffer());
const epsilon = (s: ServerStatus): number => (s.privacy.enabled ? s.privacy.epsilon : NaN);

function scripted(urls: string[], tag: string, n: number, offset = 0): ScriptedClient[] {
  const cs = Array.from(
    { length: n },
    (_, i) =>
      new ScriptedClient(
        urls[i % urls.length],
        `${tag}-${i}`,
        new Float32Array(P).map((_, j) => 1e-3 * (((i + offset + 1) * (j + 3)) % 7) - 3e-3),
        EXAMPLES + i + offset,
      ),
  );
  cleanup.push(() => cs.forEach((c) => c.close()));
  return cs;
}

const roundsDone = (url: string, n: number, timeoutMs = 90_000): Promise<ServerStatus> =>
  waitFor(
    async () => {
      const s = await status(url).catch(() => null);
      return s?.history && s.history.length >= n ? s : null;
    },
    timeoutMs,
    `${n} completed rounds`,
    200,
  );

/** w1 - w0 is SERVER_LR times the exact example-weighted mean of exactly these clients' updates. */
function expectExactSum(w0: Float32Array, w1: Float32Array, inputs: ScriptedClient[]): void {
  const { err, moved } = meanStepError(w0, w1, inputs, SERVER_LR);
  expect(moved).toBeGreaterThan(1e-4);
  expect(err).toBeLessThan(1e-6);
}

describe('scale-out: one coordinator, two gateways, Redis', { timeout: 240_000 }, () => {
  it('browsers and protocol clients on both gateways: secure rounds complete with every client', async () => {
    if (!existsSync('dist/demo/index.html'))
      throw new Error('dist/ is missing: run "npm run build" first (npm test does)');
    cluster = await startCluster({
      gateways: 2,
      flags: { ...BASE, ...cohortOf(6), 'min-updates': 4, rounds: 2, epochs: 1, 'batch-size': 16 },
    });
    const urls = cluster.gateways.map((g) => g.url);
    const cs = scripted(urls, 'p', 4);
    const swarm: Swarm = await startSwarm(urls, 2, { backends: 'wasm' });
    cleanup.push(() => swarm.close());
    const done = await roundsDone(cluster.coordinators[0].url, 2, 180_000);
    expect(done.history.map((h) => [h.round, h.clients, h.secagg])).toEqual([
      [1, 6, true],
      [2, 6, true],
    ]);
    // The example counts ride inside the masked vectors: one mask that did not cancel would garble them.
    // 4 protocol clients (8 + 9 + 10 + 11) and 2 pages with 16 synthetic examples each.
    const examples = cs.reduce((a, c) => a + c.examples, 0) + 2 * TINY_SERVER['examples-per-client'];
    expect(done.history.map((h) => h.examples)).toEqual([examples, examples]);
    for (const st of await swarm.states()) {
      expect(st.roundsTrained).toBe(2);
      expect(st.acks.filter((a) => a.ok).map((a) => a.round)).toEqual([1, 2]);
    }
    for (const c of cs) expect(c.sent.filter((s) => s.event === 'update' && s.ack?.ok)).toHaveLength(2);
    // Each gateway served its own clients, and its pages show the coordinator's status (pushed over Redis).
    for (const g of cluster.gateways) {
      const m = await (await fetch(g.url + '/metrics')).text();
      // 2 protocol clients, the page's participant and the page's status observer.
      expect(metric(m, 'aegis_clients_connected')).toBe(4);
      await roundsDone(g.url, 2, 5000);
    }
    const page = swarm.pages[0];
    await page.waitForFunction(() => /2/.test(document.querySelector('#round')?.textContent ?? ''), null, {
      timeout: 30_000,
    });
  });

  it('a gateway killed mid-round: the round completes with the exact sum of the other gateway’s clients', async () => {
    cluster = await startCluster({
      gateways: 2,
      flags: { ...BASE, ...cohortOf(8), 'min-updates': 3, rounds: 2 },
    });
    const [a, b] = cluster.gateways;
    // 6 clients on gateway a, 2 (a quarter of the cohort) on gateway b. With 8 (a complete graph, t = 5),
    // every survivor's secret keeps 7 - 2 = 5 live holders when b's two are gone.
    const onA = scripted([a.url], 'a', 6);
    const onB = scripted([b.url], 'b', 2, 10);
    const coord = cluster.coordinators[0].url;
    await roundsDone(coord, 1);
    // Round 2: b's clients advertise keys and send shares, then hold their masked inputs; b dies there.
    for (const c of onB) c.silentIf = (phase, m) => phase === 'masked' && m.round === 2;
    await waitFor(
      async () => {
        const s = await status(coord);
        const sent = onA.filter((c) =>
          c.sent.some((x) => x.event === 'update' && x.payload.round === 2 && x.ack?.ok),
        );
        return s.round === 2 && s.secagg.phase === 'masked' && sent.length === 6;
      },
      60_000,
      'round 2 in the masked phase with gateway a’s inputs in',
      100,
    );
    b.child.kill('SIGKILL');
    const done = await roundsDone(coord, 2, 60_000);
    const h = done.history[1];
    expect(h.clients).toBe(6);
    expect(h.examples).toBe(onA.reduce((s, c) => s + c.examples, 0));
    await waitForOutput(
      cluster.coordinators[0],
      /gateway \S+ stopped answering; its 2 connection\(s\) are closed/,
      1000,
    );
    const w0 = weightsOf(onA[0].starts.find((s) => s.round === 2)!);
    expectExactSum(w0, await modelAt(coord), onA);
  });

  it('the coordinator killed mid-round: the standby resumes from the last round, ledger intact, and finishes', async () => {
    cluster = await startCluster({
      gateways: 2,
      coordinators: 2,
      flags: { ...BASE, ...cohortOf(3), 'min-updates': 2, rounds: 2, 'dp-noise': 1, 'dp-epsilon': 1000 },
      leaderEnv: { AEGISFL_TEST_HOLD_PHASE: 'masked', AEGISFL_TEST_HOLD_ROUND: '2' },
    });
    const [leader, standby] = cluster.coordinators;
    const urls = cluster.gateways.map((g) => g.url);
    scripted(urls, 'before', 3);
    await roundsDone(leader.url, 1);
    await waitForOutput(leader, /test hold: phase masked held open/, 60_000);
    const before = await status(leader.url);
    expect(before.round).toBe(2);
    const w1 = await modelAt(leader.url);
    const runId = /new run ([0-9a-f]{16})/.exec(leader.output())![1];
    // The standby answers /health but serves no round state.
    expect((await fetch(standby.url + '/health')).status).toBe(200);
    expect((await fetch(standby.url + '/api/status')).status).toBe(503);
    leader.child.kill('SIGKILL');
    await waitForOutput(standby, /leading \(fence 2\)/, 30_000);
    const line = await waitForOutput(
      standby,
      /resumed run ([0-9a-f]{16}) at round (\d+), ε spent ([\d.]+)/,
      60_000,
    );
    expect(line[1]).toBe(runId);
    expect(line[2]).toBe('2');
    await waitForOutput(standby, /coordinating /, 60_000);
    const resumed = await status(standby.url);
    expect(resumed.history).toEqual(before.history);
    expect(epsilon(resumed)).toBe(before.history[0].epsilon);
    expect(await modelAt(standby.url)).toEqual(w1);
    // The gateways dropped their clients when the coordinator changed; new ones join and round 2 completes.
    for (const g of cluster.gateways) await waitForOutput(g, /coordinator changed \(fence 1 -> 2\)/, 10_000);
    scripted(urls, 'after', 3);
    const done = await roundsDone(standby.url, 2);
    expect(done.history[1]).toMatchObject({ round: 2, secagg: true, clients: 3 });
    expect(epsilon(done)).toBeGreaterThan(epsilon(resumed));
    // What the gateways serve is the new leader's.
    await roundsDone(cluster.gateways[0].url, 2, 5000);
  });

  it('browsers ride through a coordinator failover: they reconnect with their resume tokens and finish the round', async () => {
    if (!existsSync('dist/demo/index.html'))
      throw new Error('dist/ is missing: run "npm run build" first (npm test does)');
    cluster = await startCluster({
      gateways: 2,
      coordinators: 2,
      flags: { ...BASE, ...cohortOf(3), 'min-updates': 2, rounds: 2, epochs: 1, 'batch-size': 16 },
      leaderEnv: { AEGISFL_TEST_HOLD_PHASE: 'masked', AEGISFL_TEST_HOLD_ROUND: '2' },
    });
    const [leader, standby] = cluster.coordinators;
    const swarm = await startSwarm(
      cluster.gateways.map((g) => g.url),
      3,
      { backends: 'wasm' },
    );
    cleanup.push(() => swarm.close());
    await roundsDone(leader.url, 1, 120_000);
    await waitForOutput(leader, /test hold: phase masked held open/, 120_000);
    const before = await sessionIds(swarm);
    expect(new Set(before).size).toBe(3);
    leader.child.kill('SIGKILL');
    await waitForOutput(standby, /leading \(fence 2\)/, 30_000);
    // Nobody is restarted: the pages' sockets drop when the gateways see the new fence, reconnect on
    // their own, resume their sessions from their tokens at the new leader, and round 2 runs again.
    const done = await roundsDone(standby.url, 2, 180_000);
    expect(done.history[1]).toMatchObject({ round: 2, clients: 3, secagg: true });
    expect(await sessionIds(swarm)).toEqual(before);
  });

  it('join tokens are single-use across gateways; a session resumes on another gateway with its token alone', async () => {
    const dir = mkdtempSync(joinPath(tmpdir(), 'aegis-cluster-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const keyFile = joinPath(dir, 'token.key');
    execFileSync(process.execPath, ['--import', 'tsx', 'server/token-cli.ts', '--new-key', keyFile]);
    const key = parseTokenKey(readFileSync(keyFile, 'utf8'));
    cluster = await startCluster({
      gateways: 2,
      flags: {
        ...BASE,
        ...cohortOf(3),
        'min-updates': 2,
        'join-token-key': keyFile,
        'allowed-origins': SITE,
      },
    });
    const [a, b] = cluster.gateways.map((g) => g.url);
    const { token } = mintJoinToken(key, { origin: SITE, ttlSeconds: 60 });
    const first = await join(a, { token });
    expect(first).toMatchObject({ sessionId: expect.any(String) });
    const w = first as Welcome;
    // The same token on the other gateway: spent already (the jti is recorded in Redis, not per process).
    expect(await join(b, { token })).toEqual({
      refused: { reason: 'bad_token', message: expect.stringMatching(/already used/) },
    });
    // The first connection ends; with no token, only the session's credentials, the client comes back on
    // the other gateway: let in (the gateway checks the HMAC) and the coordinator resumes the same session.
    opened[0].close();
    await waitFor(
      async () => (await status(cluster!.coordinators[0].url)).clients.connected === 0,
      10_000,
      'the disconnect',
      50,
    );
    const again = await join(
      b,
      { session: { sessionId: w.sessionId, resumeToken: w.resumeToken } },
      {
        sessionId: w.sessionId,
        resumeToken: w.resumeToken,
      },
    );
    expect(again).toMatchObject({ sessionId: w.sessionId, data: w.data });
    // A forged token for that session is refused at the handshake.
    const forged = w.resumeToken.slice(0, -4) + (w.resumeToken.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    expect(await join(a, { session: { sessionId: w.sessionId, resumeToken: forged } })).toMatchObject({
      refused: { reason: 'bad_token' },
    });
  });
});

/** Each page's session id, as its profile keeps it (localStorage). */
function sessionIds(swarm: Swarm): Promise<string[]> {
  return Promise.all(
    swarm.pages.map((p) =>
      p.evaluate(() => {
        for (let i = 0; i < localStorage.length; i++) {
          const k = localStorage.key(i)!;
          if (k.startsWith('aegisfl.identity.'))
            return (JSON.parse(localStorage.getItem(k)!) as { sessionId: string }).sessionId;
        }
        return '';
      }),
    ),
  );
}

const SITE = 'https://site.example';
const opened: Socket[] = [];

/** A socket from a page of SITE; resolves with its welcome or its refusal at the handshake. */
function join(
  url: string,
  auth: object,
  resume?: { sessionId: string; resumeToken: string },
): Promise<Welcome | { refused: { reason: string; message: string } }> {
  const s = io(url, { transports: ['websocket'], reconnection: false, extraHeaders: { origin: SITE }, auth });
  opened.push(s);
  cleanup.push(() => s.close());
  return new Promise((resolve, reject) => {
    s.on('connect', () => s.emit('hello', { protocolVersion: PROTOCOL_VERSION, source: 'node', resume }));
    s.on('welcome', resolve);
    s.on('rejected', (r) => resolve({ refused: { reason: r.reason, message: r.message } }));
    s.on('connect_error', (e: Error & { data?: { reason: string; message: string } }) =>
      e.data ? resolve({ refused: e.data }) : reject(e),
    );
  });
}
