/** A dependency-free SVG line chart: enough for live per-round curves. */
export interface Series {
  label: string;
  color: string;
  points: readonly (readonly [number, number])[];
}

export interface ChartOptions {
  yMin?: number;
  yMax?: number;
  yFormat?: (v: number) => string;
  /** Only whole-number ticks on the y axis (counts). */
  yIntegers?: boolean;
  xLabel?: string;
}

/** "Nice" tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toFixed(12)));
  return ticks;
}

const NS = 'http://www.w3.org/2000/svg';
const W = 640, H = 240, L = 48, R = 12, T = 12, B = 32;

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export function renderChart(svg: SVGSVGElement, series: readonly Series[], opts: ChartOptions = {}): void {
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  svg.replaceChildren();
  if (pts.length === 0) {
    svg.append(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'waiting for the first round…'));
    return;
  }
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(Math.max(...xs), x0 + 1);
  const y0 = opts.yMin ?? Math.min(...ys), y1 = Math.max(opts.yMax ?? Math.max(...ys), y0 + 1e-6);
  const sx = (x: number): number => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number): number => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const fmt = opts.yFormat ?? ((v: number) => String(v));
  for (const t of niceTicks(y0, y1).filter((v) => !opts.yIntegers || Number.isInteger(v))) {
    svg.append(el('line', { class: 'grid', x1: L, x2: W - R, y1: sy(t), y2: sy(t) }));
    svg.append(el('text', { x: L - 6, y: sy(t) + 4, 'text-anchor': 'end' }, fmt(t)));
  }
  for (const t of niceTicks(x0, x1).filter(Number.isInteger)) {
    svg.append(el('text', { x: sx(t), y: H - B + 16, 'text-anchor': 'middle' }, String(t)));
  }
  svg.append(el('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  svg.append(el('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }));
  if (opts.xLabel) svg.append(el('text', { x: W - R, y: H - 4, 'text-anchor': 'end' }, opts.xLabel));
  for (const s of series) {
    const good = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (good.length === 0) continue;
    svg.append(el('polyline', { class: 'line', stroke: s.color, points: good.map(([x, y]) => `${sx(x)},${sy(y)}`).join(' ') }));
    for (const [x, y] of good) svg.append(el('circle', { class: 'dot', cx: sx(x), cy: sy(y), r: 3.5, fill: s.color }));
  }
}
