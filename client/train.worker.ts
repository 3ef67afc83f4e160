/// <reference lib="webworker" />
import './backends-browser.ts';
import { BACKEND_PREFERENCE } from './backends.ts';
import { softwareGpuPrecheck } from './gpu-adapter.ts';
import { createTrainerHost } from './trainer-host.ts';
import type { TrainerRequest } from './worker-protocol.ts';

declare const self: DedicatedWorkerGlobalScope;

// Requests are handled one at a time, in order: init must finish before the first train.
let queue: Promise<void> = Promise.resolve();
const handle = createTrainerHost(
  (msg, transfer) => self.postMessage(msg, transfer ?? []),
  softwareGpuPrecheck(BACKEND_PREFERENCE),
);
self.onmessage = (e: MessageEvent<TrainerRequest>) => {
  // A pace change or the end of a pair must reach a training in progress, so they do not wait their turn.
  if (e.data.type === 'pace' || e.data.type === 'peer') return void handle(e.data);
  queue = queue.then(() => handle(e.data));
};
