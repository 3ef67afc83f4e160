import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import { addMasks, type MaskTerm } from '/work/main/shared/secagg/prg.ts';
import { nodeKeystream } from '/work/main/server/node-keystream.ts';

const L = 30_000;
if (isMainThread) {
  const mode = process.argv[2] ?? 'plain';
  const tsx = import.meta.resolve('tsx/esm/api');
  const src = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); });`;
  const w = new Worker(src, { eval: true, workerData: { mode } });
  let peak = 0;
  const iv = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const base = process.memoryUsage().rss;
  w.on('message', (m) => {
    clearInterval(iv);
    console.log(mode, 'base', (base / 2 ** 20) | 0, 'MB peak', (peak / 2 ** 20) | 0, 'MB', m);
    process.exit(0);
  });
} else {
  const terms: MaskTerm[] = Array.from({ length: 400 }, () => ({ seed: randomBytes(32), domain: 'pair', sign: 1 }));
  const t0 = performance.now();
  const sum = new Uint32Array(L);
  let ext = 0;
  for (let b = 0; b < 190; b++) {
    await addMasks(sum, terms, 0, nodeKeystream);
    ext = Math.max(ext, process.memoryUsage().external);
  }
  parentPort!.postMessage({ ms: Math.round(performance.now() - t0), maxExternalMB: (ext / 2 ** 20) | 0 });
}
