/**
 * npm run bench:swarm -- --clients N [--drop-after-keys 0.1 --drop-after-shares 0.1] [--processes P]
 *                        [--model tiny] [--phase-deadline-ms MS] [--connect-per-second R] [--out DIR]
 *                        [--secagg-dropout 0.1] [--gateways G] [--gateway-sum on|off]
 * One secure round of N protocol clients (real crypto, ScriptedClient) spread over P client processes,
 * against the real server process on loopback. Prints a progress line, then per-phase times, round time,
 * server CPU seconds, peak RSS, event-loop delay, messages and bytes per client; writes the same as JSON
 * to bench-results/. Exits 1 when the round does not complete with the exact sum (or times out).
 * --gateways G (>= 1) runs the scale-out mode instead: redis-server, a coordinator and G gateways, each a
 * process; it adds the gateways' CPU and memory and Redis' traffic per client.
 * --phase-deadline-ms defaults to a value that scales with N (bench-swarm-lib.ts phaseDeadlineMs).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { modelByName } from '../shared/model/spec.ts';
import { phaseDeadlineMs, runSwarmBench } from './bench-swarm-lib.ts';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    'drop-after-keys': { type: 'string', default: '0' },
    'drop-after-shares': { type: 'string', default: '0' },
    processes: { type: 'string' },
    // Client processes' niceness (a diagnostic: see SwarmBenchOptions.clientNice); 0 = the server's.
    'client-nice': { type: 'string', default: '0' },
    model: { type: 'string', default: 'tiny' },
    'phase-deadline-ms': { type: 'string' },
    'connect-per-second': { type: 'string', default: '500' },
    'secagg-dropout': { type: 'string', default: '0.1' },
    out: { type: 'string', default: 'bench-results' },
    gateways: { type: 'string', default: '0' },
    'gateway-sum': { type: 'string', default: 'on' },
  },
});
const n = Number(values.clients);
if (!Number.isInteger(n) || n < 3) throw new Error('--clients must be an integer >= 3');
const frac = (name: 'drop-after-keys' | 'drop-after-shares'): number => {
  const v = Number(values[name]);
  if (!(v >= 0 && v < 0.5)) throw new Error(`--${name} must be in [0, 0.5)`);
  return v;
};
const processes = Number(values.processes ?? Math.max(2, Math.min(8, cpus().length * 2)));
const phase = values['phase-deadline-ms'] ? Number(values['phase-deadline-ms']) : phaseDeadlineMs(n);
const r = await runSwarmBench({
  clients: n,
  dropAfterKeys: frac('drop-after-keys'),
  dropAfterShares: frac('drop-after-shares'),
  processes,
  clientNice: Number(values['client-nice']),
  model: modelByName(values.model!),
  phaseDeadlineMs: phase,
  connectPerSecond: Number(values['connect-per-second']),
  secaggDropout: Number(values['secagg-dropout']),
  gateways: Number(values.gateways),
  gatewaySum: values['gateway-sum'] !== 'off',
  progress: (line) => process.stdout.write(`\r${line}   `),
});
process.stdout.write('\n');
const f = (x: number | null, d = 1): string => (x === null || Number.isNaN(x) ? '–' : x.toFixed(d));
const ms = (s: number | null): string => (s === null ? '–' : `${(s * 1000).toFixed(0)} ms`);
console.log(`${r.ok ? 'OK' : 'FAILED'}: ${r.why}`);
console.log(
  `clients ${r.clients} (${r.dropAfterKeys} dropped after keys, ${r.dropAfterShares} after shares), model ${r.model} (${r.numParams} params), --secagg-dropout ${r.secaggDropout}: k ${r.k ?? '–'}, t ${r.t ?? '–'}, ${r.processes} client processes (nice ${r.clientNice}), phase deadline ${r.phaseDeadlineMs} ms${r.serverNodeArgs ? `, server node flags ${r.serverNodeArgs}` : ''}`,
);
console.log(
  `connect ${f(r.connectSeconds)} s | round ${f(r.roundSeconds)} s | phases ${Object.entries(r.phaseSeconds)
    .map(([p, s]) => `${p} ${f(s)} s`)
    .join(', ')} | unmask (worker) ${f(r.unmaskSeconds, 2)} s`,
);
console.log(
  `server CPU ${f(r.serverCpuSeconds)} s | peak RSS ${f(r.serverPeakRssMB, 0)} MB | waited for a core ${f(r.serverRunQueueSeconds)} s | loop delay p50 ${ms(r.loopDelay.p50)}, p99 ${ms(r.loopDelay.p99)}, max ${ms(r.loopDelay.max)}`,
);
const worst = r.loopWindows.reduce<(typeof r.loopWindows)[number] | null>(
  (a, w) => (a === null || w.p99Ms > a.p99Ms ? w : a),
  null,
);
if (worst)
  console.log(
    `worst 10 s loop window: p99 ${worst.p99Ms} ms, max ${worst.maxMs} ms, ending at ${worst.atSeconds} s (${worst.phase}), garbage collection ${worst.gcMs} ms in it (${worst.gcOver100ms} of 100 ms or more); windows over 100 ms: ${r.loopWindows.filter((w) => w.p99Ms >= 100).length} of ${r.loopWindows.length}; collections of 100 ms or more: ${r.loopWindows.reduce((a, w) => a + w.gcOver100ms, 0)}`,
  );
console.log(
  `server memory by phase (max of 10 s samples): ${Object.entries(r.serverMemoryByPhase)
    .map(
      ([p, m]) =>
        `${p} RSS ${f(m.rssMB, 0)} / heap ${f(m.heapUsedMB, 0)} / external ${f(m.externalMB, 0)} MB, loop max ${f(m.loopMaxMs, 0)} ms`,
    )
    .join('; ')}`,
);
console.log(
  `per client: ${f(r.perClient.messagesSent)} messages sent, ${f(r.perClient.messagesReceived)} received, ${f(r.perClient.bytesSent / 1024)} KiB sent, ${f(r.perClient.bytesReceived / 1024)} KiB received | survivors ${r.survivors ?? '–'}/${r.expectedSurvivors}, examples ${r.examples ?? '–'}/${r.expectedExamples}, max error ${r.maxError ?? '–'}`,
);
if (r.cluster) {
  const c = r.cluster;
  console.log(
    `scale-out: ${c.gateways} gateway(s) (${c.gatewaySum ? 'summing' : 'forwarding'} masked inputs), CPU ${c.gatewayCpuSeconds.map((x) => f(x)).join(' + ')} s, peak RSS ${c.gatewayPeakRssMB.map((x) => f(x, 0)).join(' + ')} MB | redis CPU ${f(c.redisCpuSeconds)} s, peak memory ${f(c.redisPeakMemoryMB, 0)} MB, per client ${f(c.redisBytesInPerClient / 1024)} KiB in, ${f(c.redisBytesOutPerClient / 1024)} KiB out (the server figures above are the coordinator's)`,
  );
}
if (r.clientErrors.length) console.log(`client errors (first distinct): ${r.clientErrors.join(' | ')}`);
const closes = Object.entries(r.clientDisconnects);
if (closes.length)
  console.log(`client sockets closed: ${closes.map(([why, c]) => `${why} ${c}`).join(', ')}`);
if (!r.ok) console.log(`server log (tail):\n${r.serverTail}`);
mkdirSync(values.out!, { recursive: true });
const file = join(
  values.out!,
  `swarm-${n}${r.cluster ? `-g${r.cluster.gateways}` : ''}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
);
writeFileSync(file, JSON.stringify(r, null, 2));
console.log(`wrote ${file}`);
process.exit(r.ok ? 0 : 1);
