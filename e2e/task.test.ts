import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { AegisClient } from '../client/client.ts';
import { nodeTrainer } from '../client/node-trainer.ts';
import { ProtocolError } from '../shared/base/errors.ts';
import { blobs } from '../shared/data/blobs.ts';
import { checkTask, type Task } from '../shared/model/task.ts';
import type { RoundSummary } from '../shared/protocol/messages.ts';
import { metric } from './metrics.ts';
import {
  cohortOf,
  flags,
  startServerProcess,
  waitFor,
  waitForPhase,
  type ServerProcess,
} from './server-process.ts';

/**
 * A second task end to end: the real server process with --task (the 8-feature, 4-class blobs classifier)
 * and the operator's held-out set (--task-eval), and Node clients running the real client code, each with
 * its own examples from its "page" (join's data option), pinned to the task, under secure aggregation.
 */
const TASK_FILE = 'demo/tasks/blobs.task.json';
const EVAL_FILE = 'demo/tasks/blobs.eval.json';
const ROUNDS = 3;
const task = JSON.parse(readFileSync(TASK_FILE, 'utf8')) as Task;
let srv: ServerProcess;
const clients: AegisClient[] = [];

beforeAll(async () => {
  await tf.setBackend('cpu');
  srv = await startServerProcess(
    flags({
      task: TASK_FILE,
      'task-eval': EVAL_FILE,
      ...cohortOf(3),
      rounds: ROUNDS,
      'min-updates': 3,
      'round-pause-ms': 200,
      'round-deadline-ms': 60000,
    }),
  );
});

afterAll(async () => {
  for (const c of clients) c.stop();
  await srv?.stop();
});

const client = (o: { task: Task; seed: number }): AegisClient => {
  const c = new AegisClient({
    serverUrl: srv.url,
    source: 'node',
    spawnTrainer: nodeTrainer,
    backends: ['cpu'],
    task: o.task,
    data: async () => blobs({ seed: o.seed, count: 48 }),
  });
  clients.push(c);
  return c;
};

describe('a task of its own (--task): blobs, 8 features, 4 classes', () => {
  it('Node clients train it from their own data with secure aggregation; held-out accuracy rises; a client pinned to another task refuses the server', async () => {
    expect(srv.output()).toContain(`task: blobs (212 parameters, hash ${checkTask(task).hash})`);
    // Pinned to the same topology with another plan: a different task, refused at the welcome.
    const other = client({ task: { ...task, plan: { ...task.plan, learningRate: 0.5 } }, seed: 99 });
    const refused = new Promise<Error>((r) => other.on('error', r));
    other.start();
    const err = await refused;
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).reason).toBe('task_mismatch');
    expect(other.state).toBe('failed');

    const ends: RoundSummary[] = [];
    for (let i = 0; i < 3; i++) {
      const c = client({ task, seed: 100 + i });
      c.on('roundEnd', (r) => ends.push(r));
      c.start();
    }
    const status = await waitForPhase(srv.url, 'done', 150_000);
    console.log(
      `e2e task accuracy: initial ${status.initial!.accuracy} -> ${status.history.map((h) => h.accuracy).join(' -> ')}`,
    );
    expect(status.model).toEqual({ name: 'blobs', numParams: 212 });
    expect(status.history).toHaveLength(ROUNDS);
    expect(status.history.every((h) => h.secagg && h.clients === 3)).toBe(true);
    expect(srv.output()).toContain(`300 held out (${EVAL_FILE})`); // the operator's held-out set
    const final = status.history.at(-1)!;
    expect(final.accuracy).toBeGreaterThan(status.initial!.accuracy + 0.2);
    expect(final.accuracy).toBeGreaterThan(0.6);
    expect(final.loss).toBeLessThan(status.initial!.loss);
    await waitFor(async () => ends.filter((e) => e.round === ROUNDS).length === 3, 10_000, 'round ends');

    const m = await fetch(srv.url + '/metrics').then((r) => r.text());
    expect(metric(m, 'aegis_rounds_completed_total')).toBe(ROUNDS);
    expect(metric(m, 'aegis_secagg_rounds_total', { outcome: 'ok' })).toBe(ROUNDS);
  }, 240_000);
});
