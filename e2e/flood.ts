/**
 * npm run bench:flood [-- --hellos 100000 --connections 1000 --unlimited]
 * The hello flood of issue 11, against the real server process on 127.0.0.1: one socket sends N hellos as
 * fast as it can while three honest (scripted, secure-aggregation) clients train three rounds; then one
 * address opens many connections at once. Reports the server's CPU time (process.cpuUsage, read from
 * /metrics) and memory growth, and whether the honest rounds completed. Exits 1 if a goal is missed.
 * --unlimited lifts the per-socket message limit, so every hello reaches the session registry (the cost of
 * the refusal itself rather than of the rate limiter).
 */
import { parseArgs } from 'node:util';
import { io, type Socket } from 'socket.io-client';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { PROTOCOL_VERSION } from '../shared/protocol/messages.ts';
import { metric } from './metrics.ts';
import { ScriptedClient } from './scripted-client.ts';
import { startServerProcess, waitFor, waitForPhase } from './server-process.ts';

const { values: v } = parseArgs({
  options: {
    hellos: { type: 'string', default: '100000' },
    connections: { type: 'string', default: '1000' },
    unlimited: { type: 'boolean', default: false },
  },
});
const HELLOS = Number(v.hellos);
const CONNECTIONS = Number(v.connections);
const ROUNDS = 3;
const GOALS = { cpuSeconds: 5, rssMB: 50 };

const srv = await startServerProcess([
  '--model',
  'tiny',
  '--examples-per-client',
  '8',
  '--test-examples',
  '50',
  '--rounds',
  String(ROUNDS),
  '--min-clients',
  '3',
  '--clients-per-round',
  '3',
  '--min-updates',
  '2',
  '--round-pause-ms',
  '100',
  '--quiet',
  ...(v.unlimited ? ['--socket-rate', '1000000', '--socket-burst', '1000000'] : []),
]);

interface Snapshot {
  cpu: number;
  rss: number;
  heap: number;
  text: string;
}
async function snapshot(): Promise<Snapshot> {
  const text = await fetch(srv.url + '/metrics').then((r) => r.text());
  return {
    cpu: metric(text, 'aegis_process_cpu_seconds_total') ?? NaN,
    rss: metric(text, 'aegis_process_resident_memory_bytes') ?? NaN,
    heap: metric(text, 'aegis_nodejs_heap_size_used_bytes') ?? NaN,
    text,
  };
}
const rejected = (text: string, event: string): number => {
  let n = 0;
  for (const reason of ['rate_limited', 'already_identified', 'malformed', 'server_full'])
    n += metric(text, 'aegis_messages_rejected_total', { reason, event }) ?? 0;
  return n;
};
const connect = (): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const s = io(srv.url, { transports: ['websocket'], reconnection: false, forceNew: true });
    s.once('connect', () => resolve(s));
    s.once('connect_error', (e) => {
      s.close();
      reject(e);
    });
  });
const mb = (b: number): string => (b / 2 ** 20).toFixed(1);

let failed = false;
try {
  const before = await snapshot();
  const t0 = performance.now();

  // One socket, N hellos, no waiting: the first gets an identity, every other one is refused.
  const flood = await connect();
  for (let i = 0; i < HELLOS; i++) flood.emit('hello', { protocolVersion: PROTOCOL_VERSION, source: 'node' });

  // Meanwhile, three honest clients train.
  const P = numParams(MODELS.tiny);
  const honest = [0, 1, 2].map(
    (i) =>
      new ScriptedClient(
        srv.url,
        `honest-${i}`,
        Float32Array.from({ length: P }, () => (Math.random() - 0.5) * 0.01),
        8,
      ),
  );
  let floodDoneMs = NaN;
  const floodDone = waitFor(
    async () => {
      const s = await snapshot();
      if (rejected(s.text, 'hello') < HELLOS - 1) return null;
      floodDoneMs = performance.now() - t0;
      return s;
    },
    600_000,
    'the flood to be processed',
    100,
  );
  const status = await waitForPhase(srv.url, 'done', 600_000, 200);
  const afterFlood = await floodDone;
  const roundsDoneMs = performance.now() - t0;

  const cpu = afterFlood.cpu - before.cpu;
  const rss = afterFlood.rss - before.rss;
  console.log(
    `hello flood: ${HELLOS.toLocaleString('en')} hellos on one socket, processed in ${(floodDoneMs / 1000).toFixed(1)} s`,
  );
  console.log(`  server CPU ${cpu.toFixed(2)} s (goal < ${GOALS.cpuSeconds} s)`);
  console.log(
    `  server RSS ${mb(before.rss)} -> ${mb(afterFlood.rss)} MB (+${mb(rss)} MB, goal < ${GOALS.rssMB} MB); heap used ${mb(before.heap)} -> ${mb(afterFlood.heap)} MB`,
  );
  const t = afterFlood.text;
  const by = (reason: string) => metric(t, 'aegis_messages_rejected_total', { reason, event: 'hello' }) ?? 0;
  console.log(
    `  hellos refused: ${by('rate_limited')} rate_limited, ${by('already_identified')} already_identified; sessions held: ${metric(t, 'aegis_sessions')}`,
  );
  console.log(
    `  honest clients: ${status.history.length} of ${ROUNDS} rounds completed in ${(roundsDoneMs / 1000).toFixed(1)} s (round durations ${status.history.map((h) => `${(h.durationMs / 1000).toFixed(2)} s`).join(', ')}; ${status.history.map((h) => h.clients).join('/')} clients)`,
  );
  if (!(cpu < GOALS.cpuSeconds) || !(rss < GOALS.rssMB * 2 ** 20) || status.history.length !== ROUNDS)
    failed = true;
  flood.close();
  for (const c of honest) c.close();

  // One address, many connections at once: past the burst they are refused at the handshake.
  const b2 = await snapshot();
  const results = await Promise.allSettled(Array.from({ length: CONNECTIONS }, () => connect()));
  const ok = results.filter((r) => r.status === 'fulfilled');
  for (const r of ok) (r as PromiseFulfilledResult<Socket>).value.close();
  const a2 = await snapshot();
  console.log(
    `connection flood: ${CONNECTIONS} connections from one address: ${ok.length} accepted, ${CONNECTIONS - ok.length} refused (${metric(a2.text, 'aegis_messages_rejected_total', { reason: 'rate_limited', event: 'connect' })} counted); server CPU ${(a2.cpu - b2.cpu).toFixed(2)} s`,
  );
  const health = await fetch(srv.url + '/health').then((r) => r.json());
  console.log(`  /health afterwards: ${JSON.stringify(health)}`);
} catch (e) {
  failed = true;
  console.error(e);
  console.error(srv.output().slice(-4000));
} finally {
  await srv.stop();
}
if (failed) {
  console.error('flood benchmark: a goal was missed');
  process.exit(1);
}
