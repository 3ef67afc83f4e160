/**
 * The client's trainer in Node (integration tests, load generators): the same host and protocol as the
 * browser worker, run inline. Node has tfjs' cpu and wasm backends; the usual probe picks wasm (with our
 * gradient kernels) and falls back to cpu.
 */
import './wasm-backend.ts';
import { createTrainerHost } from './trainer-host.ts';
import { createInlineTrainerPort, type TrainerPort } from './trainer-port.ts';

export async function nodeTrainer(): Promise<TrainerPort> {
  return createInlineTrainerPort(createTrainerHost);
}
