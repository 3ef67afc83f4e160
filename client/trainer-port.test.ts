import { presetTask } from '../shared/model/task.ts';
import { describe, expect, it } from 'vitest';
import { createTrainerPort } from './trainer-port.ts';
import type { TrainerRequest, TrainerResponse } from './worker-protocol.ts';

function fakeChannel() {
  const sent: TrainerRequest[] = [];
  let deliver: (m: TrainerResponse) => void = () => {};
  return {
    sent,
    reply: (m: TrainerResponse) => deliver(m),
    ch: {
      send: (r: TrainerRequest) => void sent.push(r),
      onMessage: (fn: (m: TrainerResponse) => void) => void (deliver = fn),
      close: () => {},
    },
  };
}

describe('trainer port', () => {
  it('matches responses to requests, forwards progress, surfaces errors, refuses overlap', async () => {
    const f = fakeChannel();
    const port = createTrainerPort('worker', f.ch);
    const seen: number[] = [];
    const p = port.train(
      3,
      new ArrayBuffer(8),
      { epochs: 1, batchSize: 1, learningRate: 1, optimizer: 'sgd' },
      (pr) => seen.push(pr.batch),
    );
    await expect(
      port.train(
        4,
        new ArrayBuffer(8),
        { epochs: 1, batchSize: 1, learningRate: 1, optimizer: 'sgd' },
        () => {},
      ),
    ).rejects.toThrow(/busy/);
    expect(f.sent[0]).toMatchObject({ type: 'train', round: 3 });
    f.reply({ type: 'progress', round: 3, progress: { epoch: 0, epochs: 1, batch: 1, batches: 2 } });
    f.reply({
      type: 'done',
      round: 3,
      delta: new ArrayBuffer(8),
      numExamples: 2,
      loss: 0.5,
      trainMs: 1,
      pairedSteps: 0,
    });
    expect((await p).numExamples).toBe(2);
    expect(seen).toEqual([1]);
    const q = port.init({
      type: 'init',
      task: presetTask('tiny', { epochs: 1, batchSize: 1, learningRate: 0.1, optimizer: 'sgd' }),
      data: { kind: 'synthetic', seed: 1, count: 1 },
      serverUrl: 'x',
    });
    f.reply({ type: 'error', message: 'no backend' });
    await expect(q).rejects.toThrow('no backend');
  });
});
