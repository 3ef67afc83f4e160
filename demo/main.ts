import { join, parseBackends, WAITING_MESSAGE } from '../client/index.ts';
import type { AegisClient, ClientEvents } from '../client/client.ts';
import { FLOOR_ATTRIBUTES, parseFloors, type Floors } from '../shared/protocol/floors.ts';
import { roundLabel } from '../shared/protocol/round-label.ts';
import type { SecAggStatus, ServerStatus } from '../shared/protocol/status.ts';
import { renderChart } from './chart.ts';

const $ = <T extends Element = HTMLElement>(id: string): T => document.getElementById(id) as unknown as T;
const params = new URLSearchParams(location.search);

/** What the e2e tests read back from the page. */
interface PageProbe {
  client: AegisClient | null;
  backend: string | null;
  where: string | null;
  roundsTrained: number;
  acks: { round: number; ok: boolean; reason?: string }[];
  /** Each update as it left the tab: masked or not, and what encoding and masking cost. */
  sent: { round: number; masked: boolean; encodeMs: number; maskMs: number; bytes: number }[];
  errors: string[];
  /** Rounds this tab sat out because their plan is below the page's floors. */
  refusals: ClientEvents['refused'][];
}
const probe: PageProbe = {
  client: null,
  backend: null,
  where: null,
  roundsTrained: 0,
  acks: [],
  sent: [],
  errors: [],
  refusals: [],
};
(window as unknown as { __aegis: PageProbe }).__aegis = probe;

/**
 * The page's floors from the URL, named like the embed's data-* attributes without "data-" (for testing:
 * ?secagg=optional, ?min-cohort=5, ?min-threshold=3, ?min-noise=0.8, ?max-clip=1.5).
 */
function floorsFromUrl(): Floors {
  const attrs: Record<string, string> = {};
  for (const attr of Object.values(FLOOR_ATTRIBUTES)) {
    const v = params.get(attr.slice('data-'.length));
    if (v !== null) attrs[attr] = v;
  }
  return parseFloors(attrs);
}

function describeFloors(f: Floors): string {
  return [
    f.requireSecAgg ? 'secure aggregation required' : 'secure aggregation optional',
    `cohort ≥ ${f.minCohort}`,
    `threshold ≥ ${f.minThreshold}`,
    f.minNoiseMultiplier > 0 ? `DP noise ≥ ${f.minNoiseMultiplier}` : 'no DP floor',
    f.maxClipNorm !== null ? `clip ≤ ${f.maxClipNorm}` : null,
  ]
    .filter(Boolean)
    .join(', ');
}

function startClient(): void {
  const btn = $<HTMLButtonElement>('join');
  btn.disabled = true;
  btn.textContent = 'Joined';
  let backends;
  let floors: Floors;
  try {
    backends = parseBackends(params.get('backends'));
    floors = floorsFromUrl();
  } catch (e) {
    $('error').textContent = `not joining: ${(e as Error).message}`;
    probe.errors.push((e as Error).message);
    btn.textContent = 'Not joined';
    return;
  }
  $('floors').textContent = describeFloors(floors);
  // The browser profile is the participant: one session for all its tabs, kept across reloads, and one tab
  // at a time takes part (join's defaults; storage disabled: a new session per load).
  const client = join({
    serverUrl: location.origin,
    source: params.get('source') === 'swarm' ? 'swarm' : 'demo',
    backends,
    floors,
    // A server with --join-token-key needs a join token (?token=, as a site puts it in data-token).
    token: params.get('token') ?? undefined,
  });
  probe.client = client;
  const showState = (s: string): void => {
    $('state').textContent = s === 'waiting' ? `waiting: ${WAITING_MESSAGE}` : s;
  };
  showState(client.state);
  client.on('state', showState);
  client.on('refused', (r) => {
    probe.refusals.push(r);
    $('refusal').textContent = `Sat out round ${r.round} (attempt ${r.attempt}): ${r.message}`;
  });
  client.on('backend', (b) => {
    probe.backend = b.backend;
    probe.where = b.where;
    $('backend').textContent = b.backend;
    $('where').textContent = b.where === 'worker' ? 'Web Worker' : 'main thread';
    $('data').textContent = b.data;
    $('skipped').textContent = b.skipped.length
      ? `Skipped: ${b.skipped.map((s) => `${s.backend} (${s.reason})`).join('; ')}`
      : '';
  });
  client.on('progress', (p) => {
    const done = p.epoch * p.batches + p.batch;
    const total = p.epochs * p.batches;
    $<HTMLProgressElement>('progress').value = done / total;
    $('progresstext').textContent =
      `round ${p.round}: epoch ${p.epoch + 1}/${p.epochs}, batch ${p.batch}/${p.batches}${p.loss !== undefined ? `, loss ${p.loss.toFixed(3)}` : ''}`;
  });
  client.on('trained', (t) => {
    probe.roundsTrained++;
    $('trained').textContent = String(probe.roundsTrained);
    $('localloss').textContent =
      `${t.loss.toFixed(4)} (${(t.trainMs / 1000).toFixed(1)} s, ${t.numExamples} examples)`;
  });
  client.on('encoded', (e) => {
    probe.sent.push({
      round: e.round,
      masked: e.masked,
      encodeMs: e.encodeMs,
      maskMs: e.maskMs,
      bytes: e.bytes,
    });
    $('sent').textContent =
      `${e.masked ? 'masked' : 'unmasked'}, ${(e.bytes / 1024).toFixed(0)} KiB (encode ${e.encodeMs.toFixed(0)} ms${e.masked ? `, mask ${e.maskMs.toFixed(0)} ms` : ''})`;
  });
  client.on('ack', (a) =>
    probe.acks.push({ round: a.round, ok: a.ack.ok, reason: a.ack.ok ? undefined : a.ack.reason }),
  );
  client.on(
    'rejected',
    (r) => ($('error').textContent = `server rejected ${r.event}: ${r.reason} — ${r.message}`),
  );
  client.on('error', (e) => {
    probe.errors.push(e.message);
    $('error').textContent = e.message;
  });
}

