import { chartNodes, SVG_NS, type ChartOptions, type Series } from '../shared/chart/chart.ts';

export type { ChartOptions, Series };

/** Draws a chart's nodes into an <svg> element (the only DOM part of the chart). */
export function renderChart(svg: SVGSVGElement, series: readonly Series[], opts: ChartOptions = {}): void {
  svg.replaceChildren(
    ...chartNodes(series, opts).map((n) => {
      const e = document.createElementNS(SVG_NS, n.name);
      for (const [k, v] of Object.entries(n.attrs)) e.setAttribute(k, String(v));
      if (n.text !== undefined) e.textContent = n.text;
      return e;
    }),
  );
}
