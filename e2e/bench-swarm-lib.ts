import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, getPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MODELS, numParams, type ModelSpec } from '../shared/model/spec.ts';
import type { ServerStatus } from '../shared/protocol/status.ts';
import { metric } from './metrics.ts';
import { Redis } from 'ioredis';
import { startCluster, type Cluster } from './cluster-lib.ts';
import { cohortOf, flags, startServerProcess, type ServerProcess } from './server-process.ts';

/** What `npm run bench:swarm` runs: one secure round of N protocol clients against the server process. */
export interface SwarmBenchOptions {
  clients: number;
  /** Fraction of clients that vanish after advertising keys (before sending shares). */
  dropAfterKeys: number;
  /** Fraction that vanish after sending shares (before their masked input): their masks are unmasked. */
  dropAfterShares: number;
  /** Client processes the N clients are spread over. */
  processes: number;
  model: ModelSpec;
  /**
   * Each secure-aggregation phase's deadline: the default scales with the cohort (see phaseDeadlineMs).
   * Phases close early when everyone expected answered or the rest are offline, so a generous deadline
   * costs nothing in a round that goes well; one that is too short ends the attempt and the bench fails.
   */
  phaseDeadlineMs: number;
  /** Clients connecting per second, all processes together (a burst of thousands would be refused). */
  connectPerSecond: number;
  /**
   * The server's --secagg-dropout (the dropout the graph's degree is chosen for). The server's default, 0.1,
   * keeps k near 40; at 0.2, what 10% + 10% dropouts really are, k is ~90 and every client's key phases
   * cost twice as much. With 20% dropouts and k ~ 40, a secret lacks t live holders with probability
   * ~1e-5, so about one round in a hundred at 2 000 clients aborts (cleanly) for lack of shares.
   */
  secaggDropout: number;
  /**
   * Niceness of the client processes (default 0: the server's own). A diagnostic, not the goal's setting:
   * clients below the server wait while it is busy, which spares it the core contention real clients on
   * other machines would not cause, but also throttles their traffic exactly when it is busiest, which
   * real clients would not do either.
   */
  clientNice?: number;
  /** Called every ~2 s with a one-line progress report. */
  progress?: (line: string) => void;
  /**
   * 0: one server process (--role all). N >= 1: redis-server, one coordinator and N gateways (each its
   * own process); client process p connects to gateway p mod N.
   */
  gateways?: number;
  /** With gateways: they sum their clients' masked inputs (default) or forward each (--gateway-sum off). */
  gatewaySum?: boolean;
}

/** What the scale-out mode cost, beside what the coordinator reports as the server's figures. */
export interface ClusterFigures {
  gateways: number;
  gatewaySum: boolean;
  gatewayCpuSeconds: number[];
  gatewayPeakRssMB: (number | null)[];
  redisCpuSeconds: number;
  redisPeakMemoryMB: number;
  /** Bytes into and out of Redis during the run, per client. */
  redisBytesInPerClient: number;
  redisBytesOutPerClient: number;
}

/** Client CPU per phase per client this bench allows for (the key phases at k ~ 40, on a loaded core). */
const CLIENT_PHASE_MS = 150;

/**
 * Default per-phase deadline for n clients: 20 s plus, 3x over, the time the clients' crypto of one phase
 * takes spread over this machine's cores (all clients run here, beside the server).
 */
export function phaseDeadlineMs(n: number, cores = cpus().length): number {
  return Math.round(20_000 + (3 * n * CLIENT_PHASE_MS) / Math.max(1, cores));
}

/** Client i's (1-based) update: small deterministic values, so the expected mean is known without them. */
export function benchDelta(i: number, p: number): Float32Array {
  const d = new Float32Array(p);
  let x = (i * 2654435761) >>> 0 || 1;
  for (let j = 0; j < p; j++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    d[j] = ((x % 2001) - 1000) * 1e-5;
  }
  return d;
}

/** Client i's example count (1..16, the bench's --max-examples-per-client). */
export const benchExamples = (i: number): number => 1 + (i % 16);
const MAX_EXAMPLES = 16;

