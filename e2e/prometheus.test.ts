import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { AegisClient } from '../client/client.ts';
import { nodeTrainer } from '../client/node-trainer.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { metric } from './metrics.ts';
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
 * A real Prometheus (Debian's package, deploy/install-tools.sh) scrapes the real server every second while
 * three Node clients train three rounds with secure aggregation and DP. Accuracy, loss, epsilon and rounds
 * are read back through Prometheus' HTTP query API, the alert rules load and evaluate, and every query of the
 * Grafana dashboard returns data.
 */
const ROOT = join(import.meta.dirname, '..');
const ROUNDS = 3;
const BUDGET = 50;
const work = mkdtempSync(join(tmpdir(), 'aegis-prometheus-'));
let srv: ServerProcess;
let prom: ChildProcess;
let promUrl = '';
let promOut = '';
const clients: AegisClient[] = [];

/** The series each dashboard query needs (metric name: where it comes from), so a gap names its cause. */
const DASHBOARD_SERIES: Record<string, string> = {
  aegis_rounds_completed_total: 'server/metrics.ts',
  aegis_current_round: 'server/metrics.ts',
  aegis_clients_ready: 'server/metrics.ts (ready clients, by backend)',
  aegis_clients_connected: 'server/metrics.ts',
  aegis_test_accuracy: 'server/metrics.ts (after the first evaluation)',
  aegis_test_loss: 'server/metrics.ts (after the first evaluation)',
  aegis_dp_epsilon: 'server/metrics.ts (with DP on)',
  aegis_dp_epsilon_budget: 'server/metrics.ts (with --dp-epsilon)',
  aegis_dp_epsilon_against_server: 'server/metrics.ts (with DP on)',
  aegis_messages_rejected_total: 'server/metrics.ts (zero-initialised per reason)',
  aegis_round_duration_seconds_bucket: 'server/metrics.ts (completed rounds)',
  aegis_secagg_phase_seconds_bucket: 'server/metrics.ts (secure-aggregation phases)',
  aegis_event_loop_delay_seconds: 'the event-loop monitor (perf_hooks.monitorEventLoopDelay)',
  aegis_bytes_received_total: 'server/metrics.ts',
  aegis_bytes_sent_total: 'server/metrics.ts',
};

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant query through Prometheus' HTTP API. */
async function query(expr: string): Promise<Sample[]> {
  const r = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await r.json()) as {
    status: string;
    error?: string;
    data: { resultType: string; result: Sample[] };
  };
  if (body.status !== 'success') throw new Error(`query ${expr}: ${body.error}`);
  expect(body.data.resultType).toBe('vector');
  return body.data.result;
}

const one = async (expr: string): Promise<number> => {
  const r = await query(expr);
  expect(r, expr).toHaveLength(1);
  return Number(r[0].value[1]);
};

