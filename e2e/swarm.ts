/**
 * npm run swarm -- --url http://localhost:8080 --clients 4 [--backends webgl,cpu] [--minutes 10]
 *                   [--floors secagg=optional,min-cohort=5]
 * Starts N headless chromium participants against a running server and prints a progress line. Against a
 * server run with --secagg off, pass --floors secagg=optional (the demo's default floors require it).
 */
import { parseArgs } from 'node:util';
import { roundLabel } from '../shared/protocol/round-label.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { startSwarm } from './swarm-lib.ts';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://localhost:8080' },
    clients: { type: 'string', default: '4' },
    backends: { type: 'string' },
    minutes: { type: 'string', default: '0' },
    floors: { type: 'string' },
  },
});
const n = Number(values.clients);
if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error('--clients must be an integer in 1..64');
const floors = Object.fromEntries(
  (values.floors ?? '')
    .split(',')
    .filter(Boolean)
    .map((kv) => kv.split('=', 2) as [string, string]),
);
const swarm = await startSwarm(values.url!, n, { backends: values.backends, floors });
console.log(`swarm: ${n} chromium clients joined ${values.url}`);
const until = Number(values.minutes) > 0 ? Date.now() + Number(values.minutes) * 60_000 : Infinity;
const stop = async (): Promise<never> => {
  await swarm.close();
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
for (;;) {
  const states = await swarm.states().catch(() => []);
  const backends = states.map((s) => s.backend ?? '?').join(',');
  const trained = states.reduce((s, x) => s + x.roundsTrained, 0);
  const status = await fetch(`${values.url}/api/status`)
    .then((r) => r.json() as Promise<ServerStatus>)
    .catch(() => null);
  const acc = status?.history.at(-1)?.accuracy;
  const where = !status
    ? 'round ? unreachable'
    : status.phase === 'done'
      ? roundLabel(status)
      : `round ${roundLabel(status)} ${status.phase}`;
  process.stdout.write(
    `\r${where} | client updates ${trained} | backends ${backends} | accuracy ${acc === undefined ? '–' : (acc * 100).toFixed(1) + '%'}   `,
  );
  if (Date.now() > until) await stop();
  await new Promise((r) => setTimeout(r, 2000));
}
