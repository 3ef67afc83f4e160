import { addMasks } from './shared/secagg/prg.ts';
import { randomBytes } from '@noble/hashes/utils.js';
const L = 1_000_000;
for (let rep = 0; rep < 8; rep++) {
  const terms = Array.from({ length: 39 }, (_, i) => ({ seed: randomBytes(32), domain: (i ? 'pair' : 'self') as 'pair' | 'self', sign: 1 as const }));
  const y = new Uint32Array(L);
  const t = performance.now();
  await addMasks(y, terms);
  console.log('addMasks', (performance.now() - t).toFixed(1));
}
