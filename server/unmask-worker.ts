import { parentPort } from 'node:worker_threads';
import { runUnmask, type UnmaskJob } from '../shared/secagg/unmask.ts';
import type { UnmaskReply } from './unmask-thread.ts';

/**
 * Worker-thread entry (started by unmask-thread.ts): runs each unmask job it is sent with the shared
 * secagg code and sends back the result, the sum's buffer transferred, not copied.
 */
const port = parentPort;
if (!port) throw new Error('unmask-worker.ts runs only as a worker thread');
port.on('message', async ({ id, job }: { id: number; job: UnmaskJob }) => {
  let reply: UnmaskReply;
  try {
    // Awaited: the shared code may become asynchronous (WebCrypto) without this file changing.
    reply = { id, result: await runUnmask(job) };
  } catch (e) {
    reply = { id, error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
  }
  const sum = 'result' in reply && reply.result.ok ? reply.result.sum : null;
  port.postMessage(reply, sum ? [sum.buffer as ArrayBuffer] : []);
});
