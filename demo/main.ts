import { io } from 'socket.io-client';
import { join, parseBackends, WAITING_MESSAGE } from '../client/index.ts';
import type { AegisClient, ClientEvents, ClientState } from '../client/client.ts';
import { FLOOR_ATTRIBUTES, parseFloors, type Floors } from '../shared/protocol/floors.ts';
import type { ServerToClientEvents } from '../shared/protocol/messages.ts';
import type { SecAggStatus, ServerStatus } from '../shared/protocol/status.ts';
import { renderChart } from './chart.ts';
import {
  classNames,
  completedText,
  dataText,
  epsilonText,
  phaseText,
  roundText,
  sentText,
  tabStateText,
  trainedText,
  type Sent,
  type TabRounds,
} from './view.ts';

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
  /** Every message this tab sent (event, round, bytes). */
  messages: Sent[];
  /** The status the page shows now (every line on the page is drawn from it), and how many were pushed. */
  status: ServerStatus | null;
  pushes: number;
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
  messages: [],
  status: null,
  pushes: 0,
};
/** This tab's rounds: what the state line is read against. */
const tab: TabRounds = { training: null, accepted: [] };
let clientState: ClientState | null = null;
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
    // ?threads=1 or 2 overrides the default (2 on wasm/cpu with 4+ cores): the trainer split over two workers.
    trainThreads: params.get('threads') === '2' ? 2 : params.get('threads') === '1' ? 1 : undefined,
  });
  probe.client = client;
  const showState = (s: ClientState): void => {
    clientState = s;
    if (s !== 'training') tab.training = null;
    showTab();
  };
  showState(client.state);
  client.on('state', showState);
  client.on('sent', (m) => {
    probe.messages.push(m);
    showSent();
  });
  client.on('refused', (r) => {
    probe.refusals.push(r);
    $('refusal').textContent = `Sat out round ${r.round} (attempt ${r.attempt}): ${r.message}`;
  });
  client.on('backend', (b) => {
    probe.backend = b.backend;
    probe.where = b.where;
    $('backend').textContent = b.backend;
    $('where').textContent =
      b.where === 'main-thread'
        ? 'main thread'
        : b.threads > 1
          ? `${b.threads} Web Workers (each half of every batch)`
          : 'Web Worker';
    $('data').textContent = b.data;
    $('skipped').textContent = b.skipped.length
      ? `Skipped: ${b.skipped.map((s) => `${s.backend} (${s.reason})`).join('; ')}`
      : '';
  });
  client.on('progress', (p) => {
    const done = p.epoch * p.batches + p.batch;
    const total = p.epochs * p.batches;
    $<HTMLProgressElement>('progress').value = done / total;
    if (tab.training !== p.round) {
      tab.training = p.round;
      showTab();
    }
    $('progresstext').textContent =
      `round ${p.round}: epoch ${p.epoch + 1}/${p.epochs}, batch ${p.batch}/${p.batches}${p.loss !== undefined ? `, loss ${p.loss.toFixed(3)}` : ''}`;
  });
  client.on('trained', (t) => {
    probe.roundsTrained++;
    tab.training = null;
    showTab();
    $('localloss').textContent =
      `${t.loss.toFixed(4)} (${(t.trainMs / 1000).toFixed(1)} s, ${t.numExamples} examples${t.threads > 1 ? `, ${t.threads} workers` : ''})`;
  });
  client.on('encoded', (e) => {
    probe.sent.push({
      round: e.round,
      masked: e.masked,
      encodeMs: e.encodeMs,
      maskMs: e.maskMs,
      bytes: e.bytes,
    });
    lastMasked = e.masked;
    showSent();
    $('sent').textContent =
      `${e.masked ? 'masked' : 'unmasked'}, ${(e.bytes / 1024).toFixed(0)} KiB (encode ${e.encodeMs.toFixed(0)} ms${e.masked ? `, mask ${e.maskMs.toFixed(0)} ms` : ''})`;
  });
  client.on('ack', (a) => {
    probe.acks.push({ round: a.round, ok: a.ack.ok, reason: a.ack.ok ? undefined : a.ack.reason });
    if (a.ack.ok) tab.accepted.push(a.round);
    showTab();
  });
  client.on(
    'rejected',
    (r) => ($('error').textContent = `server rejected ${r.event}: ${r.reason} — ${r.message}`),
  );
  client.on('error', (e) => {
    probe.errors.push(e.message);
    $('error').textContent = e.message;
  });
}

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

let lastMasked: boolean | null = null;

/** This tab's lines, read against the server's status. */
function showTab(): void {
  if (clientState === null) return;
  $('state').textContent = tabStateText(clientState, WAITING_MESSAGE, tab, probe.status);
  $('trained').textContent = trainedText(tab, probe.roundsTrained);
}