const pct = (v: number): string => `${Math.round(v * 100)}%`;

/** k, t and how many colluding clients they withstand (fewer if the server splits its unmask requests). */
function secaggText(g: SecAggStatus): string {
  if (!g.enabled) return 'off';
  const parts: string[] = [];
  if (g.k !== null) {
    const n = g.toleratedColluders ?? 0;
    const split = g.toleratedColludersSplit;
    parts.push(
      `tolerates up to ${n} colluding client${n === 1 ? '' : 's'}` +
        (split !== null ? ` (${split} if the server splits its unmask requests)` : ''),
    );
  }
  if (g.maliciousServer)
    parts.push(
      `malicious-server mode${g.splitBound !== null ? `: split requests expose a client with probability ${g.splitBound === 0 ? '0' : `< ${g.splitBound.toExponential(1)}`}` : ''}`,
    );
  if (g.phase) parts.push(`phase ${g.phase}`);
  const head = g.k !== null ? `on (${g.k} neighbours, threshold ${g.t})` : 'on';
  return parts.length ? `${head}, ${parts.join(', ')}` : head;
}

async function refresh(): Promise<void> {
  let s: ServerStatus;
  try {
    const res = await fetch('/api/status', { cache: 'no-store' });
    s = (await res.json()) as ServerStatus;
  } catch {
    $('phase').textContent = 'server unreachable';
    return;
  }
  $('phase').textContent =
    s.phase === 'training' ? `training (${s.reported}/${s.selected} reported)` : s.phase;
  $('round').textContent = roundLabel(s);
  $('connected').textContent = String(s.clients.connected);
  $('backends').textContent =
    Object.entries(s.clients.byBackend)
      .map(([b, n]) => `${b}: ${n}`)
      .join(', ') || '–';
  $('model').textContent = `${s.model.name} (${s.model.numParams.toLocaleString()} parameters)`;
  $('evalbackend').textContent = s.evalBackend;
  $('secagg').textContent = secaggText(s.secagg);
  const p = s.privacy;
  $('privacy').textContent = p.enabled
    ? `z = ${p.noiseMultiplier}, clip ${p.clipNorm.toPrecision(3)}${p.adaptiveClipping ? ' (adaptive)' : ''}, δ ${p.delta}, ${p.q < 1 ? `Poisson sampling q = ${p.q.toPrecision(3)}` : 'q = 1 (no sampling amplification claimed)'}`
    : 'off';
  // Two figures: the released models' users get the amplification of sampling at q; the server, which
  // sees each cohort, does not (q = 1). They coincide when q = 1.
  $('epsilons').textContent = p.enabled
    ? `ε released models ${p.epsilon.toFixed(2)} · ε vs server ${p.epsilonAgainstServer.toFixed(2)} (budget ${p.epsilonBudget})`
    : '–';
  $('epsilonslabel').hidden = $('epsilons').hidden = !p.enabled;
  $('stopreason').textContent = s.stopReason ?? '';
  $('epsiloncard').hidden = !p.enabled;
  if (p.enabled) {
    const eps = [[0, 0] as const, ...s.history.map((h) => [h.round, h.epsilon ?? 0] as const)];
    renderChart($<SVGSVGElement>('epsilon'), [{ label: 'epsilon', color: '#7048e8', points: eps }], {
      yMin: 0,
      yMax: Math.max(p.epsilonBudget, 1e-9),
      xLabel: 'round',
    });
  }
  const first = s.initial ? [[0, s.initial.accuracy] as const] : [];
  const firstLoss = s.initial ? [[0, s.initial.loss] as const] : [];
  renderChart(
    $<SVGSVGElement>('acc'),
    [
      {
        label: 'accuracy',
        color: '#2f6fed',
        points: [...first, ...s.history.map((h) => [h.round, h.accuracy] as const)],
      },
    ],
    { yMin: 0, yMax: 1, yFormat: pct, xLabel: 'round' },
  );
  renderChart(
    $<SVGSVGElement>('loss'),
    [
      {
        label: 'loss',
        color: '#d9480f',
        points: [...firstLoss, ...s.history.map((h) => [h.round, h.loss] as const)],
      },
    ],
    { yMin: 0, xLabel: 'round' },
  );
  renderChart(
    $<SVGSVGElement>('clients'),
    [{ label: 'clients', color: '#2b8a3e', points: s.history.map((h) => [h.round, h.clients] as const) }],
    { yMin: 0, yIntegers: true, xLabel: 'round' },
  );
}

$('join').addEventListener('click', startClient);
if (params.get('join') === '1') startClient();
void refresh();
setInterval(() => void refresh(), 1500);
