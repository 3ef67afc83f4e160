/**
 * npm run bench:train [-- --backends webgpu,webgl,wasm,wasm-threaded,cpu --model small --examples 256 --reps 3 --batch-size 32
 *   --node-cpu-examples 64]
 * Runs e2e/bench/train.html in headless chromium: for each backend, examples/s of our client training
 * path (LocalTrainer, as the Web Worker runs it) vs a bare tfjs model.fit loop on the same model and data,
 * interleaved in one run. `wasm` is the page as most sites serve it (one thread); `wasm-threaded` is the
 * same page cross-origin isolated (COOP/COEP headers), where tfjs would load its multi-threaded wasm build
 * (client/backends-browser.ts keeps it single-threaded for now); the threads column says what ran.
 * Then the same LocalTrainer in this Node process on wasm (with our gradient kernels) and on tfjs' cpu
 * backend, the baseline the wasm speed-up is stated against. Prints a table and writes
 * bench-results/train.json.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import '../client/wasm-backend.ts';
import { LocalTrainer, type PairTimes } from '../client/trainer.ts';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { buildModel } from '../shared/model/build.ts';
import { modelByName } from '../shared/model/spec.ts';
import { getFlatWeights } from '../shared/model/weights.ts';
import { launchChromium } from './browser.ts';
import { serveStatic } from './static-server.ts';

const { values } = parseArgs({
  options: {
    backends: { type: 'string', default: 'webgpu,webgl,wasm,wasm-threaded,cpu' },
    model: { type: 'string', default: 'small' },
    examples: { type: 'string', default: '256' },
    reps: { type: 'string', default: '3' },
    'batch-size': { type: 'string', default: '32' },
    // tfjs' Node cpu backend trains a few examples per second: fewer examples keep the run short.
    'node-cpu-examples': { type: 'string', default: '64' },
  },
});

interface BenchResult {
  backend: string;
  model: string;
  examples: number;
  epochs: number;
  batchSize: number;
  ours: number[];
  bare: number[];
  isolated: boolean;
  threads?: number;
  oneWorker?: number[];
  twoWorkers?: number[];
  twoApart?: number[];
  pairThreads?: number;
  pairStepMs?: PairTimes;
  error?: string;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
if (!existsSync('dist/e2e/bench/train.html'))
  throw new Error('dist/ is missing: npm run bench:train builds it');
// The built page from two origins: as most sites serve it, and cross-origin isolated (multi-threaded wasm).
const plain = await serveStatic('dist', {});
const isolated = await serveStatic('dist', {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
});
const browser = await launchChromium();
const rows: (BenchResult & { oursMedian?: number; bareMedian?: number; ratio?: number })[] = [];
try {
  for (const name of values.backends!.split(',')) {
    const threaded = name === 'wasm-threaded';
    const backend = threaded ? 'wasm' : name;
    const page = await (await browser.newContext()).newPage();
    const q = new URLSearchParams({
      backend,
      model: values.model!,
      examples: values.examples!,
      reps: values.reps!,
      batch: values['batch-size']!,
      // The one-worker vs two-worker arms: on the plain page's wasm, the CPU path visitors fall back to.
      workers: name === 'wasm' ? '1' : '0',
    });
    process.stdout.write(
      `bench:train ${name} (${values.model}, ${values.examples} examples, ${values.reps} reps)… `,
    );
    await page.goto(`${(threaded ? isolated : plain).url}/e2e/bench/train.html?${q}`);
    await page.waitForFunction(
      () => (window as unknown as { __bench?: unknown }).__bench !== undefined,
      null,
      { timeout: 900_000, polling: 1000 },
    );
    const got = (await page.evaluate(
      () => (window as unknown as { __bench: unknown }).__bench,
    )) as BenchResult;
    const r = { ...got, backend: name };
    await page.context().close();
    // Isolated but one thread means tfjs' threaded build could not start or chose 1 thread: the table says so.
    if (threaded && !r.error && !r.isolated) r.error = 'page not cross-origin isolated: no threaded wasm';
    if (r.error) {
      console.log(`skipped: ${r.error}`);
      rows.push(r);
      continue;
    }
    const o = median(r.ours),
      b = median(r.bare);
    rows.push({ ...r, oursMedian: o, bareMedian: b, ratio: o / b });
    console.log(
      `ours ${o.toFixed(1)} ex/s, bare ${b.toFixed(1)} ex/s, ratio ${(o / b).toFixed(3)}${r.threads ? `, ${r.threads} thread(s)` : ''}`,
    );
    if (r.oneWorker && r.twoWorkers)
      console.log(
        `  client trainer: 1 worker ${median(r.oneWorker).toFixed(1)} ex/s, 2 workers (${r.pairThreads} training) ${median(r.twoWorkers).toFixed(1)} ex/s: ${(median(r.twoWorkers) / median(r.oneWorker)).toFixed(2)}x` +
          (r.pairStepMs
            ? `; per paired step (first worker, last round) half ${r.pairStepMs.grad.toFixed(1)} ms, wait ${r.pairStepMs.wait.toFixed(1)} ms, combine + apply ${r.pairStepMs.apply.toFixed(1)} ms`
            : ''),
      );
    if (r.oneWorker && r.twoApart)
      console.log(
        `  two lone trainers at once, each its own round (the ceiling for two workers here): ${median(r.twoApart).toFixed(1)} ex/s: ${(median(r.twoApart) / median(r.oneWorker)).toFixed(2)}x one`,
      );
  }
} finally {
  await browser.close();
  await plain.close();
  await isolated.close();
}

/** Our LocalTrainer path in this Node process: one warm-up epoch, then the median of `reps` epochs. */
async function nodeRate(backend: string, examples: number, reps: number): Promise<number[]> {
  if (!(await tf.setBackend(backend))) throw new Error(`Node backend ${backend} unavailable`);
  const spec = modelByName(values.model!);
  const init = buildModel(spec, 5);
  const w0 = await getFlatWeights(init);
  init.dispose();
  const trainer = new LocalTrainer(spec, syntheticDataset({ seed: 3, count: examples }));
  const cfg = {
    epochs: 1,
    batchSize: Number(values['batch-size']),
    learningRate: 0.001,
    optimizer: 'adam' as const,
  };
  const rates: number[] = [];
  await trainer.train(w0, cfg);
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await trainer.train(w0, cfg);
    rates.push(examples / ((performance.now() - t0) / 1000));
  }
  trainer.dispose();
  return rates;
}

