/**
 * npm run bench:secagg [-- --sizes 100000,1000000 --cohorts 10,100,1000 --dropout 0.05]
 * Secure-aggregation cost, measured with the same session code the transport uses (the server's unmasking
 * on its worker thread as the server runs it, and once on one thread; a client's masking in a fresh
 * process of its own, e2e/bench-secagg-mask.ts):
 * - client: encode + mask time of one client with the degree the SecAgg+ graph picks, next to the key
 *   phases (key agreement, Shamir, AEAD), and bytes on the wire vs the float32 update;
 * - server: streaming modular sum + unmasking (rebuild seeds, strip self masks and dropouts' pairwise masks),
 *   next to the bare FedAvg float sum of the same n vectors in the same run;
 * - the client cost at the CIFAR-10 CNN ('small', 136,874 params) vs one local epoch of that model.
 * Cohorts of 10 run every client for real and check the sum bit for bit; larger cohorts run every client's
 * key phases for real but feed the server uniform random vectors in place of masked inputs (identical server
 * work; computing 1000 real 1M-word masks would only time the clients again).
 * Side by side in the same run, the path before the WebCrypto PRG (e2e/secagg-baseline.ts: ChaCha20 masks,
 * uint32 element loops, per-set Lagrange weights) on the same inputs: client 1's masking (same k, same
 * X25519 agreements), and the server's sum + unmask (same vectors, reveals, dropouts); its unmasked "sum"
 * is not the sum (the clients masked with today's PRG), only its cost is. Then 2,000 reconstructions,
 * one holder set and one set per secret, today's vs the old.
 * --no-cnn skips the CIFAR-10 CNN rows and the epoch. Writes bench-results/secagg.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { randomFillSync } from 'node:crypto';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { createSecureRandom } from '../shared/dp/secure-random.ts';
import { encodeContribution, planEncoding, vectorLength } from '../shared/fl/encoding.ts';
import { WeightedMean } from '../shared/fl/fedavg.ts';
import { buildModel } from '../shared/model/build.ts';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { SecAggClientSession } from '../shared/secagg/client-session.ts';
import { chooseDegree, harary } from '../shared/secagg/graph.ts';
import { commitSeed, bytesEqual } from '../shared/secagg/keys.ts';
import { prepareLagrange, reconstructChecked, split, type LagrangeCache } from '../shared/secagg/shamir.ts';
import type { Reveal } from '../shared/secagg/types.ts';
import { randomBytes } from '@noble/hashes/utils.js';
import { addIntoScalar, reconstructOld, unmaskOld } from './secagg-baseline.ts';
import { runUnmask } from '../shared/secagg/unmask.ts';
import { UnmaskThread } from '../server/unmask-thread.ts';
import { SecAggServerSession } from '../shared/secagg/server-session.ts';
import { packInbox, packReveal, packRoster, packShares } from '../shared/secagg/wire.ts';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100000,1000000' },
    cohorts: { type: 'string', default: '10,100,1000' },
    dropout: { type: 'string', default: '0.05' },
    'epoch-examples': { type: 'string', default: '500' },
    'no-cnn': { type: 'boolean', default: false },
  },
});
const sizes = values.sizes!.split(',').map(Number);
const cohorts = values.cohorts!.split(',').map(Number);
const dropRate = Number(values.dropout);
const rand = createSecureRandom();
const now = (): number => performance.now();
const progress = (msg: string): void => void process.stderr.write(`\r\x1b[K${msg}`);

interface ClientCost {
  encodeMs: number;
  /** The first masking in a fresh process (what a visitor's first round pays), and later ones. */
  maskMs: number;
  maskWarmMs: number;
  /** The same masking with the old path (ChaCha20, uint32 loops, noble X25519), first call. */
  maskOldMs: number;
  keysMs: number;
  bytesSent: number;
  bytesReceived: number;
}

const unmaskThreads = Math.min(availableParallelism(), 8);
const unmaskThread = new UnmaskThread(unmaskThreads);
await unmaskThread.warm(); // as the server does at start-up