/** Which clients drop where: the first dropAfterKeys * n of a fixed shuffle after keys, the next after shares. */
export function dropPlan(
  n: number,
  afterKeys: number,
  afterShares: number,
): Map<number, 'shares' | 'masked'> {
  const order = Array.from({ length: n }, (_, i) => i + 1);
  let x = 0x9e3779b9;
  for (let i = n - 1; i > 0; i--) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    const j = x % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const k = Math.round(n * afterKeys);
  const s = Math.round(n * afterShares);
  const plan = new Map<number, 'shares' | 'masked'>();
  // Vanishing before 'shares' = dropped after keys; before 'masked' = dropped after shares.
  for (const i of order.slice(0, k)) plan.set(i, 'shares');
  for (const i of order.slice(k, k + s)) plan.set(i, 'masked');
  return plan;
}

/** What a client process is told (IPC). */
export interface ClientJob {
  url: string;
  /** 1-based ids of this process's clients; the server numbers cohort members its own way. */
  ids: number[];
  vanish: [number, 'shares' | 'masked'][];
  numParams: number;
  connectPerSecond: number;
}

/** What a client process reports (IPC), every second and at the end. */
export interface ClientReport {
  connected: number;
  /** Messages sent, by event. */
  sent: Record<string, number>;
  received: number;
  /** Ids whose masked input was sent (and not refused). */
  maskedSent: number[];
  errors: string[];
  /** Clients whose socket closed, by socket.io-client's reason (a vanishing client's own close included). */
  disconnects: Record<string, number>;
  /** The process's niceness, as the OS reports it (null until it reports). */
  nice: number | null;
  final: boolean;
}

/** A client process's report before it has done anything. */
export function emptyReport(): ClientReport {
  return {
    connected: 0,
    sent: {},
    received: 0,
    maskedSent: [],
    errors: [],
    disconnects: {},
    nice: null,
    final: false,
  };
}

export interface SwarmBenchResult {
  ok: boolean;
  why: string;
  clients: number;
  dropAfterKeys: number;
  dropAfterShares: number;
  model: string;
  numParams: number;
  k: number | null;
  t: number | null;
  processes: number;
  /** The niceness the client processes were started at, and what each reported. */
  clientNice: number;
  clientNiceReported: (number | null)[];
  /** The server's extra node flags (AEGISFL_SERVER_NODE_ARGS), so the file says how the server ran. */
  serverNodeArgs: string | null;
  secaggDropout: number;
  phaseDeadlineMs: number;
  connectSeconds: number;
  /** Selection to evaluated model, as the server recorded it. */
  roundSeconds: number | null;
  /** Time each secure-aggregation phase was open, and the unmasking's own time (off the loop). */
  phaseSeconds: Record<string, number>;
  unmaskSeconds: number | null;
  survivors: number | null;
  expectedSurvivors: number;
  examples: number | null;
  expectedExamples: number;
  /** max |new weights - old weights - exact weighted mean of the survivors' updates| */
  maxError: number | null;
  serverCpuSeconds: number | null;
  serverPeakRssMB: number | null;
  /**
   * Time the server's main thread was ready to run but waited for a core (Linux schedstat), from the
   * clients' start (connect included) to the end: loop delay that is not the loop's own work, whoever
   * held the core (client processes, or the server's own worker and GC threads).
   */
  serverRunQueueSeconds: number | null;
  /**
   * Where the server's memory went: the largest RSS, V8 heap in use and external memory (ArrayBuffers:
   * vectors, socket buffers) seen in each phase, sampled every 10 s (MB).
   */
  serverMemoryByPhase: Record<
    string,
    { rssMB: number; heapUsedMB: number; externalMB: number; loopMaxMs: number }
  >;
  /** Event-loop delay over connect + round: the worst 10 s window's p50 and p99, and the maximum. */
  loopDelay: { p50: number | null; p99: number | null; max: number | null };
  /**
   * Each window's loop delay (ms), ending `atSeconds` after the start in `phase`: where the worst one was.
   * With the main thread's garbage collection in that window (prom-client's `nodejs_gc_duration_seconds`,
   * from V8's GC events): its time in all, and how many single collections took 100 ms or more.
   */
  loopWindows: {
    atSeconds: number;
    phase: string;
    p99Ms: number;
    maxMs: number;
    gcMs: number;
    gcOver100ms: number;
  }[];
  perClient: { messagesSent: number; messagesReceived: number; bytesSent: number; bytesReceived: number };
  /** With gateways: their cost and Redis' (the server figures above are then the coordinator's). */
  cluster: ClusterFigures | null;
  clientErrors: string[];
  /** Clients whose socket closed during the run, by reason ('io client disconnect': the planned dropouts). */
  clientDisconnects: Record<string, number>;
  serverTail: string;
}