beforeAll(async () => {
  await tf.setBackend('cpu');
  srv = await startServerProcess(
    flags({
      ...TINY_SERVER,
      ...cohortOf(3),
      rounds: ROUNDS,
      'min-updates': 3,
      'round-pause-ms': 200,
      'round-deadline-ms': 60000,
      epochs: 1,
      'batch-size': 8,
      lr: 0.005,
      'dp-noise': 1,
      'dp-epsilon': BUDGET,
      'dp-clip': 0.1,
    }),
  );
  const target = new URL(srv.url).host;
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  writeFileSync(
    join(work, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: [${JSON.stringify(join(ROOT, 'deploy/prometheus/alerts.yml'))}]`,
      'scrape_configs:',
      '  - job_name: aegisfl',
      `    static_configs: [{ targets: [${JSON.stringify(target)}] }]`,
    ].join('\n'),
  );
  prom = spawn(
    'prometheus',
    [
      `--config.file=${join(work, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(work, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  prom.on('error', (e) => (promOut += `\n${e.message} (run bash deploy/install-tools.sh)`));
  prom.stdout!.on('data', (b: Buffer) => (promOut += b.toString()));
  prom.stderr!.on('data', (b: Buffer) => (promOut += b.toString()));
  await waitFor(
    async () => (await fetch(`${promUrl}/-/ready`).catch(() => null))?.ok,
    30_000,
    () => `Prometheus ready:\n${promOut}`,
  );
  await waitFor(async () => (await query('up{job="aegisfl"} == 1')).length === 1, 30_000, 'first scrape');
});

afterAll(async () => {
  for (const c of clients) c.stop();
  await srv?.stop();
  if (prom && prom.exitCode === null) {
    const exited = new Promise((r) => prom.once('exit', r));
    prom.kill('SIGTERM');
    await exited;
  }
  rmSync(work, { recursive: true, force: true });
});

describe('real Prometheus scraping the real server', () => {
  it('reads accuracy, loss, epsilon and rounds back through the query API', async () => {
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
    const status: ServerStatus = await waitForPhase(srv.url, 'done', 150_000);
    expect(status.history).toHaveLength(ROUNDS);
    // Wait for a scrape after the last round, then compare Prometheus with the server's own view.
    await waitFor(
      async () => (await query(`aegis_rounds_completed_total == ${ROUNDS}`)).length === 1,
      15_000,
      'the last round in Prometheus',
    );
    const text = await fetch(srv.url + '/metrics').then((r) => r.text());
    const last = status.history[status.history.length - 1];
    expect(await one('aegis_test_accuracy{job="aegisfl"}')).toBeCloseTo(last.accuracy, 6);
    expect(await one('aegis_test_loss{job="aegisfl"}')).toBeCloseTo(last.loss, 6);
    const eps = await one('aegis_dp_epsilon{job="aegisfl"}');
    expect(eps).toBeGreaterThan(0);
    expect(eps).toBeLessThanOrEqual(BUDGET);
    expect(eps).toBeCloseTo(metric(text, 'aegis_dp_epsilon')!, 9);
    expect(await one('aegis_dp_epsilon_budget')).toBe(BUDGET);
    expect(await one('aegis_rounds_completed_total')).toBe(ROUNDS);
    // Counted over time, not only the last value: the rounds went up in steps during the run.
    expect(
      await one(
        `max_over_time(aegis_rounds_completed_total[10m]) - min_over_time(aegis_rounds_completed_total[10m])`,
      ),
    ).toBeGreaterThan(0);
  }, 240_000);

  it('loads and evaluates every alert rule', async () => {
    const r = (await fetch(`${promUrl}/api/v1/rules`).then((x) => x.json())) as {
      data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
    };
    const rules = r.data.groups.flatMap((g) => g.rules);
    expect(rules.map((x) => x.name).sort()).toEqual([
      'AegisFLDown',
      'AegisFLEventLoopDelay',
      'AegisFLNoRoundsCompleting',
      'AegisFLPrivacyBudgetNearlySpent',
      'AegisFLRejectSpike',
    ]);
    for (const rule of rules) expect(rule.health, `${rule.name}: ${rule.lastError}`).toBe('ok');
    // A healthy run fires none of them.
    const alerts = (await fetch(`${promUrl}/api/v1/alerts`).then((x) => x.json())) as {
      data: { alerts: unknown[] };
    };
    expect(alerts.data.alerts).toEqual([]);
  });

  it('answers every query of the Grafana dashboard with data', async () => {
    const d = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/aegisfl.json'), 'utf8')) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const exprs = d.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr })));
    // The list above names every series the dashboard reads, and nothing it does not.
    const used = new Set(exprs.flatMap(({ expr }) => expr.match(/aegis_\w+/g) ?? []));
    expect([...used].sort()).toEqual(Object.keys(DASHBOARD_SERIES).sort());
    const missing: string[] = [];
    for (const { panel, expr } of exprs) {
      // Grafana's $__rate_interval: a window that spans this whole run.
      const result = await query(expr.replaceAll('$__rate_interval', '10m'));
      const values = result.map((s) => Number(s.value[1]));
      if (!values.some((v) => Number.isFinite(v))) {
        const names = expr.match(/aegis_\w+/g)!;
        missing.push(
          `${panel}: ${expr} -> ${JSON.stringify(values)} (needs ${names.map((n) => `${n} from ${DASHBOARD_SERIES[n]}`).join(', ')})`,
        );
      }
    }
    expect(missing).toEqual([]);
  });
});
