/**
 * npm run bench:train [-- --backends webgpu,webgl,cpu --model small --examples 256 --reps 3]
 * Runs e2e/bench/train.html in headless chromium: for each backend, examples/s of our client training
 * path (LocalTrainer, as the Web Worker runs it) vs a bare tfjs model.fit loop on the same model and data,
 * interleaved in one run. Prints a table and writes bench-results/train.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { launchChromium } from './browser.ts';
import { startServerProcess } from './server-process.ts';

const { values } = parseArgs({
  options: {
    backends: { type: 'string', default: 'webgpu,webgl,wasm,cpu' },
    model: { type: 'string', default: 'small' },
    examples: { type: 'string', default: '256' },
    reps: { type: 'string', default: '3' },
  },
});

interface BenchResult { backend: string; model: string; examples: number; epochs: number; batchSize: number; ours: number[]; bare: number[]; error?: string }

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const srv = await startServerProcess(['--model', 'tiny', '--min-clients', '1000', '--min-updates', '1', '--clients-per-round', '1000', '--test-examples', '10', '--quiet']);
const browser = await launchChromium();
const rows: (BenchResult & { oursMedian?: number; bareMedian?: number; ratio?: number })[] = [];
try {
  for (const backend of values.backends!.split(',')) {
    const page = await (await browser.newContext()).newPage();
    const q = new URLSearchParams({ backend, model: values.model!, examples: values.examples!, reps: values.reps! });
    process.stdout.write(`bench:train ${backend} (${values.model}, ${values.examples} examples, ${values.reps} reps)… `);
    await page.goto(`${srv.url}/e2e/bench/train.html?${q}`);
    await page.waitForFunction(() => (window as unknown as { __bench?: unknown }).__bench !== undefined, null, { timeout: 900_000, polling: 1000 });
    const r = (await page.evaluate(() => (window as unknown as { __bench: unknown }).__bench)) as BenchResult;
    await page.context().close();
    if (r.error) {
      console.log(`skipped: ${r.error}`);
      rows.push(r);
      continue;
    }
    const o = median(r.ours), b = median(r.bare);
    rows.push({ ...r, oursMedian: o, bareMedian: b, ratio: o / b });
    console.log(`ours ${o.toFixed(1)} ex/s, bare ${b.toFixed(1)} ex/s, ratio ${(o / b).toFixed(3)}`);
  }
} finally {
  await browser.close();
  await srv.stop();
}
console.log('\nbackend  ours ex/s  bare ex/s  ratio (ours/bare)');
for (const r of rows) {
  if (r.ratio === undefined) console.log(`${r.backend.padEnd(8)} ${'–'.padStart(9)} ${'–'.padStart(10)}  ${r.error}`);
  else console.log(`${r.backend.padEnd(8)} ${r.oursMedian!.toFixed(1).padStart(9)} ${r.bareMedian!.toFixed(1).padStart(10)}  ${r.ratio.toFixed(3)}`);
}
mkdirSync('bench-results', { recursive: true });
writeFileSync('bench-results/train.json', JSON.stringify({ date: new Date().toISOString(), rows }, null, 2));