const size = (b: number): string =>
  b < 1024 * 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / 1024 / 1024).toFixed(2)} MiB`;

function showSent(): void {
  const rounds = probe.messages.map((m) => m.round).filter((r): r is number => r !== null);
  if (rounds.length === 0) return;
  $('leftbrowser').textContent = sentText(probe.messages, Math.max(...rounds), lastMasked);
  const all = probe.messages.reduce((a, m) => a + m.bytes, 0);
  $('leftbrowsertotal').textContent = `${size(all)} in ${probe.messages.length} messages, no training data`;
}

const pctTick = (v: number): string => `${+(v * 100).toFixed(1)}%`;

/** Draws the whole page from one status (pushed, or fetched at load). */
function render(s: ServerStatus): void {
  probe.status = s;
  $('datasource').textContent = dataText(s);
  $('datasource').title = s.dataDescription ?? '';
  $('phase').textContent = phaseText(s);
  $('round').textContent = roundText(s);
  $('roundsdone').textContent = completedText(s);
  const g = $('global');
  g.dataset.phase = s.phase;
  g.dataset.round = String(s.round);
  g.dataset.completed = String(s.roundsCompleted);
  g.dataset.reported = String(s.reported);
  g.dataset.selected = String(s.selected);
  $('connected').textContent = `${s.clients.connected} (${s.clients.ready} ready)`;
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
  $('epsilons').textContent = epsilonText(s) ?? '–';
  $('epsilonslabel').hidden = $('epsilons').hidden = $('epsmeter').hidden = !p.enabled;
  if (p.enabled) {
    const m = $<HTMLMeterElement>('epsmeter');
    m.max = Math.max(p.epsilonBudget, 1e-9);
    m.value = p.epsilon;
    m.high = 0.8 * m.max;
  }
  $('stopreason').textContent = s.stopReason ?? '';
  $('epsiloncard').hidden = !p.enabled;
  // Every chart starts at round 0 (the initial model), so their x axes line up.
  const x = { xMin: 0, xLabel: 'round' };
  if (p.enabled) {
    const eps = [[0, 0] as const, ...s.history.map((h) => [h.round, h.epsilon ?? 0] as const)];
    renderChart($<SVGSVGElement>('epsilon'), [{ label: 'epsilon', color: '#7048e8', points: eps }], {
      ...x,
      yMin: 0,
      yMax: Math.max(p.epsilonBudget, 1e-9),
      yLabel: 'ε (top: budget)',
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
    { ...x, yBounds: [0, 1], yFormat: pctTick, yLabel: 'test accuracy' },
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
    { ...x, yBounds: [0, Infinity], yLabel: 'test loss' },
  );
  renderChart(
    $<SVGSVGElement>('clients'),
    [{ label: 'clients', color: '#2b8a3e', points: s.history.map((h) => [h.round, h.clients] as const) }],
    { ...x, yMin: 0, yIntegers: true, yLabel: 'updates' },
  );
  renderClasses(s);
  showTab();
}

/** Per-class results: the confusion matrix, and on CIFAR-10 a strip of test images with their predictions. */
function renderClasses(s: ServerStatus): void {
  const e = s.evaluation;
  $('classescard').hidden = !e;
  if (!e) return;
  $('evalround').textContent = e.round === 0 ? 'initial model' : `after round ${e.round}`;
  const names = classNames(s, e.numClasses);
  const table = $<HTMLTableElement>('confusion');
  const head = ['true \\ predicted', ...names, 'accuracy'];
  const rows: HTMLTableRowElement[] = [row(head.map((h) => cell('th', h)))];
  e.confusion.forEach((counts, t) => {
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    const acc = e.perClass[t];
    rows.push(
      row([
        cell('th', names[t]),
        ...counts.map((c, p) => {
          const td = cell('td', String(c));
          const share = c / total;
          td.style.background = p === t ? `rgba(47,111,237,${share})` : `rgba(217,72,15,${share})`;
          if (share > 0.55) td.style.color = '#fff';
          if (p === t) td.className = 'diag';
          return td;
        }),
        cell('td', acc === null ? '–' : `${Math.round(acc * 100)}%`),
      ]),
    );
  });
  table.replaceChildren(...rows);
  const strip = $('strip');
  strip.hidden = s.data !== 'cifar10' || e.samples.length === 0;
  if (!strip.hidden) void renderStrip(e.samples, names);
}

function cell(kind: 'th' | 'td', text: string): HTMLTableCellElement {
  const c = document.createElement(kind);
  c.textContent = text;
  return c;
}
function row(cells: HTMLTableCellElement[]): HTMLTableRowElement {
  const r = document.createElement('tr');
  r.append(...cells);
  return r;
}

/** The test images are fixed for the run: fetched once. */
let sampleImages: Promise<Uint8Array> | null = null;

async function renderStrip(samples: { label: number; pred: number }[], names: string[]): Promise<void> {
  sampleImages ??= fetch('/api/samples').then(async (r) => new Uint8Array(await r.arrayBuffer()));
  const bytes = await sampleImages;
  const figs = samples.slice(0, Math.floor(bytes.length / 3072)).map(({ label, pred }, i) => {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 32;
    const img = new ImageData(32, 32);
    for (let k = 0; k < 1024; k++) {
      img.data.set(bytes.subarray(i * 3072 + k * 3, i * 3072 + k * 3 + 3), k * 4);
      img.data[k * 4 + 3] = 255;
    }
    canvas.getContext('2d')?.putImageData(img, 0, 0);
    const fig = document.createElement('figure');
    fig.className = pred === label ? 'right' : 'wrong';
    const cap = document.createElement('figcaption');
    cap.textContent = pred === label ? names[pred] : `${names[pred]} (is ${names[label]})`;
    fig.append(canvas, cap);
    return fig;
  });
  $('strip').replaceChildren(...figs);
}

/** Status arrives over a read-only observer socket, pushed when it changes; no polling. */
function observe(): void {
  const s = io(location.origin, {
    transports: ['websocket'],
    auth: { observe: true },
    reconnectionDelayMax: 5000,
  });
  const onStatus: ServerToClientEvents['status'] = (st) => {
    probe.pushes++;
    render(st);
  };
  s.on('status', onStatus);
  s.on('connect', () => ($('live').textContent = 'live: the server pushes every change'));
  s.on('disconnect', () => ($('live').textContent = 'server unreachable: reconnecting…'));
  s.on('connect_error', () => ($('live').textContent = 'server unreachable: reconnecting…'));
}

$('join').addEventListener('click', startClient);
if (params.get('join') === '1') startClient();
observe();
