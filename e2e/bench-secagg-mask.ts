/**
 * One client's masking in a process of its own, as a visitor's secure-aggregation worker runs it (a small
 * heap, nothing else running): `tsx e2e/bench-secagg-mask.ts --length L --k K --path today|old --reps R`.
 * Prints JSON: the first call (cold: JIT, wasm compile, WebCrypto's first use) and the median of the
 * calls after it, in ms. Run by bench-secagg.ts, one process per path, so neither warms the other.
 */
import { parseArgs } from 'node:util';
import { randomBytes } from '@noble/hashes/utils.js';
import { maskInput } from '../shared/secagg/client-session.ts';
import { generateKeyPair } from '../shared/secagg/keys.ts';
import { maskOld } from './secagg-baseline.ts';

const { values } = parseArgs({
  options: {
    length: { type: 'string' },
    k: { type: 'string' },
    path: { type: 'string', default: 'today' },
    reps: { type: 'string', default: '6' },
  },
});
const L = Number(values.length);
const k = Number(values.k);
const reps = Number(values.reps);
const me = 1 + Math.floor(k / 2); // about half the peers below, half above: both signs
const mine = generateKeyPair();
const peers = Array.from({ length: k }, (_, i) => ({
  index: i + 1 < me ? i + 1 : i + 2,
  sPk: generateKeyPair().publicKey,
}));
const x = Uint32Array.from({ length: L }, (_, i) => Math.imul(i, 2654435761) >>> 0);
const times: number[] = [];
for (let r = 0; r < reps; r++) {
  const seed = randomBytes(32);
  const t0 = performance.now();
  if (values.path === 'old') maskOld(x, seed, mine.secretKey, peers, 'bench', me);
  else await maskInput(x, seed, mine.secretKey, peers, 'bench', me);
  times.push(performance.now() - t0);
}
const later = times.slice(1).sort((a, b) => a - b);
console.log(JSON.stringify({ firstMs: times[0], medianMs: later[Math.floor(later.length / 2)] ?? times[0] }));