const nodeRows: { backend: string; examples: number; rates: number[]; median: number }[] = [];
for (const [backend, examples, reps] of [
  ['wasm', Number(values.examples), Number(values.reps)],
  ['cpu', Number(values['node-cpu-examples']), 1],
] as const) {
  process.stdout.write(`bench:train Node ${backend} (${values.model}, ${examples} examples, ${reps} reps)… `);
  const rates = await nodeRate(backend, examples, reps);
  nodeRows.push({ backend, examples, rates, median: median(rates) });
  console.log(`${median(rates).toFixed(1)} ex/s`);
}
const nodeCpu = nodeRows.find((r) => r.backend === 'cpu')!.median;

console.log(
  `\nchromium (headless, ${values.model}, batch ${values['batch-size']})\nbackend        ours ex/s  bare ex/s  ratio (ours/bare)  x Node cpu  threads`,
);
for (const r of rows) {
  if (r.ratio === undefined)
    console.log(`${r.backend.padEnd(14)} ${'–'.padStart(9)} ${'–'.padStart(10)}  ${r.error}`);
  else
    console.log(
      `${r.backend.padEnd(14)} ${r.oursMedian!.toFixed(1).padStart(9)} ${r.bareMedian!.toFixed(1).padStart(10)}  ${r.ratio.toFixed(3).padStart(17)}  ${(r.oursMedian! / nodeCpu).toFixed(1).padStart(10)}  ${String(r.threads ?? '').padStart(7)}`,
    );
}
const single = rows.find((r) => r.backend === 'wasm')?.oursMedian;
const multi = rows.find((r) => r.backend === 'wasm-threaded')?.oursMedian;
if (single && multi)
  console.log(`wasm multi- vs single-threaded (same page, isolated vs not): ${(multi / single).toFixed(2)}x`);
const pair = rows.find((r) => r.backend === 'wasm' && r.oneWorker && r.twoWorkers);
if (pair)
  console.log(
    `wasm, the client's trainer in 2 workers (each half of every batch) vs 1: ${(median(pair.twoWorkers!) / median(pair.oneWorker!)).toFixed(2)}x (${pair.pairThreads} training)` +
      (pair.twoApart
        ? `; two lone trainers at once: ${(median(pair.twoApart) / median(pair.oneWorker!)).toFixed(2)}x`
        : ''),
  );
console.log('\nNode (this process, our LocalTrainer)\nbackend  ours ex/s  x Node cpu');
for (const r of nodeRows)
  console.log(
    `${r.backend.padEnd(8)} ${r.median.toFixed(1).padStart(9)}  ${(r.median / nodeCpu).toFixed(1).padStart(10)}`,
  );
mkdirSync('bench-results', { recursive: true });
writeFileSync(
  'bench-results/train.json',
  JSON.stringify({ date: new Date().toISOString(), rows, node: nodeRows }, null, 2),
);