/** One client's masking timed in a child process (e2e/bench-secagg-mask.ts). */
function maskInChild(
  length: number,
  k: number,
  path: 'today' | 'old',
): { firstMs: number; medianMs: number } {
  const entry = fileURLToPath(new URL('./bench-secagg-mask.ts', import.meta.url));
  const args = ['--import', 'tsx', entry, '--length', String(length), '--k', String(k), '--path', path];
  return JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' })) as {
    firstMs: number;
    medianMs: number;
  };
}

/** Runs the key phases for all n clients; returns the sessions ready to mask, and client 1's costs. */
function keyPhases(n: number, L: number) {
  const { k, t } = chooseDegree(n);
  const nb = harary(n, k).map((l) => l.map((v) => v + 1));
  const drops = new Set<number>();
  while (drops.size < Math.ceil(dropRate * n)) drops.add(2 + Math.floor(Math.random() * (n - 1))); // never client 1, whose costs we report
  const tag = `bench/${n}/${L}`;
  const server = new SecAggServerSession({
    tag,
    n,
    neighbours: nb,
    t,
    vectorLength: L,
    minSurvivors: Math.max(2, t),
  });
  const clients = Array.from(
    { length: n },
    (_, i) => new SecAggClientSession({ tag, index: i + 1, n, t, vectorLength: L }),
  );
  let serverMs = 0;
  const timedServer = <T>(f: () => T): T => {
    const t0 = now();
    const r = f();
    serverMs += now() - t0;
    return r;
  };
  const c1 = { keysMs: 0, bytesSent: 0, bytesReceived: 0 };
  const t1 = (u: number, f: () => void) => {
    const t0 = now();
    f();
    if (u === 1) c1.keysMs += now() - t0;
  };
  const commits = new Map<number, Uint8Array>();
  const sPks = new Map<number, Uint8Array>();
  for (let u = 1; u <= n; u++) {
    const m = clients[u - 1].advertise();
    sPks.set(u, m.sPk);
    if (u === 1) c1.bytesSent += 64;
    timedServer(() => server.receiveKeys(u, m));
  }
  const rosters = timedServer(() => server.closeKeys());
  for (const [u, r] of rosters) {
    if (u % 50 === 0) progress(`bench:secagg n=${n} d=${L - 2}: key shares ${u}/${n}`);
    let shares!: ReturnType<SecAggClientSession['receiveRoster']>;
    t1(u, () => (shares = clients[u - 1].receiveRoster(r)));
    commits.set(u, shares.commit);
    if (u === 1) {
      c1.bytesReceived += packRoster(r).peers.length;
      const w = packShares(shares);
      c1.bytesSent += w.shares.length + w.commit.length;
    }
    timedServer(() => server.receiveShares(u, shares));
  }
  const inboxes = timedServer(() => server.closeShares());
  for (const [u, inbox] of inboxes) {
    if (drops.has(u)) continue;
    if (u % 50 === 0) progress(`bench:secagg n=${n} d=${L - 2}: inboxes ${u}/${n}`);
    t1(u, () => clients[u - 1].receiveInbox(inbox));
    if (u === 1) c1.bytesReceived += packInbox(inbox).shares.length;
  }
  return {
    k,
    t,
    nb,
    tag,
    server,
    clients,
    drops,
    serverMs,
    c1,
    commits,
    sPks,
    peers1: rosters.get(1)!.peers,
  };
}

