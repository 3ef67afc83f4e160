import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';
import { helpText } from '../server/config.ts';

/**
 * deploy/helm/aegisfl through the real helm binary: `helm lint --strict`, then `helm template` with the
 * rendered manifests checked field by field (no cluster here, and no kubeconform).
 */
const ROOT = join(import.meta.dirname, '..');
const CHART = join(ROOT, 'deploy/helm/aegisfl');
// js-yaml 3 (no bundled types) reads helm's multi-document output.
const { loadAll } = createRequire(import.meta.url)('js-yaml') as { loadAll(s: string): unknown[] };

/** $HELM, else helm on PATH, else node_modules/.bin/helm: deploy/install-tools.sh (npm run setup) installs it. */
function findHelm(): string {
  const candidates = [
    process.env.HELM,
    ...(process.env.PATH ?? '').split(delimiter).map((d) => join(d, 'helm')),
    join(ROOT, 'node_modules/.bin/helm'),
  ];
  const found = candidates.find((c) => c && existsSync(c));
  if (!found)
    throw new Error('helm not found (HELM, PATH, node_modules/.bin): run bash deploy/install-tools.sh');
  return found;
}
const HELM = findHelm();

function helm(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(HELM, args, { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

type Doc = Record<string, any>;

function render(...set: string[]): Doc[] {
  const r = spawnSync(HELM, ['template', 'aegis', CHART, ...set.flatMap((s) => ['--set', s])], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return (loadAll(r.stdout) as Doc[]).filter(Boolean);
}

const one = (docs: Doc[], kind: string): Doc => {
  const found = docs.filter((d) => d.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0];
};

const TLS = ['tls.cert=CERTPEM', 'tls.key=KEYPEM', 'tls.serveInPod=true'];

describe('helm chart', () => {
  it('passes helm lint --strict, with the default values and with spot + in-pod TLS', () => {
    const plain = helm('lint', '--strict', CHART);
    expect(plain.out).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(plain.status).toBe(0);
    const spot = helm(
      'lint',
      '--strict',
      CHART,
      '-f',
      join(CHART, 'values-spot.yaml'),
      '--set',
      TLS.join(','),
    );
    expect(spot.out).toContain('0 chart(s) failed');
    expect(spot.status).toBe(0);
  });

  it('renders one non-root server with probes on /health, resources, scrape annotations and its state on a PVC', () => {
    const docs = render();
    expect(docs.map((d) => d.kind).sort()).toEqual([
      'ConfigMap',
      'Ingress',
      'Secret',
      'Service',
      'StatefulSet',
    ]);
    const sts = one(docs, 'StatefulSet');
    expect(sts.spec.replicas).toBe(1);
    const pod = sts.spec.template;
    const [c] = pod.spec.containers;
    expect(pod.spec.containers).toHaveLength(1);
    const port = c.ports.find((p: Doc) => p.name === 'http').containerPort;

    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
      expect(c[probe].httpGet, probe).toEqual({ path: '/health', port: 'http', scheme: 'HTTP' });
    }
    expect(pod.spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(c.resources.requests.cpu).toBeTruthy();
    expect(c.resources.requests.memory).toBeTruthy();
    expect(c.resources.limits.memory).toBeTruthy();

    expect(pod.metadata.annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': String(port),
      'prometheus.io/path': '/metrics',
    });

    // --state-dir is the PVC's mount.
    const stateDir = c.args[c.args.indexOf('--state-dir') + 1];
    expect(c.volumeMounts).toContainEqual({ name: 'state', mountPath: stateDir });
    expect(sts.spec.volumeClaimTemplates.map((v: Doc) => v.metadata.name)).toEqual(['state']);
    expect(c.args[c.args.indexOf('--port') + 1]).toBe(String(port));

    // The key Secret is mounted read-only.
    const secret = one(docs, 'Secret');
    const keysVol = pod.spec.volumes.find((v: Doc) => v.secret?.secretName === secret.metadata.name);
    expect(keysVol).toBeDefined();
    expect(c.volumeMounts).toContainEqual({
      name: keysVol.name,
      mountPath: '/etc/aegisfl/keys',
      readOnly: true,
    });

    // Spot notices are 30 s on GKE and AKS: the shutdown must fit.
    expect(pod.spec.terminationGracePeriodSeconds).toBeLessThan(30);
    expect(pod.spec.tolerations).toBeUndefined();
  });

  it('passes flags from the ConfigMap, and every flag it passes is one the server knows', () => {
    const docs = render('flags.dp-adaptive-clip=true', 'flags.quiet=false', 'flags.dp-noise=1.1');
    const cm = one(docs, 'ConfigMap');
    const [c] = one(docs, 'StatefulSet').spec.template.spec.containers;
    expect(c.envFrom).toContainEqual({ configMapRef: { name: cm.metadata.name } });
    const refs = (c.args as string[]).flatMap((a) => /^\$\((\w+)\)$/.exec(a)?.[1] ?? []);
    expect(refs.length).toBeGreaterThan(0);
    for (const r of refs) expect(cm.data, r).toHaveProperty(r);
    expect(cm.data.AEGIS_FLAG_DP_NOISE).toBe('1.1');
    expect(c.args[c.args.indexOf('--dp-noise') + 1]).toBe('$(AEGIS_FLAG_DP_NOISE)');
    // A switch is passed bare; a false one not at all.
    const i = c.args.indexOf('--dp-adaptive-clip');
    expect(i).toBeGreaterThan(-1);
    expect(c.args[i + 1]).toMatch(/^--/);
    expect(c.args).not.toContain('--quiet');
    // Every flag the chart passes must be in today's --help.
    const help = helpText();
    for (const f of (c.args as string[]).filter((a) => a.startsWith('--')))
      expect(help, f).toContain(`${f} `);
  });

  it('routes the ingress to the Service with sticky sessions and socket-length timeouts', () => {
    const docs = render();
    const ing = one(docs, 'Ingress');
    const svc = one(docs, 'Service');
    expect(ing.metadata.annotations).toMatchObject({
      'nginx.ingress.kubernetes.io/affinity': 'cookie',
      'nginx.ingress.kubernetes.io/affinity-mode': 'persistent',
      'nginx.ingress.kubernetes.io/session-cookie-name': 'aegisfl-affinity',
      'nginx.ingress.kubernetes.io/proxy-read-timeout': '3600',
    });
    expect(ing.spec.rules[0].http.paths[0].backend.service).toEqual({
      name: svc.metadata.name,
      port: { name: 'http' },
    });
    expect(svc.spec.sessionAffinity).toBe('ClientIP');
    expect(svc.spec.ports[0].targetPort).toBe('http');
    expect(svc.spec.selector).toEqual(one(docs, 'StatefulSet').spec.selector.matchLabels);
    expect(ing.spec.tls).toBeUndefined(); // no certificate given
  });

  it('with in-pod TLS: mounts the TLS Secret, serves HTTPS to probes, scraper and ingress', () => {
    const docs = render(...TLS);
    const tls = docs.find((d) => d.kind === 'Secret' && d.type === 'kubernetes.io/tls')!;
    expect(tls.data['tls.crt']).toBe(Buffer.from('CERTPEM').toString('base64'));
    const pod = one(docs, 'StatefulSet').spec.template;
    const [c] = pod.spec.containers;
    const vol = pod.spec.volumes.find((v: Doc) => v.secret?.secretName === tls.metadata.name);
    const mount = c.volumeMounts.find((m: Doc) => m.name === vol.name);
    expect(mount.readOnly).toBe(true);
    expect(c.args[c.args.indexOf('--tls-cert') + 1]).toBe(`${mount.mountPath}/tls.crt`);
    expect(c.args[c.args.indexOf('--tls-key') + 1]).toBe(`${mount.mountPath}/tls.key`);
    expect(c.livenessProbe.httpGet.scheme).toBe('HTTPS');
    expect(pod.metadata.annotations['prometheus.io/scheme']).toBe('https');
    const ing = one(docs, 'Ingress');
    expect(ing.spec.tls).toEqual([{ hosts: ['aegisfl.example.com'], secretName: tls.metadata.name }]);
    expect(ing.metadata.annotations['nginx.ingress.kubernetes.io/backend-protocol']).toBe('HTTPS');
  });

  it('with the spot profile: tolerates spot taints and prefers spot nodes', () => {
    const r = spawnSync(HELM, ['template', 'aegis', CHART, '-f', join(CHART, 'values-spot.yaml')], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    const spec = one((loadAll(r.stdout) as Doc[]).filter(Boolean), 'StatefulSet').spec.template.spec;
    expect(spec.tolerations).toContainEqual({
      key: 'cloud.google.com/gke-spot',
      operator: 'Equal',
      value: 'true',
      effect: 'NoSchedule',
    });
    const prefs = spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution as Doc[];
    expect(prefs.map((p) => p.preference.matchExpressions[0].key)).toContain(
      'eks.amazonaws.com/capacityType',
    );
    expect(spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution).toBeUndefined();
  });

  it('renders a ServiceMonitor on request, and refuses a second replica', () => {
    const sm = one(render('metrics.serviceMonitor.enabled=true'), 'ServiceMonitor');
    expect(sm.spec.endpoints).toEqual([{ port: 'http', path: '/metrics', interval: '15s', scheme: 'http' }]);
    const two = helm('template', 'aegis', CHART, '--set', 'replicaCount=2');
    expect(two.status).not.toBe(0);
    expect(two.out).toContain('privacy ledger');
  });
});
