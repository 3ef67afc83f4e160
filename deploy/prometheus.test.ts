import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The alert rules and the Prometheus config through Debian's promtool (deploy/install-tools.sh), and the
 * Grafana dashboard's shape. e2e/prometheus.test.ts runs the same rules and every dashboard query against a
 * real Prometheus scraping a real server.
 */
const DIR = join(import.meta.dirname, 'prometheus');

function promtool(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync('promtool', args, { cwd: DIR, encoding: 'utf8' });
  if (r.error) throw new Error(`promtool: ${r.error.message} (run bash deploy/install-tools.sh)`);
  return { status: r.status, out: r.stdout + r.stderr };
}

interface Panel {
  id: number;
  title: string;
  datasource: { type: string; uid: string };
  targets: { refId: string; expr: string }[];
}

describe('Prometheus rules and Grafana dashboard', () => {
  it('promtool accepts the rules and the config', () => {
    const rules = promtool('check', 'rules', 'alerts.yml');
    expect(rules.out).toContain('SUCCESS: 5 rules found');
    expect(rules.status).toBe(0);
    const cfg = promtool('check', 'config', 'prometheus.yml');
    expect(cfg.out).toContain('is valid prometheus config file syntax');
    expect(cfg.status).toBe(0);
  });

  it('every alert fires when it should and only then (promtool test rules)', () => {
    const t = promtool('test', 'rules', 'alerts.test.yml');
    expect(t.out).toContain('SUCCESS');
    expect(t.status).toBe(0);
    // Each alert of alerts.yml has a unit test.
    const names = [...readFileSync(join(DIR, 'alerts.yml'), 'utf8').matchAll(/- alert: (\w+)/g)].map(
      (m) => m[1],
    );
    const tested = readFileSync(join(DIR, 'alerts.test.yml'), 'utf8');
    for (const n of names) expect(tested, n).toContain(`alertname: ${n}`);
  });

  it('the dashboard has the promised panels, each with a Prometheus query on the import-time data source', () => {
    const d = JSON.parse(readFileSync(join(import.meta.dirname, 'grafana/aegisfl.json'), 'utf8')) as {
      uid: string;
      __inputs: { name: string; pluginId: string }[];
      panels: Panel[];
    };
    expect(d.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', pluginId: 'prometheus' })]);
    expect(new Set(d.panels.map((p) => p.id)).size).toBe(d.panels.length);
    const titles = d.panels.map((p) => p.title.toLowerCase()).join('\n');
    for (const t of [
      'rounds',
      'clients by backend',
      'accuracy',
      'loss',
      'epsilon',
      'rejected',
      'round duration',
      'phase',
      'event-loop',
    ])
      expect(titles).toContain(t);
    for (const p of d.panels) {
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '${DS_PROMETHEUS}' });
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) expect(t.expr, p.title).toMatch(/aegis_/);
    }
  });
});