const LOOP_STATS = ['p50', 'p99', 'max'] as const;
const GC_KINDS = ['major', 'minor', 'incremental', 'weakcb'] as const;

/** The server's garbage collection so far, from one /metrics text: seconds in all, collections of 0.1 s or more. */
export function gcSoFar(text: string): { seconds: number; over100ms: number } {
  let seconds = 0;
  let over100ms = 0;
  for (const kind of GC_KINDS) {
    seconds += metric(text, 'aegis_nodejs_gc_duration_seconds_sum', { kind }) ?? 0;
    const all = metric(text, 'aegis_nodejs_gc_duration_seconds_count', { kind }) ?? 0;
    over100ms += all - (metric(text, 'aegis_nodejs_gc_duration_seconds_bucket', { le: '0.1', kind }) ?? all);
  }
  return { seconds, over100ms };
}

/** A line of /proc/<pid>/status in MB: VmRSS (resident now) or VmHWM (its peak). */
function procMB(pid: number | undefined, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}
const rssMB = (pid: number | undefined): number | null => procMB(pid, 'VmRSS');

/**
 * Seconds a process's main thread has spent runnable but not running (field 2 of /proc/<pid>/schedstat);
 * null where the kernel does not keep the figure (all zeros) or there is no /proc.
 */
function runQueueSeconds(pid: number | undefined): number | null {
  try {
    const [ran, waited] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ').map(Number);
    return ran > 0 && Number.isFinite(waited) ? waited / 1e9 : null;
  } catch {
    return null;
  }
}
const peakRssMB = (pid: number | undefined): number | null => procMB(pid, 'VmHWM');

/** Sum of a histogram's _sum series by label value (e.g. phase durations). */
function histogramSums(text: string, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`^${name}_sum\\{${label}="([^"]+)"\\} (\\S+)$`, 'gm');
  for (const m of text.matchAll(re)) out[m[1]] = Number(m[2]);
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A counter summed over the processes that hold sockets (the server, or every gateway). */
function socketBytes(texts: string[], name: string): number {
  return texts.reduce((a, t) => a + (metric(t, name) ?? NaN), 0);
}

/** Redis' own counters (INFO): traffic, CPU, peak memory. */
async function redisStats(
  r: Redis,
): Promise<{ bytesIn: number; bytesOut: number; cpuSeconds: number; peakMemoryBytes: number }> {
  const info = await r.info();
  const num = (k: string): number => Number(new RegExp(`^${k}:(\\S+)`, 'm').exec(info)?.[1] ?? NaN);
  return {
    bytesIn: num('total_net_input_bytes'),
    bytesOut: num('total_net_output_bytes'),
    cpuSeconds: num('used_cpu_user') + num('used_cpu_sys'),
    peakMemoryBytes: num('used_memory_peak'),
  };
}

