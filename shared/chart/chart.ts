/**
 * A dependency-free SVG line chart as pure data (ChartNode[]) and as standalone SVG text: the demo page
 * draws the nodes into the DOM, Node writes the text (simulation and benchmark plots).
 */
export interface Series {
  label: string;
  color: string;
  points: readonly (readonly [number, number])[];
}

export interface ChartOptions {
  /** Fixed y range ends; an end left out is fitted to the data (widened to a nice tick). */
  yMin?: number;
  yMax?: number;
  /** Bounds a fitted y range stays within (e.g. [0, 1] for accuracy). */
  yBounds?: readonly [number, number];
  yFormat?: (v: number) => string;
  /** Only whole-number ticks on the y axis (counts). */
  yIntegers?: boolean;
  /** Where the x axis starts (e.g. 0, round 0, so charts of one run line up); default the data's least x. */
  xMin?: number;
  xLabel?: string;
  /** Lines printed under the plot (chartSvg only): the run's configuration, so a chart explains itself. */
  caption?: readonly string[];
  yLabel?: string;
}

/** "Nice" tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    ticks.push(Number(v.toFixed(12)));
  return ticks;
}

/**
 * The y range a chart draws: fixed ends as given, the others fitted to the data with a little margin and
 * widened to the enclosing ticks, so every point lies between the first and the last tick.
 */
export function yDomain(
  ys: readonly number[],
  opts: Pick<ChartOptions, 'yMin' | 'yMax' | 'yBounds' | 'yIntegers'> = {},
): { lo: number; hi: number; ticks: number[] } {
  const [bLo, bHi] = opts.yBounds ?? [-Infinity, Infinity];
  const dLo = Math.min(...ys);
  const dHi = Math.max(...ys);
  const pad = (dHi - dLo) * 0.05 || Math.abs(dHi) * 0.05 || 0.5;
  let lo = opts.yMin ?? Math.max(bLo, dLo - pad);
  let hi = opts.yMax ?? Math.min(bHi, dHi + pad);
  if (!(hi > lo)) hi = lo + (opts.yIntegers ? 1 : 1e-6);
  let step = tickStep(lo, hi);
  if (opts.yIntegers) step = Math.max(1, Math.round(step));
  if (opts.yMin === undefined) lo = Math.max(bLo, Math.floor(lo / step + 1e-9) * step);
  if (opts.yMax === undefined) hi = Math.min(bHi, Math.ceil(hi / step - 1e-9) * step);
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    ticks.push(Number(v.toFixed(12)));
  return { lo, hi, ticks };
}

function tickStep(lo: number, hi: number, count = 5): number {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((st) => st >= raw) ?? 10 * mag;
}

export const SVG_NS = 'http://www.w3.org/2000/svg';
const W = 640,
  H = 240,
  L = 60,
  R = 12,
  T = 12,
  B = 32;

/** One SVG element of a chart, independent of the DOM (the page draws it; Node writes it as text). */
export interface ChartNode {
  name: 'text' | 'line' | 'polyline' | 'circle';
  attrs: Record<string, string | number>;
  text?: string;
}

export function chartNodes(series: readonly Series[], opts: ChartOptions = {}): ChartNode[] {
  const out: ChartNode[] = [];
  const el = (name: ChartNode['name'], attrs: ChartNode['attrs'], text?: string) =>
    out.push({ name, attrs, text });
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (pts.length === 0) {
    el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'waiting for the first round…');
    return out;
  }
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const x0 = Math.min(opts.xMin ?? Infinity, ...xs),
    x1 = Math.max(Math.max(...xs), x0 + 1);
  const { lo: y0, hi: y1, ticks: yTicks } = yDomain(ys, opts);
  const sx = (x: number): number => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number): number => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const fmt = opts.yFormat ?? ((v: number) => String(v));
  for (const t of yTicks.filter((v) => !opts.yIntegers || Number.isInteger(v))) {
    el('line', { class: 'grid', x1: L, x2: W - R, y1: sy(t), y2: sy(t) });
    el('text', { x: L - 6, y: sy(t) + 4, 'text-anchor': 'end' }, fmt(t));
  }
  for (const t of niceTicks(x0, x1).filter(Number.isInteger))
    el('text', { x: sx(t), y: H - B + 16, 'text-anchor': 'middle' }, String(t));
  el('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B });
  el('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B });
  if (opts.xLabel) el('text', { x: W - R, y: H - 4, 'text-anchor': 'end' }, opts.xLabel);
  if (opts.yLabel)
    el(
      'text',
      {
        x: 14,
        y: T + (H - T - B) / 2,
        'text-anchor': 'middle',
        transform: `rotate(-90 14 ${T + (H - T - B) / 2})`,
      },
      opts.yLabel,
    );
  for (const s of series) {
    const good = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (good.length === 0) continue;
    el('polyline', {
      class: 'line',
      stroke: s.color,
      points: good.map(([x, y]) => `${sx(x)},${sy(y)}`).join(' '),
    });
    for (const [x, y] of good) el('circle', { class: 'dot', cx: sx(x), cy: sy(y), r: 3.5, fill: s.color });
  }
  return out;
}

const esc = (v: string | number): string =>
  String(v).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');

/** A standalone SVG document (styles inline), e.g. for the simulation's accuracy plot. */
export function chartSvg(series: readonly Series[], opts: ChartOptions = {}, title = ''): string {
  const style =
    '.grid{stroke:#e3e6ee}.axis{stroke:#8a93a6}.line{fill:none;stroke-width:2}text{font:12px sans-serif;fill:#3b4252}';
  const legend = series
    .map(
      (s, i) =>
        `<text x="${L + 8}" y="${T + 14 + i * 16}" style="fill:${esc(s.color)}">${esc(s.label)}</text>`,
    )
    .join('');
  const body = chartNodes(series, opts)
    .map(
      (n) =>
        `<${n.name} ${Object.entries(n.attrs)
          .map(([k, v]) => `${k}="${esc(v)}"`)
          .join(' ')}${n.text === undefined ? '/>' : `>${esc(n.text)}</${n.name}>`}`,
    )
    .join('\n');
  const lines = opts.caption ?? [];
  const h = H + (lines.length ? lines.length * 16 + 8 : 0);
  const caption = lines
    .map((c, i) => `<text class="caption" x="8" y="${H + 16 + i * 16}">${esc(c)}</text>`)
    .join('');
  return `<svg xmlns="${SVG_NS}" viewBox="0 0 ${W} ${h}" width="${W}" height="${h}"><title>${esc(title)}</title><style>${style}</style><rect width="100%" height="100%" fill="#fff"/>\n${body}\n${legend}${caption}</svg>\n`;
}
