import { runUnmask, packUnmaskJob, type UnmaskSecret } from './shared/secagg/unmask.ts';
import { generateKeyPair, commitSeed, maskSeed } from './shared/secagg/keys.ts';
import { split } from './shared/secagg/shamir.ts';
import { addMasks } from './shared/secagg/prg.ts';
import { randomBytes } from '@noble/hashes/utils.js';
const n = 1000, k = 38, t = 20, L = Number(process.argv[2] ?? 100000);
const tag = 'prof';
const keys = Array.from({ length: n + 1 }, () => generateKeyPair());
const dropped = new Set<number>(); while (dropped.size < 50) dropped.add(1 + Math.floor(Math.random() * n));
const nb = (u: number) => Array.from({ length: k }, (_, j) => ((u - 1 + j + 1) % n) + 1);
const secrets: UnmaskSecret[] = [];
const sig = new Uint8Array(64), gPk = new Uint8Array(32);
for (let u = 1; u <= n; u++) {
  if (dropped.has(u)) continue;
  const seed = randomBytes(32);
  const holders = nb(u).filter((v) => !dropped.has(v)).slice(0, 30).sort((a, b) => a - b);
  secrets.push({ of: u, kind: 'b', check: commitSeed(seed, tag, u), dealerKey: gPk, shares: split(seed, t, holders).map((s) => ({ ...s, sig })) });
}
for (const d of dropped) {
  const holders = nb(d).filter((v) => !dropped.has(v)).slice(0, 30).sort((a, b) => a - b);
  secrets.push({ of: d, kind: 's', check: keys[d].publicKey, dealerKey: gPk, shares: split(keys[d].secretKey, t, holders).map((s) => ({ ...s, sig })), pairs: nb(d).filter((v) => !dropped.has(v)).map((v) => ({ with: v, sPk: keys[v].publicKey })) });
}
for (let rep = 0; rep < 3; rep++) {
  const job = packUnmaskJob(tag, t, secrets, [], new Uint32Array(L));
  const t0 = performance.now();
  const r = await runUnmask(job);
  console.log('unmask', L, r.ok, (performance.now() - t0).toFixed(0), 'ms');
}
// client mask 1M, k=38
const me = keys[1];
for (let rep = 0; rep < 3; rep++) {
  const t0 = performance.now();
  const { maskSeeds } = await import('./shared/secagg/keys.ts');
  const seeds = await maskSeeds(me.secretKey, nb(1).map((v) => ({ index: v, sPk: keys[v].publicKey })), tag, 1);
  const t1 = performance.now();
  const y = new Uint32Array(1_000_000);
  await addMasks(y, [{ seed: randomBytes(32), domain: 'self', sign: 1 }, ...seeds.map((s) => ({ seed: s, domain: 'pair' as const, sign: 1 as const }))]);
  console.log('client mask 1M: seeds', (t1 - t0).toFixed(1), 'masks', (performance.now() - t1).toFixed(1));
}
