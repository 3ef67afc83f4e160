import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { AegisClient } from '../client/client.ts';
import { nodeTrainer } from '../client/node-trainer.ts';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { metric } from './metrics.ts';
import { ScriptedClient } from './scripted-client.ts';
import {
  startServerProcess,
  waitForPhase,
  type ServerProcess,
  flags,
  cohortOf,
  TINY_SERVER,
} from './server-process.ts';

/**
 * A secure round that aborts and is retried: one client stays silent in the share phase of attempt 1,
 * too few remain, the attempt fails cleanly, and the real clients — already trained and waiting for key
 * shares that will never come — give up on attempt 1 and complete attempt 2.
 */
const P = numParams(MODELS.tiny);
let srv: ServerProcess;
const clients: AegisClient[] = [];
let silent: ScriptedClient;

beforeAll(async () => {
  await tf.setBackend('cpu');
  srv = await startServerProcess(
    flags({
      ...TINY_SERVER,
      ...cohortOf(4),
      rounds: 1,
      'min-updates': 4,
      'round-pause-ms': 200,
      epochs: 1,
      'batch-size': 8,
      'secagg-shares-deadline-ms': 4000,
      'round-deadline-ms': 60000,
      'max-message-bytes': P * 4 + 64 * 1024,
    }),
  );
});

afterAll(async () => {
  for (const c of clients) c.stop();
  silent?.close();
  await srv?.stop();
});

describe('secure aggregation retry', () => {
  it('an aborted attempt is retried and every client, including those waiting on attempt 1, completes it', async () => {
    for (let i = 0; i < 3; i++) {
      const c = new AegisClient({
        serverUrl: srv.url,
        source: 'node',
        spawnTrainer: nodeTrainer,
        backends: ['cpu'],
      });
      clients.push(c);
      c.start();
    }
    silent = new ScriptedClient(srv.url, 'scripted-silent-0001', new Float32Array(P), 16);
    silent.silentIf = (phase, m) => phase === 'shares' && m.attempt === 1;
    const status = await waitForPhase(srv.url, 'done', 120_000);
    expect(status.history).toHaveLength(1);
    expect(status.history[0]).toMatchObject({ attempts: 2, clients: 4, secagg: true });
    const m = await (await fetch(srv.url + '/metrics')).text();
    expect(metric(m, 'aegis_secagg_rounds_total', { outcome: 'aborted' })).toBe(1);
    expect(metric(m, 'aegis_secagg_rounds_total', { outcome: 'ok' })).toBe(1);
    expect(metric(m, 'aegis_round_attempts_failed_total', { reason: 'secagg_aborted' })).toBe(1);
  }, 150_000);
});