/** Runs the bench: server process, client processes, one secure round; never throws for a failed round. */
export async function runSwarmBench(o: SwarmBenchOptions): Promise<SwarmBenchResult> {
  const n = o.clients;
  const P = numParams(o.model);
  const drops = dropPlan(n, o.dropAfterKeys, o.dropAfterShares);
  const phase = o.phaseDeadlineMs;
  const G = o.gateways ?? 0;
  const serverFlags = {
    model: o.model.name,
    'examples-per-client': 16,
    'test-examples': 100,
    rounds: 1,
    ...cohortOf(n),
    'min-updates': Math.max(3, Math.floor(n / 2)),
    'round-pause-ms': 0,
    'round-deadline-ms': 3 * phase,
    'secagg-keys-deadline-ms': phase,
    'secagg-shares-deadline-ms': phase,
    'secagg-unmask-deadline-ms': phase,
    'secagg-dropout': o.secaggDropout,
    'max-examples-per-client': MAX_EXAMPLES,
    'max-message-bytes': P * 4 + 256 * 1024,
    'max-loss-increase': 0,
    // Every client connects from 127.0.0.1: the per-address connection limit must admit the swarm.
    'address-rate': Math.max(20, o.connectPerSecond * 2),
    'address-burst': n + 100,
    'max-sessions': Math.max(n * 2, 100),
    'session-ttl-ms': 30 * 60_000,
  };
  const cluster: Cluster | null =
    G > 0
      ? await startCluster({
          gateways: G,
          flags: { ...serverFlags, 'gateway-sum': o.gatewaySum === false ? 'off' : 'on' },
        })
      : null;
  const srv: ServerProcess = cluster
    ? cluster.coordinators[0]
    : await startServerProcess(flags(serverFlags), 120_000);
  const redisInfo = cluster ? new Redis(cluster.redis.url) : null;
  const redisBefore = redisInfo ? await redisStats(redisInfo) : null;
  // The clients' URL: the server, or one gateway per client process.
  const clientUrl = (p: number): string => (cluster ? cluster.gateways[p % G].url : srv.url);
  const url = srv.url;
  const get = async (path: string): Promise<Response> => fetch(url + path);
  const status = async (): Promise<ServerStatus | null> =>
    get('/api/status')
      .then((r) => r.json() as Promise<ServerStatus>)
      .catch(() => null);
  // Starts the loop-delay window (the next scrape covers connect + round) and the GC count from here.
  const gcAtStart = gcSoFar(await (await get('/metrics')).text());
  const w0 = new Float32Array(await (await get('/api/model/weights')).arrayBuffer());

  const procs = Math.max(1, Math.min(o.processes, n));
  const nice = o.clientNice ?? 0;
  if (!(Number.isInteger(nice) && nice >= 0 && nice <= 19))
    throw new RangeError(`clientNice must be a whole number in [0, 19], got ${nice}`);
  // nice(1) adds to the niceness this process already has: ask for the difference (never below it).
  const niceBy = Math.max(0, nice - getPriority());
  const queued0 = runQueueSeconds(srv.child.pid);
  const reports: ClientReport[] = Array.from({ length: procs }, emptyReport);
  const children: ChildProcess[] = [];
  let startFailed: string | null = null;
  const entry = fileURLToPath(new URL('./bench-swarm-client.ts', import.meta.url));
  const t0 = Date.now();
  for (let p = 0; p < procs; p++) {
    const ids = Array.from({ length: n }, (_, i) => i + 1).filter((i) => i % procs === p);
    // Started through nice(1): a thread's niceness is inherited by the threads it creates, so every
    // thread of the client process (V8's, libuv's) runs below the server.
    const child = fork(entry, [], {
      ...(niceBy > 0 ? { execPath: 'nice' } : {}),
      execArgv: [...(niceBy > 0 ? ['-n', String(niceBy), process.execPath] : []), '--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.on('message', (m: ClientReport) => (reports[p] = m));
    // E.g. no nice(1) on this machine: reported as a client error, and the run fails for want of clients.
    child.on('error', (e) => {
      reports[p].errors.push(`client process ${p}: ${e.message}`);
      startFailed ??= `client process ${p} did not start: ${e.message}`;
    });
    const job: ClientJob = {
      url: clientUrl(p),
      ids,
      vanish: ids.filter((i) => drops.has(i)).map((i) => [i, drops.get(i)!]),
      numParams: P,
      connectPerSecond: o.connectPerSecond / procs,
    };
    child.send(job);
    children.push(child);
  }
  const expectedSurvivors = n - drops.size;
  let connectSeconds = NaN;
  let why = '';
  let final: ServerStatus | null = null;
  // Whole-run limit: connecting, three client phases and the unmask deadline, with room to spare.
  const limit = t0 + (n / o.connectPerSecond) * 1000 + 5 * phase + 120_000;
  const memory: SwarmBenchResult['serverMemoryByPhase'] = {};
  // Each scrape reports the loop delay since the previous one: keep the worst window's figures (the
  // worst window's p99 bounds the whole run's p99 from above).
  const loop: Record<(typeof LOOP_STATS)[number], number | null> = { p50: null, p99: null, max: null };
  const loopWindows: SwarmBenchResult['loopWindows'] = [];
  let gcBefore = gcAtStart;
  const foldLoopDelay = (text: string, phase: string): void => {
    const gc = text ? gcSoFar(text) : gcBefore; // a failed scrape: its window's GC goes to the next one
    const gcWindow = { seconds: gc.seconds - gcBefore.seconds, over100ms: gc.over100ms - gcBefore.over100ms };
    gcBefore = gc;
    const w: Partial<Record<(typeof LOOP_STATS)[number], number>> = {};
    for (const s of LOOP_STATS) {
      const v = metric(text, 'aegis_event_loop_delay_seconds', { stat: s });
      if (typeof v === 'number' && Number.isFinite(v)) loop[s] = Math.max(loop[s] ?? 0, (w[s] = v));
    }
    if (w.p99 !== undefined && w.max !== undefined)
      loopWindows.push({
        atSeconds: Math.round((Date.now() - t0) / 1000),
        phase,
        p99Ms: Math.round(w.p99 * 1000),
        maxMs: Math.round(w.max * 1000),
        gcMs: Math.round(gcWindow.seconds * 1000),
        gcOver100ms: gcWindow.over100ms,
      });
  };
  for (let tick = 0; ; tick++) {
    await sleep(2000);
    const s = await status();
    if (tick % 5 === 0 && s) {
      const m = await get('/metrics')
        .then((r) => r.text())
        .catch(() => '');
      const key = s.secagg.phase ? `secagg:${s.secagg.phase}` : s.phase;
      foldLoopDelay(m, key);
      const now = {
        rssMB: rssMB(srv.child.pid) ?? NaN,
        heapUsedMB: (metric(m, 'aegis_nodejs_heap_size_used_bytes') ?? NaN) / 2 ** 20,
        externalMB: (metric(m, 'aegis_nodejs_external_memory_bytes') ?? NaN) / 2 ** 20,
        loopMaxMs: (metric(m, 'aegis_event_loop_delay_seconds', { stat: 'max' }) ?? NaN) * 1000,
      };
      const was = memory[key];
      memory[key] = was
        ? {
            rssMB: Math.max(was.rssMB, now.rssMB),
            heapUsedMB: Math.max(was.heapUsedMB, now.heapUsedMB),
            externalMB: Math.max(was.externalMB, now.externalMB),
            loopMaxMs: Math.max(was.loopMaxMs, now.loopMaxMs),
          }
        : now;
    }
    const connected = reports.reduce((a, r) => a + r.connected, 0);
    if (Number.isNaN(connectSeconds) && connected >= n) connectSeconds = (Date.now() - t0) / 1000;
    const sent = (e: string): number => reports.reduce((a, r) => a + (r.sent[e] ?? 0), 0);
    o.progress?.(
      `${((Date.now() - t0) / 1000).toFixed(0)} s | connected ${connected}/${n} | server ${s?.phase ?? '?'}` +
        `${s?.secagg.phase ? `/${s.secagg.phase}` : ''} attempt ${s?.attempt ?? '?'} | keys ${sent('secagg:keys')}` +
        ` shares ${sent('secagg:shares')} masked ${sent('update')} reveals ${sent('secagg:reveal')}`,
    );
    if (s?.history.length) {
      final = s;
      break;
    }
    // An attempt that ended without a model: the server would retry it (attempt 2), or wait for ready
    // clients that this bench does not bring back.
    if (s && (s.attempt > 1 || (s.attempt === 1 && s.phase === 'waiting'))) {
      why = `the first attempt failed (the server retries it): see the server log`;
      break;
    }
    if (srv.child.exitCode !== null) {
      why = 'the server process exited';
      break;
    }
    if (startFailed) {
      why = startFailed;
      break;
    }
    if (Date.now() > limit) {
      why = `no round after ${((Date.now() - t0) / 1000).toFixed(0)} s`;
      break;
    }
  }
  const text = await get('/metrics')
    .then((r) => r.text())
    .catch(() => '');
  const w1 = final ? new Float32Array(await (await get('/api/model/weights')).arrayBuffer()) : null;
  const serverPeak = peakRssMB(srv.child.pid);
  const queued1 = runQueueSeconds(srv.child.pid);
  // The gateways' own figures (sockets, bytes) and Redis' traffic, before anything stops.
  const gatewayTexts = cluster
    ? await Promise.all(
        cluster.gateways.map((g) =>
          fetch(g.url + '/metrics')
            .then((r) => r.text())
            .catch(() => ''),
        ),
      )
    : [];
  const gatewayPeaks = cluster ? cluster.gateways.map((g) => peakRssMB(g.child.pid)) : [];
  const redisAfter = redisInfo ? await redisStats(redisInfo) : null;
  redisInfo?.disconnect();
  // Final counts from the client processes, then stop everything.
  for (const c of children) c.send({ stop: true });
  await Promise.race([
    Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r))))),
    sleep(10_000),
  ]);
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  if (cluster) await cluster.stop();
  else await srv.stop();

  const survivorsSent = new Set(reports.flatMap((r) => r.maskedSent));
  let maxError: number | null = null;
  let expectedExamples = 0;
  const survivorIds = Array.from({ length: n }, (_, i) => i + 1).filter((i) => !drops.has(i));
  for (const i of survivorIds) expectedExamples += benchExamples(i);
  if (w1) {
    const mean = new Float64Array(P);
    for (const i of survivorIds) {
      const d = benchDelta(i, P);
      const e = benchExamples(i);
      for (let j = 0; j < P; j++) mean[j] += e * d[j];
    }
    maxError = 0;
    for (let j = 0; j < P; j++)
      maxError = Math.max(maxError, Math.abs(w1[j] - w0[j] - mean[j] / expectedExamples));
  }
  const h = final?.history[0];
  foldLoopDelay(text, final ? 'round end' : 'end');
  const totalSent = reports.reduce((a, r) => a + Object.values(r.sent).reduce((x, y) => x + y, 0), 0);
  // Exact: the example count lives inside the masked vectors, so one wrong mask would garble it.
  const exact =
    h !== undefined &&
    h.clients === expectedSurvivors &&
    h.examples === expectedExamples &&
    maxError !== null &&
    maxError < 1e-4;
  if (final && !exact)
    why = `round completed but not with the exact sum (clients ${h?.clients}/${expectedSurvivors}, examples ${h?.examples}/${expectedExamples}, max error ${maxError})`;
  return {
    ok: final !== null && exact,
    why: final && exact ? 'one secure round, exact sum of the survivors' : why,
    clients: n,
    dropAfterKeys: o.dropAfterKeys,
    dropAfterShares: o.dropAfterShares,
    model: o.model.name,
    numParams: P,
    k: final?.secagg.k ?? null,
    t: final?.secagg.t ?? null,
    processes: procs,
    clientNice: nice,
    clientNiceReported: reports.map((r) => r.nice),
    serverNodeArgs: process.env.AEGISFL_SERVER_NODE_ARGS || null,
    secaggDropout: o.secaggDropout,
    phaseDeadlineMs: phase,
    connectSeconds,
    roundSeconds: h ? h.durationMs / 1000 : null,
    phaseSeconds: histogramSums(text, 'aegis_secagg_phase_seconds', 'phase'),
    unmaskSeconds: metric(text, 'aegis_secagg_unmask_seconds_sum') ?? null,
    survivors: h?.clients ?? null,
    expectedSurvivors,
    examples: h?.examples ?? null,
    expectedExamples,
    maxError,
    serverCpuSeconds: metric(text, 'aegis_process_cpu_seconds_total') ?? null,
    serverPeakRssMB: serverPeak,
    serverRunQueueSeconds: queued0 !== null && queued1 !== null ? queued1 - queued0 : null,
    serverMemoryByPhase: memory,
    loopDelay: loop,
    loopWindows,
    perClient: {
      messagesSent: totalSent / n,
      messagesReceived: reports.reduce((a, r) => a + r.received, 0) / n,
      bytesSent: socketBytes(cluster ? gatewayTexts : [text], 'aegis_bytes_received_total') / n,
      bytesReceived: socketBytes(cluster ? gatewayTexts : [text], 'aegis_bytes_sent_total') / n,
    },
    cluster:
      cluster && redisBefore && redisAfter
        ? {
            gateways: G,
            gatewaySum: o.gatewaySum !== false,
            gatewayCpuSeconds: gatewayTexts.map((t) => metric(t, 'aegis_process_cpu_seconds_total') ?? NaN),
            gatewayPeakRssMB: gatewayPeaks,
            redisCpuSeconds: redisAfter.cpuSeconds - redisBefore.cpuSeconds,
            redisPeakMemoryMB: redisAfter.peakMemoryBytes / 2 ** 20,
            redisBytesInPerClient: (redisAfter.bytesIn - redisBefore.bytesIn) / n,
            redisBytesOutPerClient: (redisAfter.bytesOut - redisBefore.bytesOut) / n,
          }
        : null,
    clientErrors: [...new Set(reports.flatMap((r) => r.errors))].slice(0, 10),
    clientDisconnects: reports.reduce<Record<string, number>>((all, r) => {
      for (const [why, c] of Object.entries(r.disconnects ?? {})) all[why] = (all[why] ?? 0) + c;
      return all;
    }, {}),
    serverTail: srv.output().split('\n').slice(-15).join('\n'),
    ...(survivorsSent.size !== expectedSurvivors ? { maskedInputsSent: survivorsSent.size } : {}),
  };
}

export const DEFAULT_MODEL = MODELS.tiny;
