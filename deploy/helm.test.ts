import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
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
  return renderFiles([], ...set);
}

/** `helm template` with values files (-f, in order) and then --set overrides. */
function renderFiles(files: string[], ...set: string[]): Doc[] {
  const r = spawnSync(
    HELM,
    ['template', 'aegis', CHART, ...files.flatMap((f) => ['-f', f]), ...set.flatMap((s) => ['--set', s])],
    { encoding: 'utf8' },
  );
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

const SCALE_OUT = join(CHART, 'values-scale-out.yaml');
const SPOT = join(CHART, 'values-spot.yaml');
// Rendered by the chart before the scale-out mode existed (regenerate only for a deliberate change:
// helm template aegis deploy/helm/aegisfl > deploy/helm/default-render.golden).
const GOLDEN = join(ROOT, 'deploy/helm/default-render.golden');

/** The object of that kind whose name ends with the suffix ('' = the release's full name). */
const named = (docs: Doc[], kind: string, suffix: string): Doc => {
  const found = docs.filter((d) => d.kind === kind && d.metadata.name === `aegis-aegisfl${suffix}`);
  expect(found, `${kind} aegis-aegisfl${suffix}`).toHaveLength(1);
  return found[0];
};

/** A label selector (matchLabels or a Service's selector) picks pods with these labels. */
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

const argAfter = (c: Doc, flag: string): string | undefined => {
  const i = (c.args as string[]).indexOf(flag);
  return i < 0 ? undefined : c.args[i + 1];
};

describe('helm chart, scale-out (gateways + coordinator over Redis)', () => {
  it('leaves the default render unchanged: the same objects as before the mode existed, whatever its keys say', () => {
    const before = (loadAll(readFileSync(GOLDEN, 'utf8')) as Doc[]).filter(Boolean);
    expect(render()).toEqual(before);
    // Scale-out settings without scaleOut.enabled change nothing.
    expect(
      render(
        'scaleOut.enabled=false',
        'redis.url=redis://r:6379',
        'gateway.replicas=7',
        'gateway.autoscaling.enabled=true',
      ),
    ).toEqual(before);
  });

  it('passes helm lint --strict with the scale-out profile, alone and with spot + in-pod TLS', () => {
    const plain = helm('lint', '--strict', CHART, '-f', SCALE_OUT);
    expect(plain.out).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(plain.status).toBe(0);
    const spot = helm('lint', '--strict', CHART, '-f', SCALE_OUT, '-f', SPOT, '--set', TLS.join(','));
    expect(spot.out).toContain('0 chart(s) failed');
    expect(spot.status).toBe(0);
  });

  it('renders a coordinator (2 replicas, no volume for state) and gateways, each with its role and --redis', () => {
    const docs = renderFiles([SCALE_OUT], 'coordinator.resources.requests.cpu=1500m');
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual([
      'ConfigMap/aegis-aegisfl-flags',
      'Deployment/aegis-aegisfl-coordinator',
      'Deployment/aegis-aegisfl-gateway',
      'HorizontalPodAutoscaler/aegis-aegisfl-gateway',
      'Ingress/aegis-aegisfl',
      'PodDisruptionBudget/aegis-aegisfl-coordinator',
      'PodDisruptionBudget/aegis-aegisfl-gateway',
      'Secret/aegis-aegisfl-keys',
      'Service/aegis-aegisfl',
      'Service/aegis-aegisfl-coordinator',
    ]);
    const cm = one(docs, 'ConfigMap');
    expect(cm.data.AEGISFL_REDIS_URL).toBe('redis://aegisfl-redis.aegisfl.svc.cluster.local:6379');
    const help = helpText();

    for (const role of ['coordinator', 'gateway']) {
      const dep = named(docs, 'Deployment', `-${role}`);
      const pod = dep.spec.template;
      expect(pod.spec.containers, role).toHaveLength(1);
      const [c] = pod.spec.containers;
      expect(argAfter(c, '--role'), role).toBe(role);
      expect(argAfter(c, '--redis'), role).toBe('$(AEGISFL_REDIS_URL)');
      expect(c.envFrom).toContainEqual({ configMapRef: { name: cm.metadata.name } });
      // Roles keep their state in Redis: no --state-dir, no PVC, no state volume.
      expect(c.args, role).not.toContain('--state-dir');
      expect(dep.spec.volumeClaimTemplates).toBeUndefined();
      expect(pod.spec.volumes.map((v: Doc) => v.name).sort(), role).toEqual(['keys', 'tmp']);
      expect(pod.spec.volumes.some((v: Doc) => v.persistentVolumeClaim)).toBe(false);
      // Every $(VAR) in the args resolves from the ConfigMap; every flag is in the server's --help.
      for (const ref of (c.args as string[]).flatMap((a) => /^\$\((\w+)\)$/.exec(a)?.[1] ?? []))
        expect(cm.data, `${role} ${ref}`).toHaveProperty(ref);
      for (const f of (c.args as string[]).filter((a) => a.startsWith('--')))
        expect(help, `${role} ${f}`).toContain(`${f} `);

      for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe'])
        expect(c[probe].httpGet, `${role} ${probe}`).toEqual({
          path: '/health',
          port: 'http',
          scheme: 'HTTP',
        });
      expect(pod.spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
      expect(c.securityContext).toMatchObject({
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(pod.spec.automountServiceAccountToken).toBe(false);
      expect(pod.metadata.annotations, role).toMatchObject({
        'prometheus.io/scrape': 'true',
        'prometheus.io/path': '/metrics',
      });
      // The Deployment owns exactly its tier's pods, and spreads them over nodes.
      expect(selects(dep.spec.selector.matchLabels, pod.metadata.labels), role).toBe(true);
      expect(pod.metadata.labels['app.kubernetes.io/component']).toBe(role);
      const [spread] = pod.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution;
      expect(spread.podAffinityTerm.topologyKey).toBe('kubernetes.io/hostname');
      expect(spread.podAffinityTerm.labelSelector.matchLabels).toEqual(dep.spec.selector.matchLabels);
    }

    const coord = named(docs, 'Deployment', '-coordinator');
    const gw = named(docs, 'Deployment', '-gateway');
    expect(coord.spec.replicas).toBe(2);
    expect(coord.spec.template.spec.containers[0].resources.requests.cpu).toBe('1500m');
    expect(gw.spec.template.spec.containers[0].resources.requests.cpu).toBe('500m');
    // The two tiers' selectors do not overlap.
    expect(selects(coord.spec.selector.matchLabels, gw.spec.template.metadata.labels)).toBe(false);
    expect(selects(gw.spec.selector.matchLabels, coord.spec.template.metadata.labels)).toBe(false);
    // The HPA owns the gateway count: the Deployment leaves replicas unset.
    expect(gw.spec.replicas).toBeUndefined();
    // Sockets drain: the pod leaves the endpoints (preStop) well inside its grace period.
    const gwPod = gw.spec.template.spec;
    const drain = Number(gwPod.containers[0].lifecycle.preStop.exec.command[1]);
    expect(drain).toBeGreaterThan(0);
    expect(gwPod.terminationGracePeriodSeconds).toBeGreaterThan(drain + 10);
  });

  it('autoscales the gateways on CPU (2..20 at 70 %), and on connected clients per pod only when asked', () => {
    const docs = renderFiles([SCALE_OUT]);
    const hpa = one(docs, 'HorizontalPodAutoscaler');
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: named(docs, 'Deployment', '-gateway').metadata.name,
    });
    expect(hpa.spec.minReplicas).toBe(2);
    expect(hpa.spec.maxReplicas).toBe(20);
    expect(hpa.spec.metrics).toEqual([
      {
        type: 'Resource',
        resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } },
      },
    ]);

    const withClients = one(
      renderFiles([SCALE_OUT], 'gateway.autoscaling.clientsPerPod=400'),
      'HorizontalPodAutoscaler',
    );
    expect(withClients.spec.metrics).toHaveLength(2);
    expect(withClients.spec.metrics[1]).toEqual({
      type: 'Pods',
      pods: {
        metric: { name: 'aegis_clients_connected' },
        target: { type: 'AverageValue', averageValue: '400' },
      },
    });

    // Without autoscaling: a fixed count, no HPA.
    const fixed = renderFiles([SCALE_OUT], 'gateway.autoscaling.enabled=false');
    expect(fixed.filter((d) => d.kind === 'HorizontalPodAutoscaler')).toHaveLength(0);
    expect(named(fixed, 'Deployment', '-gateway').spec.replicas).toBe(3);
  });

  it('keeps a coordinator and all but one gateway through voluntary disruptions', () => {
    const docs = renderFiles([SCALE_OUT]);
    const coordPods = named(docs, 'Deployment', '-coordinator').spec.template.metadata.labels;
    const gwPods = named(docs, 'Deployment', '-gateway').spec.template.metadata.labels;
    const coordPdb = named(docs, 'PodDisruptionBudget', '-coordinator');
    const gwPdb = named(docs, 'PodDisruptionBudget', '-gateway');
    expect(coordPdb.apiVersion).toBe('policy/v1');
    expect(coordPdb.spec.minAvailable).toBe(1);
    expect(selects(coordPdb.spec.selector.matchLabels, coordPods)).toBe(true);
    expect(selects(coordPdb.spec.selector.matchLabels, gwPods)).toBe(false);
    expect(gwPdb.spec.maxUnavailable).toBe(1);
    expect(selects(gwPdb.spec.selector.matchLabels, gwPods)).toBe(true);
    expect(selects(gwPdb.spec.selector.matchLabels, coordPods)).toBe(false);
  });

  it('routes the Service and the sticky Ingress to the gateways only; scraping covers both tiers', () => {
    const docs = renderFiles([SCALE_OUT], 'metrics.serviceMonitor.enabled=true');
    const coordPods = named(docs, 'Deployment', '-coordinator').spec.template.metadata.labels;
    const gwPods = named(docs, 'Deployment', '-gateway').spec.template.metadata.labels;
    const svc = named(docs, 'Service', '');
    expect(selects(svc.spec.selector, gwPods)).toBe(true);
    expect(selects(svc.spec.selector, coordPods)).toBe(false);
    expect(svc.spec.sessionAffinity).toBe('ClientIP');
    const ing = one(docs, 'Ingress');
    expect(ing.spec.rules[0].http.paths[0].backend.service).toEqual({
      name: svc.metadata.name,
      port: { name: 'http' },
    });
    expect(ing.metadata.annotations).toMatchObject({
      'nginx.ingress.kubernetes.io/affinity': 'cookie',
      'nginx.ingress.kubernetes.io/affinity-mode': 'persistent',
      'nginx.ingress.kubernetes.io/proxy-read-timeout': '3600',
    });

    // The coordinator has no client traffic: a headless Service that lists the standby too, for scraping.
    const coordSvc = named(docs, 'Service', '-coordinator');
    expect(coordSvc.spec.clusterIP).toBe('None');
    expect(coordSvc.spec.publishNotReadyAddresses).toBe(true);
    expect(selects(coordSvc.spec.selector, coordPods)).toBe(true);
    expect(selects(coordSvc.spec.selector, gwPods)).toBe(false);
    const sm = one(docs, 'ServiceMonitor');
    for (const s of [svc, coordSvc]) {
      expect(selects(sm.spec.selector.matchLabels, s.metadata.labels), s.metadata.name).toBe(true);
      expect(s.spec.ports.map((p: Doc) => p.name)).toContain(sm.spec.endpoints[0].port);
    }
    expect(sm.spec.podTargetLabels).toEqual(['app.kubernetes.io/component']);
  });

  it('reads a Redis URL with a password from a Secret instead of the ConfigMap', () => {
    const docs = render(
      'scaleOut.enabled=true',
      'redis.existingSecret=aegis-redis',
      'redis.existingSecretKey=uri',
    );
    expect(one(docs, 'ConfigMap').data).not.toHaveProperty('AEGISFL_REDIS_URL');
    for (const role of ['coordinator', 'gateway']) {
      const [c] = named(docs, 'Deployment', `-${role}`).spec.template.spec.containers;
      expect(argAfter(c, '--redis')).toBe('$(AEGISFL_REDIS_URL)');
      expect(c.env).toEqual([
        { name: 'AEGISFL_REDIS_URL', valueFrom: { secretKeyRef: { name: 'aegis-redis', key: 'uri' } } },
      ]);
    }
  });

  it('with the spot profile: both tiers tolerate spot taints and the gateways shut down inside the notice', () => {
    const docs = renderFiles([SCALE_OUT, SPOT]);
    for (const role of ['coordinator', 'gateway']) {
      const spec = named(docs, 'Deployment', `-${role}`).spec.template.spec;
      expect(
        spec.tolerations.map((t: Doc) => t.key),
        role,
      ).toContain('cloud.google.com/gke-spot');
      expect(
        spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution.length,
      ).toBeGreaterThan(0);
      expect(spec.affinity.podAntiAffinity, role).toBeDefined();
      expect(spec.terminationGracePeriodSeconds, role).toBeLessThan(30);
    }
  });

  it('refuses scale-out values that cannot work, with a message that says what to set', () => {
    const fails = (...set: string[]): string => {
      const r = helm('template', 'aegis', CHART, ...set.flatMap((s) => ['--set', s]));
      expect(r.status, set.join(' ')).not.toBe(0);
      return r.out;
    };
    const missing = fails('scaleOut.enabled=true');
    expect(missing).toContain('scaleOut.enabled needs redis.url');
    expect(missing).toContain('redis.existingSecret');
    expect(fails('scaleOut.enabled=true', 'redis.url=http://r:6379')).toContain(
      'redis.url must be a redis:// or rediss:// URL',
    );
    expect(fails('scaleOut.enabled=true', 'redis.url=redis://r:6379', 'redis.existingSecret=s')).toContain(
      'not both',
    );
    expect(fails('scaleOut.enabled=true', 'redis.url=redis://r:6379', 'flags.state-dir=/x')).toContain(
      'flags.state-dir',
    );
    expect(
      fails(
        'scaleOut.enabled=true',
        'redis.url=redis://r:6379',
        'gateway.autoscaling.enabled=true',
        'gateway.autoscaling.minReplicas=5',
        'gateway.autoscaling.maxReplicas=3',
      ),
    ).toContain('minReplicas must not exceed maxReplicas');
    // replicaCount guards the single server only; scale-out renders no StatefulSet at all.
    expect(fails('replicaCount=2')).toContain('privacy ledger');
    const scaled = render('scaleOut.enabled=true', 'redis.url=rediss://r:6380', 'replicaCount=2');
    expect(scaled.filter((d) => d.kind === 'StatefulSet')).toHaveLength(0);
  });
});
