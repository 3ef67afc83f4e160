import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MODELS, numParams } from '../shared/model/spec.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { ScriptedClient } from './scripted-client.ts';
import {
  cohortOf,
  flags,
  startServerProcess,
  TINY_SERVER,
  waitFor,
  type ServerProcess,
} from './server-process.ts';

/**
 * Never forgets: the server process with --state-dir, secure aggregation and DP, driven by protocol
 * clients. Round 1 completes; round 2 is held in one phase (a test-only hook), the process is killed with
 * SIGKILL there (or stopped with SIGTERM), and a new process on the same directory must resume from the
 * last completed round: same round counter, same model, the privacy ledger never below what it was,
 * and a new round completes.
 */
const P = numParams(MODELS.tiny);
const SERVER = {
  ...TINY_SERVER,
  ...cohortOf(3),
  'min-updates': 2,
  'round-pause-ms': 200,
  'round-deadline-ms': 20_000,
  'secagg-keys-deadline-ms': 20_000,
  'secagg-shares-deadline-ms': 20_000,
  'secagg-unmask-deadline-ms': 20_000,
  'dp-noise': 1,
  'dp-epsilon': 1000,
  'max-message-bytes': P * 4 + 64 * 1024,
  'max-examples-per-client': 16,
};

type Phase = 'keys' | 'shares' | 'masked' | 'unmask' | 'evaluation';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const servers: ServerProcess[] = [];
afterEach((ctx) => {
  // A failed test shows what the servers said.
  if (ctx.task.result?.state === 'fail') for (const s of servers) console.log(s.output());
  servers.length = 0;
});

async function start(dir: string, hold?: Phase): Promise<ServerProcess> {
  const env: Record<string, string> = hold
    ? { AEGISFL_TEST_HOLD_PHASE: hold, AEGISFL_TEST_HOLD_ROUND: '2' }
    : {};
  const srv = await startServerProcess(flags({ ...SERVER, 'state-dir': dir }), 60_000, env);
  cleanup.push(() => srv.stop());
  servers.push(srv);
  return srv;
}

function clients(url: string, tag: string): ScriptedClient[] {
  const cs = [0, 1, 2].map(
    (i) => new ScriptedClient(url, `${tag}-${i}`, new Float32Array(P).fill(0.001 * (i + 1)), 8),
  );
  cleanup.push(() => cs.forEach((c) => c.close()));
  return cs;
}

const status = async (url: string): Promise<ServerStatus> =>
  (await fetch(url + '/api/status').then((r) => r.json())) as ServerStatus;
const weights = async (url: string): Promise<Float32Array> =>
  new Float32Array(await (await fetch(url + '/api/model/weights')).arrayBuffer());
const epsilon = (s: ServerStatus): number => (s.privacy.enabled ? s.privacy.epsilon : NaN);

/** Ledger entries on disk: what survives a SIGKILL. */
function ledger(dir: string): { round: number; attempt: number; status: string }[] {
  try {
    return JSON.parse(readFileSync(join(dir, 'ledger'), 'utf8')).entries;
  } catch {
    return [];
  }
}

async function roundsDone(url: string, n: number): Promise<ServerStatus> {
  return waitFor(
    async () => {
      const s = await status(url);
      return s.history.length >= n ? s : null;
    },
    90_000,
    `${n} completed rounds`,
    200,
  );
}

/** Runs round 1, holds round 2 in `phase`; returns what the run looked like there. */
async function holdInRound2(dir: string, phase: Phase) {
  const srv = await start(dir, phase);
  clients(srv.url, 'before');
  await roundsDone(srv.url, 1);
  await waitFor(
    async () => srv.output().includes(`test hold: phase ${phase} held open`),
    60_000,
    `the hold in phase ${phase}`,
    100,
  );
  const s = await status(srv.url);
  expect(s).toMatchObject({ round: 2 });
  expect(s.history).toHaveLength(1);
  const runId = /new run ([0-9a-f]{16})/.exec(srv.output())![1];
  return { srv, status: s, weights: await weights(srv.url), runId };
}

/** A new process on `dir`: resumed at round 2 with the model and at least the ε it had; round 2 completes. */
async function resumeAndFinish(
  dir: string,
  before: { status: ServerStatus; weights: Float32Array; runId: string },
) {
  const srv = await start(dir);
  const line = /resumed run ([0-9a-f]{16}) at round (\d+), ε spent ([\d.]+)/.exec(srv.output());
  expect(line, srv.output()).not.toBeNull();
  expect(line![1]).toBe(before.runId);
  expect(line![2]).toBe('2');
  const s = await status(srv.url);
  expect(s.round).toBe(2);
  expect(s.history.map((h) => h.round)).toEqual([1]);
  expect(s.history[0]).toEqual(before.status.history[0]);
  expect(await weights(srv.url)).toEqual(before.weights);
  expect(epsilon(s)).toBeGreaterThanOrEqual(epsilon(before.status)); // never less
  expect(Number(line![3])).toBeCloseTo(epsilon(s), 3);
  clients(srv.url, 'after');
  const done = await roundsDone(srv.url, 2);
  expect(done.history[1]).toMatchObject({ round: 2, secagg: true });
  expect(epsilon(done)).toBeGreaterThan(epsilon(s));
  return { srv, resumed: s };
}

const killed = (srv: ServerProcess, signal: NodeJS.Signals): Promise<number | null> =>
  new Promise((resolve) => {
    srv.child.once('exit', (code) => resolve(code));
    srv.child.kill(signal);
  });

describe('restart: kill -9 in each phase, then resume', { timeout: 240_000 }, () => {
  // Before unmasking, round 2 has charged nothing; from the unmask phase on, its charge is on disk.
  const cases: [Phase, boolean][] = [
    ['keys', false],
    ['shares', false],
    ['masked', false],
    ['unmask', true],
    ['evaluation', true],
  ];
  it.each(cases)('SIGKILL in phase %s (round 2 charged before the kill: %s)', async (phase, charged) => {
    const dir = mkdtempSync(join(tmpdir(), `aegis-restart-${phase}-`));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const before = await holdInRound2(dir, phase);
    const onDisk = ledger(dir).filter((e) => e.status === 'charged');
    expect(onDisk.map((e) => e.round)).toEqual(charged ? [1, 2] : [1]);
    await killed(before.srv, 'SIGKILL');
    const { resumed } = await resumeAndFinish(dir, before);
    // A charge written before the crash is kept: over-counted (its round is redone), never dropped.
    // (In the evaluation phase the in-memory ledger had charged round 2 as well: compare with round 1's.)
    const afterRound1 = before.status.history[0].epsilon!;
    if (charged) expect(epsilon(resumed)).toBeGreaterThan(afterRound1);
    else expect(epsilon(resumed)).toBe(afterRound1);
  });
});

describe('restart: SIGTERM', { timeout: 240_000 }, () => {
  it('abandons the attempt in progress, saves, exits 0; the next start resumes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aegis-restart-term-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const before = await holdInRound2(dir, 'masked');
    expect(await killed(before.srv, 'SIGTERM')).toBe(0);
    expect(before.srv.output()).toMatch(/round 2\.1 abandoned: shutting down/);
    expect(before.srv.output()).toMatch(/state saved; bye/);
    await resumeAndFinish(dir, before);
  });
});