async function cell(d: number, n: number) {
  const L = vectorLength(d);
  const plan = planEncoding({
    numParams: d,
    maxClients: n,
    clipNorm: null,
    coordClip: 0.5,
    weighting: 'examples',
    maxExamples: 500,
    noise: null,
  });
  const delta = Float32Array.from({ length: d }, () => (Math.random() - 0.5) * 0.01);
  const real = n <= 10;
  const s = keyPhases(n, L);
  // Client 1 encodes and masks for real in every cell.
  let t0 = now();
  const enc = encodeContribution(delta, 500, plan, rand);
  const encodeMs = now() - t0;
  const y1 = await s.clients[0].mask(enc.ring);
  // Client masking timed in a process of its own per path (a visitor's worker: small heap, nothing
  // else running), not in this one, which holds n sessions and collects their garbage meanwhile.
  progress(`bench:secagg n=${n} d=${d}: client masking`);
  const mask = maskInChild(L, s.k, 'today');
  const maskOld = maskInChild(L, s.k, 'old');
  const filler = new Uint32Array(randomFillSync(new Uint8Array(L * 4)).buffer);
  const expected = new Uint32Array(L);
  let serverMs = s.serverMs;
  let sumMs = 0;
  const received: Uint32Array[] = [];
  const inputs = new Map<number, Uint32Array>();
  for (let u = 1; u <= n; u++) {
    if (s.drops.has(u)) continue;
    let y: Uint32Array;
    if (u === 1) y = y1;
    else if (real) {
      const x = encodeContribution(delta, 100 + u, plan, rand).ring;
      inputs.set(u, x);
      y = await s.clients[u - 1].mask(x);
    } else y = filler;
    if (u === 1) inputs.set(1, enc.ring);
    const a = now();
    s.server.receiveMasked(u, y);
    sumMs += now() - a;
    received.push(y);
  }
  serverMs += sumMs;
  let a = now();
  const reqs = s.server.closeMasked();
  serverMs += now() - a;
  const reveals = new Map<number, Reveal>();
  for (const [u, req] of reqs) {
    const r = s.clients[u - 1].receiveUnmask(req);
    reveals.set(u, r);
    if (u === 1) {
      const w = packReveal(r);
      s.c1.bytesSent += w.b.length + w.s.length;
      s.c1.bytesReceived += JSON.stringify(req).length;
    }
    a = now();
    s.server.receiveReveal(u, r);
    serverMs += now() - a;
  }
  progress(`bench:secagg n=${n} d=${d}: unmasking`);
  // One thread, here, on a copy of the job; then as the server runs it: on its worker thread, the masks
  // stripped over one thread per core (mask-pool.ts).
  a = now();
  const job = s.server.prepareUnmask();
  const prepareMs = now() - a; // on the server's main thread
  a = now();
  await runUnmask(structuredClone(job));
  const unmaskOneThreadMs = prepareMs + now() - a;
  a = now();
  const sum = s.server.finishUnmask(await unmaskThread.run(job));
  const unmaskMs = prepareMs + now() - a;
  serverMs += unmaskMs;
  // The old path on the same vectors and reveals.
  progress(`bench:secagg n=${n} d=${d}: the old path`);
  a = now();
  const oldSum = new Uint32Array(L);
  for (const y of received) addIntoScalar(oldSum, y);
  const sumOldMs = now() - a;
  a = now();
  unmaskOld(oldSum, {
    tag: s.tag,
    t: s.t,
    neighbours: s.nb,
    survivors: s.server.survivors,
    dropped: [...s.drops].filter((u) => !s.server.survivors.includes(u)),
    commits: s.commits,
    sPks: s.sPks,
    reveals,
  });
  const unmaskOldMs = now() - a;
  let exact: boolean | null = null;
  if (real) {
    for (const u of s.server.survivors) {
      const x = inputs.get(u)!;
      for (let i = 0; i < L; i++) expected[i] = (expected[i] + x[i]) >>> 0;
    }
    exact = sum.every((v, i) => v === expected[i]);
  }
  // Bare FedAvg: the float sum of the same number of float32 vectors.
  const wm = new WeightedMean(d);
  a = now();
  for (let u = 0; u < s.server.survivors.length; u++) wm.add(delta, 1);
  const fedavgMs = now() - a;
  const client: ClientCost = {
    encodeMs,
    maskMs: mask.firstMs,
    maskWarmMs: mask.medianMs,
    maskOldMs: maskOld.firstMs,
    keysMs: s.c1.keysMs,
    bytesSent: s.c1.bytesSent + L * 4,
    bytesReceived: s.c1.bytesReceived,
  };
  const side = { sumMs, unmaskMs, unmaskOneThreadMs, sumOldMs, unmaskOldMs };
  return { d, n, k: s.k, t: s.t, dropped: s.drops.size, exact, client, serverMs, unmaskMs, fedavgMs, side };
}

/**
 * 2,000 secrets rebuilt and checked against their commitments, today's path vs the old: with one holder set
 * for all (one weight set, a dot product each) and with a holder set per secret (weights for all sets with
 * one inversion, vs one per set).
 */
