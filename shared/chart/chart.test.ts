import { describe, expect, it } from 'vitest';
import { niceTicks } from './chart.ts';

describe('niceTicks', () => {
  it('steps by 1, 2 or 5 times a power of ten and covers the range', () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0, 2.33)).toEqual([0, 0.5, 1, 1.5, 2]);
    expect(niceTicks(0, 10)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(1.2, 1.9)).toEqual([1.2, 1.4, 1.6, 1.8]); // raw step 0.14 -> 0.2
  });
  it('degenerate ranges give one tick', () => {
    expect(niceTicks(3, 3)).toEqual([3]);
  });
});

describe('chart rendering without a DOM', () => {
  it('draws one polyline and a dot per point per series, and a standalone SVG', async () => {
    const { chartNodes, chartSvg } = await import('./chart.ts');
    const series = [
      {
        label: 'a',
        color: '#123',
        points: [
          [1, 0.2],
          [2, 0.5],
          [3, NaN],
        ] as [number, number][],
      },
    ];
    const nodes = chartNodes(series, { yMin: 0, yMax: 1 });
    expect(nodes.filter((n) => n.name === 'polyline')).toHaveLength(1);
    expect(nodes.filter((n) => n.name === 'circle')).toHaveLength(2);
    const svg = chartSvg(series, { yMin: 0, yMax: 1 }, 'acc <1>');
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg).toContain('<title>acc &lt;1></title>');
    expect(svg.match(/<circle /g)).toHaveLength(2);
    expect(chartNodes([], {})[0].text).toMatch(/waiting/);
    const captioned = chartSvg(series, { caption: ['model tiny, 10 clients', 'lr <0.1>'] }, 'acc');
    expect(captioned).toContain('<text class="caption" x="8" y="256">model tiny, 10 clients</text>');
    expect(captioned).toContain('>lr &lt;0.1></text>');
    expect(captioned).toMatch(/height="280"/);
  });
});

describe('y range fitted to the data', () => {
  it('every point lies within the first and last tick (the loss chart once had its first point above the top)', async () => {
    const { yDomain } = await import('./chart.ts');
    const loss = [2.33, 2.1, 1.9, 1.72];
    const d = yDomain(loss, { yMin: 0 });
    expect(d.lo).toBe(0);
    expect(d.ticks[0]).toBe(0);
    expect(d.ticks.at(-1)).toBeGreaterThanOrEqual(Math.max(...loss));
    expect(d.hi).toBe(d.ticks.at(-1));
  });

  it('accuracy in a narrow band fills the chart, within [0, 1]', async () => {
    const { yDomain } = await import('./chart.ts');
    const acc = [0.11, 0.14, 0.17, 0.19];
    const d = yDomain(acc, { yBounds: [0, 1] });
    expect(d.lo).toBeLessThanOrEqual(0.11);
    expect(d.hi).toBeGreaterThanOrEqual(0.19);
    expect(d.hi - d.lo).toBeLessThan(0.25); // not the fixed 0-100% axis, where it sat in the bottom fifth
    expect(d.ticks.length).toBeGreaterThanOrEqual(3);
    for (const t of d.ticks) expect(t).toBeGreaterThanOrEqual(0);
    const high = yDomain([0.97, 0.99, 1], { yBounds: [0, 1] });
    expect(high.hi).toBe(1);
    expect(high.ticks.at(-1)).toBe(1);
  });

  it('integer ticks for counts, and one value gets a range around it', async () => {
    const { yDomain } = await import('./chart.ts');
    const c = yDomain([3, 3, 3], { yMin: 0, yIntegers: true });
    expect(c.ticks.every(Number.isInteger)).toBe(true);
    expect(c.hi).toBeGreaterThanOrEqual(3);
    const one = yDomain([0.5]);
    expect(one.lo).toBeLessThan(0.5);
    expect(one.hi).toBeGreaterThan(0.5);
  });

  it('xMin sets a shared origin; axis labels are drawn', async () => {
    const { chartNodes } = await import('./chart.ts');
    const nodes = chartNodes([{ label: 'c', color: '#000', points: [[1, 4]] as [number, number][] }], {
      xMin: 0,
      xLabel: 'round',
      yLabel: 'clients',
    });
    const xTicks = nodes.filter((n) => n.name === 'text' && n.attrs.y === 240 - 32 + 16).map((n) => n.text);
    expect(xTicks[0]).toBe('0');
    const texts = nodes.filter((n) => n.name === 'text').map((n) => n.text);
    expect(texts).toContain('round');
    expect(texts).toContain('clients');
    // The dot at x = 1 is right of the axis at x = 0.
    const dot = nodes.find((n) => n.name === 'circle')!;
    expect(Number(dot.attrs.cx)).toBeGreaterThan(60);
  });
});
