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