function reconstructions(count: number, n: number) {
  const { k, t } = chooseDegree(n);
  const nb = harary(n, k).map((l) => l.map((v) => v + 1));
  const tag = 'bench/reconstruct';
  const secrets = Array.from({ length: count }, () => randomBytes(32));
  const commits = secrets.map((x, i) => commitSeed(x, tag, i + 1));
  const rows: Record<string, { newMs: number; oldMs: number }> = {};
  for (const [name, holders] of [
    ['one holder set', (_i: number) => nb[0]],
    ['a holder set per secret', (i: number) => nb[i % n]],
  ] as const) {
    const shares = secrets.map((x, i) =>
      split(
        x,
        t,
        [...holders(i)].sort((a, b) => a - b),
      ),
    );
    let a = now();
    const cache: LagrangeCache = new Map();
    prepareLagrange(
      cache,
      shares.map((sh) => sh.slice(0, t).map((s) => s.x)),
    );
    shares.forEach((sh, i) => {
      const ok = reconstructChecked(sh, t, (x) => bytesEqual(commitSeed(x, tag, i + 1), commits[i]), cache);
      if (!ok) throw new Error('reconstruction failed');
    });
    const newMs = now() - a;
    a = now();
    const old = new Map<string, bigint[]>();
    shares.forEach((sh, i) => {
      if (!bytesEqual(commitSeed(reconstructOld(sh, t, old), tag, i + 1), commits[i]))
        throw new Error('old reconstruction failed');
    });
    rows[name] = { newMs, oldMs: now() - a };
  }
  return { count, n, k, t, rows };
}

/** Examples/s of one local training epoch of the CIFAR-10 CNN ('small') in this process (tfjs cpu). */
async function epochRate(): Promise<number> {
  await tf.setBackend('cpu');
  const model = buildModel(MODELS.small, 1);
  model.compile({ optimizer: tf.train.adam(0.001), loss: 'categoricalCrossentropy' });
  const ds = syntheticDataset({ seed: 1, count: 64 });
  const x = tf.tensor4d(
    Float32Array.from(ds.x, (v) => v / 255),
    [64, 32, 32, 3],
  );
  const y = tf.oneHot(tf.tensor1d(Array.from(ds.y), 'int32'), 10);
  await model.fit(x, y, { batchSize: 32, epochs: 1, verbose: 0 }); // warm-up
  const t0 = now();
  await model.fit(x, y, { batchSize: 32, epochs: 1, verbose: 0 });
  const rate = 64 / ((now() - t0) / 1000);
  tf.dispose([x, y]);
  model.dispose();
  return rate;
}

const rows = [];
for (const d of sizes)
  for (const n of cohorts) {
    progress(`bench:secagg n=${n} d=${d}…`);
    rows.push(await cell(d, n));
  }
progress('bench:secagg: 2,000 reconstructions…');
const recon = reconstructions(2000, 1000);
const withCnn = !values['no-cnn'];
progress('bench:secagg: client cost at the CIFAR-10 CNN…');
const cnn = numParams(MODELS.small);
const cnnRows = withCnn ? [await cell(cnn, 100), await cell(cnn, 1000)] : [];
progress('bench:secagg: one local epoch of the CNN (tfjs cpu)…');
const rate = withCnn ? await epochRate() : NaN;
progress('');
const epochExamples = Number(values['epoch-examples']);
const epochMs = (epochExamples / rate) * 1000;

