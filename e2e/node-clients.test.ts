import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { io, type Socket } from 'socket.io-client';
import { AegisClient } from '../client/client.ts';
import { nodeTrainer } from '../client/node-trainer.ts';
import { socketIo } from '../client/socket.ts';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { PROTOCOL_VERSION, type Rejection, type RoundSummary } from '../shared/protocol/messages.ts';
import { metric } from './metrics.ts';
import { parseConfig, serverTask } from '../server/config.ts';
import {
  startServerProcess,
  waitFor,
  waitForPhase,
  type ServerProcess,
  flags,
  cohortOf,
  TINY_SERVER,
} from './server-process.ts';

/**
 * The real server process and the real client code over real socket.io, in Node (no browser): three honest
 * clients (the smallest cohort secure aggregation runs with) train two rounds while a hostile socket sends
 * garbage, and one honest client loses its connection.
 */
const P = numParams(MODELS.tiny);
let srv: ServerProcess;
let serverArgs: string[] = [];
const clients: AegisClient[] = [];

beforeAll(async () => {
  await tf.setBackend('cpu');
  srv = await startServerProcess(
    (serverArgs = flags({
      ...TINY_SERVER,
      ...cohortOf(3),
      rounds: 2,
      'min-updates': 2,
      'round-pause-ms': 200,
      'round-deadline-ms': 60000,
      epochs: 1,
      'batch-size': 8,
      lr: 0.005,
      // The whole path of a plan option: the server's task, the clients' pin, the worker's trainer.
      'logit-adjust': 'on',
      'max-message-bytes': P * 4 + 64 * 1024,
    })),
  );
});

afterAll(async () => {
  for (const c of clients) c.stop();
  await srv?.stop();
});

const getText = (path: string) => fetch(srv.url + path).then((r) => r.text());

function rawSocket(): Promise<Socket> {
  const s = io(srv.url, { transports: ['websocket'], reconnection: false });
  return new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('connect_error', reject);
  });
}

describe('server + Node clients over socket.io', () => {
  it('rejects hostile messages with reasons, counts them, and still completes every round', async () => {
    // Hostile: update before hello, bad protocol, unknown event, wrong-length vector, oversized frame.
    const bad = await rawSocket();
    const rejections: Rejection[] = [];
    bad.on('rejected', (r: Rejection) => rejections.push(r));
    const ack1 = await bad
      .timeout(5000)
      .emitWithAck('update', { round: 1, attempt: 1, delta: new ArrayBuffer(8) });
    expect(ack1).toMatchObject({ ok: false, reason: 'unknown_client' });
    bad.emit('hello', { protocolVersion: 999, source: 'node' });
    bad.emit('launch-missiles', 1);
    bad.emit('hello', { protocolVersion: PROTOCOL_VERSION, source: 'node' });
    const ack2 = await bad
      .timeout(5000)
      .emitWithAck('update', { round: 1, attempt: 1, delta: new ArrayBuffer(12) });
    expect(ack2).toMatchObject({ ok: false, reason: 'wrong_length' });
    await waitFor(async () => rejections.length >= 4, 5000, 'rejections');
    expect(rejections.map((r) => r.reason).sort()).toEqual([
      'malformed',
      'protocol_version',
      'unknown_client',
      'wrong_length',
    ]);
    const huge = await rawSocket();
    const closed = new Promise((r) => huge.once('disconnect', r));
    huge.emit('update', { delta: new ArrayBuffer(P * 4 + 200 * 1024) });
    await closed; // the transport refuses the frame and drops that connection only

    // Honest clients, one of which loses its connection after the first round.
    const ends: RoundSummary[] = [];
    const hashes: string[] = [];
    let first: Socket | null = null; // client 0's socket.io socket (the client wraps it to count bytes)
    for (let i = 0; i < 3; i++) {
      const c = new AegisClient({
        serverUrl: srv.url,
        source: 'node',
        spawnTrainer: nodeTrainer,
        backends: ['cpu'],
        connect: (url, opts) => {
          const s = socketIo(url, opts);
          if (i === 0) first = s as unknown as Socket;
          return s;
        },
      });
      c.on('roundEnd', (r) => ends.push(r));
      c.on('task', (t) => hashes.push(t.hash));
      clients.push(c);
      c.start();
    }
    let dropped = false;
    let reconnected = false;
    clients[0].on('roundEnd', () => {
      if (dropped) return;
      first!.io.engine.close(); // network drop: socket.io reconnects by itself
      first!.io.once('reconnect', () => (reconnected = true));
      dropped = true;
    });
    const status = await waitForPhase(srv.url, 'done', 120_000);
    expect(dropped).toBe(true);
    expect(reconnected).toBe(true);
    expect(status.history).toHaveLength(2);
    expect(status.history.every((h) => h.clients === 3)).toBe(true);
    // Secure aggregation without DP: the mean training loss is decoded from the sum, as the example count.
    for (const h of status.history) {
      expect(h.trainLoss).toBeGreaterThan(0);
      expect(h.examples).toBeGreaterThan(0);
    }
    expect(ends.filter((e) => e.round === 2)).toHaveLength(3); // all heard the end of round 2, the reconnected one too
    // Every client pinned the server's task, whose plan has logitAdjust, and trained both rounds with it.
    const task = serverTask(parseConfig(serverArgs));
    expect(task.task.plan.logitAdjust).toBe(true);
    expect(hashes.length).toBeGreaterThanOrEqual(3);
    expect(new Set(hashes)).toEqual(new Set([task.hash]));

    const m = await getText('/metrics');
    expect(metric(m, 'aegis_rounds_completed_total')).toBe(2);
    expect(metric(m, 'aegis_updates_accepted_total')).toBe(6);
    expect(metric(m, 'aegis_messages_rejected_total', { reason: 'unknown_client', event: 'update' })).toBe(1);
    expect(metric(m, 'aegis_messages_rejected_total', { reason: 'wrong_length', event: 'update' })).toBe(1);
    expect(metric(m, 'aegis_messages_rejected_total', { reason: 'protocol_version', event: 'hello' })).toBe(
      1,
    );
    // Unknown event names are counted under one label, not one series per name.
    expect(metric(m, 'aegis_messages_rejected_total', { reason: 'malformed', event: 'unknown' })).toBe(1);
    expect(m).not.toContain('launch-missiles');
    expect(metric(m, 'aegis_messages_rejected_total', { reason: 'too_large', event: 'transport' })).toBe(1);
    // Two rounds of weights out to three clients, two rounds of masked vectors in: binary, so about 4 bytes a
    // parameter.
    expect(metric(m, 'aegis_bytes_sent_total')!).toBeGreaterThan(6 * P * 4);
    expect(metric(m, 'aegis_bytes_received_total')!).toBeGreaterThan(6 * P * 4);
    expect(metric(m, 'aegis_bytes_received_total')!).toBeLessThan(6 * P * 4 * 1.5 + P * 4 + 300 * 1024);
    expect(metric(m, 'aegis_eval_backend_info', { backend: 'wasm' })).toBe(1);
    bad.close();
  }, 180_000);
});