const f = (x: number, p = 0) => x.toFixed(p);
console.log(
  '\nSecure aggregation cost (one process; server dropouts: %s%% of clients after sharing keys)\n',
  f(dropRate * 100),
);
console.log(
  '| params | clients | k | t | client encode ms | client mask ms | client key phases ms | server ms (sum + unmask) | bare FedAvg sum ms | server / FedAvg | client bytes sent / float32 update | exact |',
);
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|');
for (const r of rows) {
  console.log(
    `| ${r.d.toLocaleString('en')} | ${r.n} | ${r.k} | ${r.t} | ${f(r.client.encodeMs)} | ${f(r.client.maskMs)} | ${f(r.client.keysMs)} | ${f(r.serverMs)} | ${f(r.fedavgMs)} | ${f(r.serverMs / r.fedavgMs, 1)} | ${f(r.client.bytesSent / (4 * r.d), 3)} | ${r.exact === null ? 'n/a' : r.exact ? 'yes' : 'NO'} |`,
  );
}
console.log(
  `\nSide by side, same run, same inputs: today (AES-256-CTR via WebCrypto, WebCrypto X25519, wasm SIMD adds, batched Lagrange; the unmask on the server's worker with the masks split over ${unmaskThreads} threads) vs before (noble ChaCha20 and X25519, uint32 loops). Client mask: in a fresh process, first call / median of the next 5\n`,
);
console.log(
  '| params | clients | k | client mask ms today | before | server sum + unmask ms today | one thread, WebCrypto, in this process | before | speed-up (server) |',
);
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const now_ = r.side.sumMs + r.side.unmaskMs;
  const old = r.side.sumOldMs + r.side.unmaskOldMs;
  console.log(
    `| ${r.d.toLocaleString('en')} | ${r.n} | ${r.k} | ${f(r.client.maskMs)} / ${f(r.client.maskWarmMs)} | ${f(r.client.maskOldMs)} | ${f(now_)} (sum ${f(r.side.sumMs)} + unmask ${f(r.side.unmaskMs)}) | ${f(r.side.sumMs + r.side.unmaskOneThreadMs)} | ${f(old)} (sum ${f(r.side.sumOldMs)} + unmask ${f(r.side.unmaskOldMs)}) | x${(old / now_).toFixed(1)} |`,
  );
}
console.log(
  `\n${recon.count} reconstructions (t = ${recon.t} of k = ${recon.k}, n = ${recon.n}), each checked against its commitment:`,
);
for (const [name, r] of Object.entries(recon.rows))
  console.log(
    `  ${name}: today ${f(r.newMs, 1)} ms, before ${f(r.oldMs, 1)} ms (x${(r.oldMs / r.newMs).toFixed(1)})`,
  );
console.log('\nServer growth with the cohort (same d): time ratio vs client ratio');
for (const d of sizes) {
  const rs = rows.filter((r) => r.d === d);
  for (let i = 1; i < rs.length; i++) {
    const tr = rs[i].serverMs / rs[i - 1].serverMs;
    const nr = rs[i].n / rs[i - 1].n;
    console.log(
      `  d=${d}: n ${rs[i - 1].n} -> ${rs[i].n} (x${nr}): server time x${tr.toFixed(1)}; n log n predicts x${((rs[i].n * Math.log(rs[i].n)) / (rs[i - 1].n * Math.log(rs[i - 1].n))).toFixed(1)}, n^2 x${(nr * nr).toFixed(0)}`,
    );
  }
}
if (withCnn)
  console.log(
    `\nClient cost at the CIFAR-10 CNN (${cnn.toLocaleString('en')} params) vs one local epoch of ${epochExamples} examples:`,
  );
if (withCnn)
  console.log(`  measured here, tfjs cpu: ${rate.toFixed(1)} examples/s -> epoch ${f(epochMs / 1000, 1)} s`);
for (const r of cnnRows) {
  const total = r.client.encodeMs + r.client.maskMs + r.client.keysMs;
  console.log(
    `  n=${r.n} (k=${r.k}): encode ${f(r.client.encodeMs)} + mask ${f(r.client.maskMs)} + keys ${f(r.client.keysMs)} = ${f(total)} ms = ${((100 * total) / epochMs).toFixed(2)}% of the cpu epoch; ${((100 * total) / ((epochExamples / 52) * 1000)).toFixed(1)}% of a webgl epoch at 52 ex/s (npm run bench:train)`,
  );
}
mkdirSync('bench-results', { recursive: true });
writeFileSync(
  'bench-results/secagg.json',
  JSON.stringify(
    {
      rows,
      cnnRows,
      reconstructions: recon,
      epoch: withCnn ? { examples: epochExamples, examplesPerSecond: rate, ms: epochMs } : null,
      dropRate,
      unmaskThreads,
    },
    null,
    2,
  ),
);
console.log('\nwrote bench-results/secagg.json');
await unmaskThread.close();
