import { parseArgs } from 'node:util';
import { MODELS, modelByName, type ModelSpec } from '../shared/model/spec.ts';
import { checkTask, isImageTask, MAX_PLAN_STEPS, type CheckedTask, type Task } from '../shared/model/task.ts';
import { readTaskFile } from './task-file.ts';
import {
  isLocalOptimizer,
  LOCAL_OPTIMIZERS,
  MAX_PLAN_EPOCHS,
  type LocalOptimizer,
} from '../shared/protocol/messages.ts';
import { noiseForEpsilon } from '../shared/dp/calibrate.ts';
import { valueNoiseMultiplier } from '../shared/dp/adaptive-clip.ts';
import type { PartitionScheme } from '../shared/fl/partition.ts';
import { hexToBytes } from '@noble/hashes/utils.js';
import { checkSigningKey } from '../shared/secagg/consistency.ts';
import { SECAGG_MIN_COHORT } from '../shared/secagg/graph.ts';
import { parseTrustedProxy, type TrustedProxy } from './address.ts';
import { normalizeOrigin } from './join-token.ts';
import {
  SERVER_OPTIMIZERS,
  SERVER_OPTIMIZER_DEFAULTS,
  type ServerOptimizerConfig,
  type ServerOptimizerName,
} from '../shared/fl/server-opt.ts';

export const SERVER_ROLES = ['all', 'coordinator', 'gateway'] as const;
export type ServerRole = (typeof SERVER_ROLES)[number];

export interface DpConfig {
  /** Total noise multiplier z per round (std of the noise on the SUM / clip norm). */
  noiseMultiplier: number;
  /** L2 clip norm C (the initial one with adaptive clipping). */
  clipNorm: number;
  epsilonBudget: number;
  delta: number;
  /** Population the cohort is sampled from; 0 = unknown, account with q = 1 (no amplification). */
  population: number;
  adaptive: { targetQuantile: number; learningRate: number; indicatorStd: number } | null;
}

/** Every limit is a named value with a default, validated at start-up, listed in the README's flag table. */
export interface ServerConfig {
  port: number;
  host: string;
  tlsCert?: string;
  tlsKey?: string;
  model: ModelSpec;
  /**
   * --task: the task file's name, model and shapes (its plan was copied into epochs..augment); null =
   * today's task, the --model preset on CIFAR-10 images. serverTask() gives the whole task.
   */
  task: Omit<Task, 'plan'> | null;
  /** --task-eval: the operator's held-out set for the task (JSON { "x": [[...]], "y": [...] }). */
  taskEval?: string;
  /** Rounds to run; 0 = until stopped. */
  rounds: number;
  /** Ready clients needed before a round starts. */
  minClients: number;
  /** Clients selected per round (at most). */
  clientsPerRound: number;
  /**
   * Over-selection: invite ceil(clientsPerRound x this) clients, and fix the cohort at the first step
   * (secure rounds: key advertising, R0; plain rounds: the update) with the first clientsPerRound to answer;
   * the rest are released. 1 = off. Refused with --dp-population (keeping the fastest is not Poisson sampling).
   */
  overSelect: number;
  /** Accepted updates needed to complete a round at its deadline; fewer -> the round is retried. */
  minUpdates: number;
  roundDeadlineMs: number;
  /** Pause between rounds and before retrying a round that missed --min-updates. */
  roundPauseMs: number;
  epochs: number;
  /** Local steps a round instead of epochs (every client the same work whatever its data); 0 = epochs. */
  localSteps: number;
  batchSize: number;
  learningRate: number;
  optimizer: LocalOptimizer;
  serverLearningRate: number;
  /** Server optimizer on the aggregate (its lr is serverLearningRate). */
  serverOptimizer: Omit<ServerOptimizerConfig, 'lr'>;
  /** FedProx proximal weight mu on the clients (0 = plain local training). */
  proximalMu: number;
  /** Clients augment their batches (random crop + mirror). */
  augment: boolean;
  /** Clients train on the logit-adjusted loss of their own label mix (for label skew). */
  logitAdjust: boolean;
  /** How client data is split: IID (optionally unbalanced), Dirichlet label skew, or label shards. */
  partition: PartitionScheme;
  /** Synthetic: examples generated per client; CIFAR-10: examples per shard. */
  examplesPerClient: number;
  testExamples: number;
  /** Directory with CIFAR-10 binaries; synthetic data when unset. */
  cifarDir?: string;
  /** Where the run's state is kept (checkpoint, privacy ledger); unset = nothing persists. */
  stateDir?: string;
  /**
   * What this process does: all (one process, the default: sockets and rounds), coordinator (rounds,
   * ledger and model over --redis; no client sockets) or gateway (client sockets over --redis; no rounds).
   */
  role: ServerRole;
  /** redis://host:port of the shared bus and state (coordinator and gateway roles); unset with role all. */
  redis?: string;
  /**
   * Gateways sum their clients' masked inputs and send the coordinator one partial sum per flush (secure
   * rounds); off: every masked vector is forwarded to the coordinator (docs/scale-out.md compares them).
   */
  gatewaySum: boolean;
  seed: number;
  /** Largest socket.io message accepted; bigger ones close the connection at the transport. */
  maxMessageBytes: number;
  /** Largest numExamples a client may claim (bounds its FedAvg weight). */
  maxExamplesPerClient: number;
  /** Directory of the built demo/client bundle (vite build). */
  distDir: string;
  /** Where model.json + weights.bin (TensorFlow.js Layers format) are written after each round; unset = not saved. */
  saveModel?: string;
  logLevel: 'info' | 'quiet';
  /** Secure aggregation (privacy.md C); off sends plain float32 updates unless DP is on. */
  secagg: boolean;
  secaggKeysDeadlineMs: number;
  secaggSharesDeadlineMs: number;
  secaggUnmaskDeadlineMs: number;
  /** Assumed dropout rate and colluding fraction, for the SecAgg+ neighbour degree. */
  secaggDropout: number;
  secaggCorrupt: number;
  /** Shamir threshold as a fraction of the neighbour degree: t = floor(f k) + 1. */
  secaggThreshold: number;
  /** Assume the server may split its unmask requests: t is raised until that exposes no one (< 2^-40). */
  secaggMaliciousServer: boolean;
  /**
   * Authenticated keys and the consistency round (Bonawitz et al. 2017, R3): every client's keys must carry
   * an identity attested under siteAttestationKey, and survivors sign U3 before anyone reveals a share.
   */
  secaggConsistency: boolean;
  /** The embedding site's Ed25519 attestation public key (32 bytes); required by secaggConsistency. */
  siteAttestationKey: Uint8Array | null;
  /** Each coordinate of an encoded update is clipped to +-coordClip (after any L2 clip). */
  coordClip: number;
  /**
   * Keep-old-model guard: a new model whose test loss exceeds the current one's by more than this many
   * nats is discarded (the round is recorded as rejected). 0 = off.
   */
  maxLossIncrease: number;
  dp: DpConfig | null;
  /** A disconnected client's session is held this long, then forgotten (a valid resume token recreates it). */
  sessionTtlMs: number;
  /** Most sessions held at once (connected or resumable). */
  maxSessions: number;
  /** Messages one socket may send: a sustained rate and a burst. */
  socketRate: number;
  socketBurst: number;
  /** New connections one address may open: a sustained rate and a burst. */
  addressRate: number;
  addressBurst: number;
  /** Proxies trusted to name the client's address in X-Forwarded-For (see server/address.ts). */
  trustedProxy: TrustedProxy;
  /**
   * Origins whose pages may connect and read the embed bundle (CORS); the server's own pages always may.
   * null: any origin (development).
   */
  allowedOrigins: string[] | null;
  /** File with the hex key join tokens are signed with; set, every new connection needs a token. */
  joinTokenKey?: string;
  /** File with the key before the last rotation: its tokens stay valid until they expire. */
  joinTokenKeyPrevious?: string;
  /** Longest remaining life a join token may have (exp - now), seconds. */
  joinTokenMaxTtlS: number;
  /** File with the operator's secret for POST /api/join-token; unset, the route does not exist. */
  operatorKey?: string;
}

export const DEFAULTS: ServerConfig = {
  port: 8080,
  host: '0.0.0.0',
  model: MODELS.small,
  task: null,
  rounds: 0,
  minClients: 2,
  clientsPerRound: 10,
  overSelect: 1,
  minUpdates: 2,
  roundDeadlineMs: 120_000,
  roundPauseMs: 1_000,
  epochs: 1,
  localSteps: 0,
  batchSize: 32,
  learningRate: 0.002,
  optimizer: 'adam',
  serverLearningRate: 1,
  serverOptimizer: { name: 'fedavg', ...SERVER_OPTIMIZER_DEFAULTS },
  proximalMu: 0,
  augment: false,
  logitAdjust: false,
  partition: { kind: 'iid' },
  examplesPerClient: 256,
  testExamples: 1000,
  seed: 1,
  maxMessageBytes: 16 * 1024 * 1024,
  maxExamplesPerClient: 4 * 256,
  distDir: 'dist',
  role: 'all',
  gatewaySum: true,
  logLevel: 'info',
  secagg: true,
  secaggKeysDeadlineMs: 20_000,
  secaggSharesDeadlineMs: 20_000,
  secaggUnmaskDeadlineMs: 20_000,
  secaggDropout: 0.1,
  secaggCorrupt: 0.05,
  secaggThreshold: 0.5,
  secaggMaliciousServer: false,
  secaggConsistency: false,
  siteAttestationKey: null,
  coordClip: 0.5,
  maxLossIncrease: 1,
  dp: null,
  sessionTtlMs: 10 * 60_000,
  maxSessions: 50_000,
  socketRate: 20,
  socketBurst: 100,
  addressRate: 20,
  addressBurst: 200,
  trustedProxy: { kind: 'none' },
  allowedOrigins: null,
  joinTokenMaxTtlS: 600,
};

export const FLAGS = {
  port: { type: 'string', help: 'TCP port (HTTP and socket.io share it)' },
  host: { type: 'string', help: 'interface to bind' },
  'tls-cert': { type: 'string', help: 'PEM certificate: serve HTTPS/WSS (needs --tls-key)' },
  'tls-key': { type: 'string', help: 'PEM private key for --tls-cert' },
  model: { type: 'string', help: `model preset: ${Object.keys(MODELS).join(' | ')}` },
  task: {
    type: 'string',
    help: 'task file (JSON, docs/tasks.md): model topology or preset, input shape, classes, training plan',
  },
  'task-eval': {
    type: 'string',
    help: 'held-out set for --task (JSON { "x": [[features]], "y": [labels] }); needed for non-image tasks',
  },
  rounds: { type: 'string', help: 'rounds to run, 0 = until stopped' },
  'min-clients': { type: 'string', help: 'ready clients needed to start a round' },
  'clients-per-round': { type: 'string', help: 'clients selected per round (at most)' },
  'over-select': {
    type: 'string',
    help: 'invite this many times --clients-per-round; the first to advertise keys (or report) form the cohort',
  },
  'min-updates': { type: 'string', help: 'updates needed to complete a round at its deadline' },
  'round-deadline-ms': { type: 'string', help: 'ms after round start when stragglers are dropped' },
  'round-pause-ms': { type: 'string', help: 'pause between rounds' },
  epochs: { type: 'string', help: 'local epochs per round' },
  'local-steps': { type: 'string', help: 'local steps (batches) per round instead of epochs; 0 = epochs' },
  'batch-size': { type: 'string', help: 'local batch size' },
  lr: { type: 'string', help: 'client learning rate' },
  optimizer: { type: 'string', help: 'client optimizer: sgd | momentum (0.9) | adam' },
  'server-lr': { type: 'string', help: 'server learning rate applied to the aggregate delta' },
  'server-opt': { type: 'string', help: `server optimizer: ${SERVER_OPTIMIZERS.join(' | ')}` },
  'server-momentum': { type: 'string', help: 'FedAvgM momentum' },
  'server-beta1': { type: 'string', help: 'FedAdam/FedYogi/FedAdagrad first-moment decay' },
  'server-beta2': { type: 'string', help: 'FedAdam/FedYogi second-moment decay' },
  'server-tau': { type: 'string', help: 'adaptivity tau of the adaptive server optimizers' },
  'prox-mu': { type: 'string', help: 'FedProx proximal term mu on the clients (0 = off)' },
  augment: { type: 'string', help: 'client data augmentation, random crop + mirror: on | off' },
  'logit-adjust': {
    type: 'string',
    help: 'clients train on softmax(z + log pi) with pi their own label mix, for label skew: on | off',
  },
  partition: { type: 'string', help: 'client data split: iid | dirichlet | shards' },
  'dirichlet-alpha': {
    type: 'string',
    help: 'label-skew concentration for --partition dirichlet (small = skewed)',
  },
  'shards-per-client': { type: 'string', help: 'label-sorted shards per client for --partition shards' },
  'unbalanced-sigma': {
    type: 'string',
    help: 'log-normal sigma of client sizes for --partition iid (0 = equal)',
  },
  'examples-per-client': { type: 'string', help: 'examples per client (synthetic) or per CIFAR-10 shard' },
  'test-examples': { type: 'string', help: 'held-out examples for server evaluation' },
  'cifar-dir': { type: 'string', help: 'directory with CIFAR-10 data_batch_*.bin / test_batch.bin' },
  seed: { type: 'string', help: 'seed for data generation, sharding and initial weights' },
  'max-message-bytes': {
    type: 'string',
    help: 'largest accepted socket.io message',
  },
  'max-examples-per-client': {
    type: 'string',
    help: 'largest numExamples a client may claim; the public cap ring weights are divided by',
  },
  'dist-dir': { type: 'string', help: 'built client/demo bundle to serve' },
  'save-model': {
    type: 'string',
    help: 'directory to write the global model into after each round (TensorFlow.js Layers files)',
  },
  'state-dir': {
    type: 'string',
    help: 'keep the run here (model, optimizer, privacy ledger) and resume from it on start',
  },
  role: {
    type: 'string',
    help: 'all (one process) | coordinator (rounds, ledger, model; over --redis) | gateway (client sockets; over --redis)',
  },
  redis: {
    type: 'string',
    help: 'redis://host:port shared by the coordinators and gateways (bus, leader lease, run state)',
  },
  'gateway-sum': {
    type: 'string',
    help: "on | off: gateways sum their clients' masked inputs (secure rounds) instead of forwarding each",
  },
  quiet: { type: 'boolean', help: 'log only errors' },
  secagg: { type: 'string', help: 'secure aggregation: on | off (off = plain updates, for comparison)' },
  'secagg-keys-deadline-ms': { type: 'string', help: 'ms for clients to advertise keys (SecAgg R0)' },
  'secagg-shares-deadline-ms': { type: 'string', help: 'ms for clients to send key shares (SecAgg R1)' },
  'secagg-unmask-deadline-ms': { type: 'string', help: 'ms for survivors to reveal shares (SecAgg R4)' },
  'secagg-dropout': { type: 'string', help: 'assumed dropout rate, sets the SecAgg+ neighbour degree' },
  'secagg-corrupt': { type: 'string', help: 'assumed colluding fraction of clients, sets the degree' },
  'secagg-threshold': {
    type: 'string',
    help: 'Shamir threshold as a fraction of the degree (t = floor(f k) + 1)',
  },
  'secagg-malicious-server': {
    type: 'string',
    help: 'on: raise t so a server splitting its unmask requests exposes no one (< 2^-40)',
  },
  'secagg-consistency': {
    type: 'string',
    help: 'on | off: authenticated keys + consistency round (survivors sign U3); needs --site-attestation-key',
  },
  'site-attestation-key': {
    type: 'string',
    help: "hex Ed25519 public key with which the embedding site attests its visitors' identity keys",
  },
  'coord-clip': { type: 'string', help: 'per-coordinate clip of encoded updates' },
  'max-loss-increase': {
    type: 'string',
    help: 'discard a new model whose test loss rises more than this (nats) over the current one; 0 = off',
  },
  'dp-noise': { type: 'string', help: 'DP noise multiplier z (std on the sum / clip); 0 = DP off' },
  'dp-epsilon': { type: 'string', help: 'DP budget: training stops before a round would exceed it' },
  'dp-delta': { type: 'string', help: 'DP delta' },
  'dp-rounds': {
    type: 'string',
    help: 'with --dp-epsilon and no --dp-noise: derive z to last this many rounds',
  },
  'dp-clip': { type: 'string', help: 'L2 clip norm C of each update (initial value if adaptive)' },
  'dp-population': {
    type: 'string',
    help: 'clients the cohort is drawn from (q = clients-per-round / population); 0 = unknown, q = 1',
  },
  'dp-adaptive-clip': { type: 'boolean', help: 'learn C toward a quantile of update norms (privately)' },
  'dp-target-quantile': { type: 'string', help: 'adaptive clipping: target quantile gamma' },
  'dp-clip-lr': { type: 'string', help: 'adaptive clipping: geometric learning rate eta' },
  'dp-indicator-std': {
    type: 'string',
    help: 'adaptive clipping: noise std sigma_b on the clipped count',
  },
  'session-ttl-ms': {
    type: 'string',
    help: "ms a disconnected client's session is held (resume tokens outlive it)",
  },
  'max-sessions': { type: 'string', help: 'most client sessions held (the longest-disconnected go first)' },
  'socket-rate': { type: 'string', help: 'messages per second one socket may send (sustained)' },
  'socket-burst': { type: 'string', help: 'messages one socket may send at once' },
  'address-rate': { type: 'string', help: 'new connections per second from one address (sustained)' },
  'address-burst': { type: 'string', help: 'new connections one address may open at once' },
  'trusted-proxy': {
    type: 'string',
    help: 'proxies whose X-Forwarded-For names the client: a hop count, or IPs/CIDRs',
  },
  'allowed-origins': {
    type: 'string',
    help: "comma-separated origins whose pages may connect and load the embed (the server's own always may)",
  },
  'join-token-key': {
    type: 'string',
    help: 'file with the hex key of join tokens; set, every connection needs a valid token (production)',
  },
  'join-token-key-previous': {
    type: 'string',
    help: 'file with the key before the last rotation (its tokens stay valid until they expire)',
  },
  'join-token-max-ttl': { type: 'string', help: 'longest join-token lifetime accepted, in seconds' },
  'operator-key': {
    type: 'string',
    help: 'file with the secret for POST /api/join-token (Authorization: Bearer); unset, no such route',
  },
  help: { type: 'boolean', help: 'print this help' },
} as const;

function int(
  name: string,
  v: string | undefined,
  def: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`--${name} must be an integer in ${min}..${max}, got "${v}"`);
  return n;
}

function num(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max)
    throw new Error(`--${name} must be a number in ${min}..${max}, got "${v}"`);
  return n;
}

/** --partition and its parameters; shared with the simulator's CLI. */
export function parsePartition(s: (k: string) => string | undefined): PartitionScheme {
  const kind = s('partition') ?? 'iid';
  const only = (allowed: string[]) => {
    for (const k of ['dirichlet-alpha', 'shards-per-client', 'unbalanced-sigma']) {
      if (!allowed.includes(k) && s(k) !== undefined)
        throw new Error(`--${k} does not apply to --partition ${kind}`);
    }
  };
  if (kind === 'iid') {
    only(['unbalanced-sigma']);
    const sigma = num('unbalanced-sigma', s('unbalanced-sigma'), 0, 0, 3);
    return sigma > 0 ? { kind, unbalancedSigma: sigma } : { kind };
  }
  if (kind === 'dirichlet') {
    only(['dirichlet-alpha']);
    return { kind, alpha: num('dirichlet-alpha', s('dirichlet-alpha'), 0.5, 1e-3, 1e4) };
  }
  if (kind === 'shards') {
    only(['shards-per-client']);
    return { kind, shardsPerClient: int('shards-per-client', s('shards-per-client'), 2, 1, 100) };
  }
  throw new Error(`--partition must be iid, dirichlet or shards, got "${kind}"`);
}

function serverOptName(v: string): ServerOptimizerName {
  if (!SERVER_OPTIMIZERS.includes(v as ServerOptimizerName))
    throw new Error(`--server-opt must be one of ${SERVER_OPTIMIZERS.join(', ')}, got "${v}"`);
  return v as ServerOptimizerName;
}

function onOff(name: string, v: string | undefined, def: boolean): boolean {
  if (v === undefined) return def;
  if (v === 'on' || v === 'true') return true;
  if (v === 'off' || v === 'false') return false;
  throw new Error(`--${name} must be on or off, got "${v}"`);
}

/** DP is on when --dp-noise > 0, or when --dp-epsilon and --dp-rounds ask for z to be derived. */
function parseDp(
  s: (k: string) => string | undefined,
  adaptive: boolean,
  clientsPerRound: number,
): DpConfig | null {
  const noise = num('dp-noise', s('dp-noise'), 0, 0, 1e4);
  const rounds = int('dp-rounds', s('dp-rounds'), 0, 0);
  if (noise === 0 && rounds === 0) {
    for (const k of ['dp-epsilon', 'dp-clip', 'dp-population'])
      if (s(k) !== undefined) throw new Error(`--${k} needs --dp-noise (or --dp-epsilon with --dp-rounds)`);
    if (adaptive) throw new Error('--dp-adaptive-clip needs --dp-noise (or --dp-epsilon with --dp-rounds)');
    return null;
  }
  if (s('dp-epsilon') === undefined) throw new Error('DP needs a budget: set --dp-epsilon');
  const epsilonBudget = num('dp-epsilon', s('dp-epsilon'), 0, 1e-3, 1e6);
  const delta = num('dp-delta', s('dp-delta'), 1e-5, 1e-12, 0.1);
  const population = int('dp-population', s('dp-population'), 0, 0);
  if (population > 0 && population < clientsPerRound)
    throw new Error('--dp-population cannot be below --clients-per-round');
  const q = population > 0 ? clientsPerRound / population : 1;
  const noiseMultiplier = noise > 0 ? noise : noiseForEpsilon(epsilonBudget, delta, q, rounds);
  const dp: DpConfig = {
    noiseMultiplier,
    clipNorm: num('dp-clip', s('dp-clip'), 0.1, 1e-6, 1e6),
    epsilonBudget,
    delta,
    population,
    adaptive: adaptive
      ? {
          targetQuantile: num('dp-target-quantile', s('dp-target-quantile'), 0.5, 0.01, 0.99),
          learningRate: num('dp-clip-lr', s('dp-clip-lr'), 0.2, 1e-4, 10),
          indicatorStd: num('dp-indicator-std', s('dp-indicator-std'), 0.05 * clientsPerRound, 1e-3, 1e6),
        }
      : null,
  };
  if (dp.adaptive) valueNoiseMultiplier(dp.noiseMultiplier, dp.adaptive.indicatorStd); // throws with the fix to make
  return dp;
}

/** Clients invited per round: --clients-per-round, over-selected by --over-select. */
export function invitedPerRound(c: Pick<ServerConfig, 'clientsPerRound' | 'overSelect'>): number {
  // The epsilon keeps 5 x 1.4 at 7 (floating point gives 7.000000000000001).
  return Math.ceil(c.clientsPerRound * c.overSelect - 1e-9);
}

/** Sampling rate the accountant uses. */
export function samplingRate(c: Pick<ServerConfig, 'clientsPerRound' | 'dp'>): number {
  return c.dp && c.dp.population > 0 ? c.clientsPerRound / c.dp.population : 1;
}

/** One update of a model of `numParams` (its ring vector is 3 words longer than the float one) plus 64 KiB. */
export function updateMessageBytes(numParams: number): number {
  return (numParams + 3) * 4 + 64 * 1024;
}

/** The flags a task file's plan sets: refused beside --task, so the file is the one place it is written. */
const PLAN_FLAGS = [
  'epochs',
  'local-steps',
  'batch-size',
  'lr',
  'optimizer',
  'prox-mu',
  'augment',
  'logit-adjust',
] as const;

const checkedTasks = new WeakMap<object, CheckedTask>();

/**
 * The task this server trains, checked: the --task file's model and shapes (or the --model preset on
 * CIFAR-10) with the plan of --epochs, --local-steps, --batch-size, --lr, --optimizer, --prox-mu, --augment
 * and --logit-adjust (which the task file sets). Its hash is what clients pin.
 */
export function serverTask(
  c: Pick<
    ServerConfig,
    | 'model'
    | 'task'
    | 'epochs'
    | 'localSteps'
    | 'batchSize'
    | 'learningRate'
    | 'optimizer'
    | 'proximalMu'
    | 'augment'
    | 'logitAdjust'
  >,
): CheckedTask {
  const hit = checkedTasks.get(c);
  if (hit) return hit;
  const base = c.task ?? {
    name: c.model.name,
    model: { preset: c.model.name },
    inputShape: [32, 32, 3],
    numClasses: 10,
  };
  const checked = checkTask({
    ...base,
    plan: {
      epochs: c.epochs,
      ...(c.localSteps > 0 ? { steps: c.localSteps } : {}),
      batchSize: c.batchSize,
      learningRate: c.learningRate,
      optimizer: c.optimizer,
      proximalMu: c.proximalMu,
      augment: c.augment,
      logitAdjust: c.logitAdjust,
    },
  });
  checkedTasks.set(c, checked);
  return checked;
}

const onOffText = (b: boolean): string => (b ? 'on' : 'off');

/** What --help shows as each flag's default (null: none); derived from DEFAULTS where one value applies. */
const SHOWN_DEFAULTS: { readonly [K in keyof typeof FLAGS]: string | null } = {
  port: String(DEFAULTS.port),
  host: DEFAULTS.host,
  'tls-cert': null,
  'tls-key': null,
  model: DEFAULTS.model.name,
  task: 'none: the --model preset on CIFAR-10 images',
  'task-eval': 'none: the synthetic or CIFAR-10 test set',
  rounds: String(DEFAULTS.rounds),
  'min-clients': String(DEFAULTS.minClients),
  'clients-per-round': String(DEFAULTS.clientsPerRound),
  'over-select': '1 (off)',
  'min-updates': String(DEFAULTS.minUpdates),
  'round-deadline-ms': String(DEFAULTS.roundDeadlineMs),
  'round-pause-ms': String(DEFAULTS.roundPauseMs),
  epochs: String(DEFAULTS.epochs),
  'local-steps': `${DEFAULTS.localSteps} (epochs)`,
  'batch-size': String(DEFAULTS.batchSize),
  lr: String(DEFAULTS.learningRate),
  optimizer: DEFAULTS.optimizer,
  'server-lr': String(DEFAULTS.serverLearningRate),
  'server-opt': DEFAULTS.serverOptimizer.name,
  'server-momentum': String(DEFAULTS.serverOptimizer.momentum),
  'server-beta1': String(DEFAULTS.serverOptimizer.beta1),
  'server-beta2': String(DEFAULTS.serverOptimizer.beta2),
  'server-tau': String(DEFAULTS.serverOptimizer.tau),
  'prox-mu': String(DEFAULTS.proximalMu),
  augment: onOffText(DEFAULTS.augment),
  'logit-adjust': onOffText(DEFAULTS.logitAdjust),
  partition: DEFAULTS.partition.kind,
  'dirichlet-alpha': '0.5',
  'shards-per-client': '2',
  'unbalanced-sigma': '0',
  'examples-per-client': String(DEFAULTS.examplesPerClient),
  'test-examples': String(DEFAULTS.testExamples),
  'cifar-dir': 'data/cifar10 when it holds the binaries (npm run data:cifar10), else synthetic data',
  seed: String(DEFAULTS.seed),
  'max-message-bytes': 'one update of the model + 64 KiB',
  'max-examples-per-client': '4 x --examples-per-client',
  'dist-dir': DEFAULTS.distDir,
  'save-model': null,
  'state-dir': 'none: nothing persists',
  role: 'all',
  redis: 'none (needed by --role coordinator and gateway)',
  'gateway-sum': 'on',
  quiet: null,
  secagg: onOffText(DEFAULTS.secagg),
  'secagg-keys-deadline-ms': String(DEFAULTS.secaggKeysDeadlineMs),
  'secagg-shares-deadline-ms': String(DEFAULTS.secaggSharesDeadlineMs),
  'secagg-unmask-deadline-ms': String(DEFAULTS.secaggUnmaskDeadlineMs),
  'secagg-dropout': String(DEFAULTS.secaggDropout),
  'secagg-corrupt': String(DEFAULTS.secaggCorrupt),
  'secagg-threshold': String(DEFAULTS.secaggThreshold),
  'secagg-malicious-server': onOffText(DEFAULTS.secaggMaliciousServer),
  'secagg-consistency': onOffText(DEFAULTS.secaggConsistency),
  'site-attestation-key': null,
  'coord-clip': String(DEFAULTS.coordClip),
  'max-loss-increase': String(DEFAULTS.maxLossIncrease),
  'dp-noise': '0',
  'dp-epsilon': null,
  'dp-delta': '1e-5',
  'dp-rounds': null,
  'dp-clip': '0.1',
  'dp-population': '0',
  'dp-adaptive-clip': null,
  'dp-target-quantile': '0.5',
  'dp-clip-lr': '0.2',
  'dp-indicator-std': '0.05 x --clients-per-round',
  'session-ttl-ms': String(DEFAULTS.sessionTtlMs),
  'max-sessions': String(DEFAULTS.maxSessions),
  'socket-rate': String(DEFAULTS.socketRate),
  'socket-burst': String(DEFAULTS.socketBurst),
  'address-rate': String(DEFAULTS.addressRate),
  'address-burst': String(DEFAULTS.addressBurst),
  'trusted-proxy': DEFAULTS.trustedProxy.kind,
  'allowed-origins': 'any',
  'join-token-key': 'none: no token needed',
  'join-token-key-previous': null,
  'join-token-max-ttl': String(DEFAULTS.joinTokenMaxTtlS),
  'operator-key': null,
  help: null,
};

/** The flag's default as --help shows it, or null when it has none (a switch, or unset). */
export function shownDefault(flag: keyof typeof FLAGS): string | null {
  return SHOWN_DEFAULTS[flag];
}

/** One row per flag: name (with <value> for flags that take one), description, default; columns aligned. */
export function helpText(): string {
  const names = Object.entries(FLAGS).map(([k, f]) => `--${k}${f.type === 'string' ? ' <value>' : ''}`);
  const width = Math.max(...names.map((n) => n.length));
  const rows = Object.entries(FLAGS).map(([k, f], i) => {
    const def = SHOWN_DEFAULTS[k as keyof typeof FLAGS];
    return `  ${names[i].padEnd(width)}  ${f.help}${def === null ? '' : ` (default: ${def})`}`;
  });
  return `Usage: npm start -- [flags]\n\n${rows.join('\n')}\n`;
}

/** --site-attestation-key: 64 hex digits, a usable Ed25519 public key. */
function parseSiteKey(v: string | undefined): Uint8Array | null {
  if (v === undefined) return null;
  if (!/^[0-9a-fA-F]{64}$/.test(v))
    throw new Error('--site-attestation-key must be 64 hex digits (32 bytes)');
  const key = hexToBytes(v.toLowerCase());
  const bad = checkSigningKey(key);
  if (bad) throw new Error(`--site-attestation-key is not a usable Ed25519 public key (${bad})`);
  return key;
}

/** --allowed-origins: comma-separated origins (scheme://host[:port]), at least one. */
function parseOrigins(v: string | undefined): string[] | null {
  if (v === undefined) return null;
  const list = v
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
  if (list.length === 0) throw new Error('--allowed-origins needs at least one origin');
  try {
    return [...new Set(list.map(normalizeOrigin))];
  } catch (e) {
    throw new Error(`--allowed-origins: ${(e as Error).message}`);
  }
}

/** Parses argv into a validated config; throws with a message naming the flag on bad input. */
export function parseConfig(argv: string[]): ServerConfig & { help: boolean } {
  const { values: v } = parseArgs({
    args: argv,
    options: FLAGS as never,
    strict: true,
    allowPositionals: false,
  }) as { values: Record<string, string | boolean | undefined> };
  const s = (k: string): string | undefined => v[k] as string | undefined;
  const d = DEFAULTS;
  const optimizer = s('optimizer') ?? d.optimizer;
  if (!isLocalOptimizer(optimizer))
    throw new Error(`--optimizer must be one of ${LOCAL_OPTIMIZERS.join(', ')}; got "${optimizer}"`);
  // Parsed first: the defaults of --max-message-bytes and --max-examples-per-client follow from them.
  const model = s('model') ? modelByName(s('model')!) : d.model;
  const file = s('task') === undefined ? null : readTaskFile(s('task')!);
  if (file) {
    if (s('model') !== undefined)
      throw new Error('--model and --task go apart: the task file names its model');
    for (const f of PLAN_FLAGS)
      if (s(f) !== undefined) throw new Error(`--${f} is set by the --task file's plan`);
  } else if (s('task-eval') !== undefined) throw new Error('--task-eval needs --task');
  const plan = file?.task.plan;
  const localSteps = plan
    ? (plan.steps ?? 0)
    : int('local-steps', s('local-steps'), d.localSteps, 0, MAX_PLAN_STEPS);
  if (s('epochs') !== undefined && localSteps > 0)
    throw new Error('--epochs and --local-steps go apart: steps replace epochs');
  const examplesPerClient = int(
    'examples-per-client',
    s('examples-per-client'),
    d.examplesPerClient,
    1,
    50_000,
  );
  const cfg: ServerConfig & { help: boolean } = {
    help: v.help === true,
    port: int('port', s('port'), d.port, 0, 65535),
    host: s('host') ?? d.host,
    tlsCert: s('tls-cert'),
    tlsKey: s('tls-key'),
    model,
    task: file
      ? {
          name: file.task.name,
          model: file.task.model,
          inputShape: file.task.inputShape,
          numClasses: file.task.numClasses,
        }
      : null,
    taskEval: s('task-eval'),
    rounds: int('rounds', s('rounds'), d.rounds, 0),
    minClients: int('min-clients', s('min-clients'), d.minClients, 1, 100_000),
    clientsPerRound: int('clients-per-round', s('clients-per-round'), d.clientsPerRound, 1, 100_000),
    overSelect: num('over-select', s('over-select'), d.overSelect, 1, 4),
    minUpdates: int('min-updates', s('min-updates'), d.minUpdates, 1, 100_000),
    roundDeadlineMs: int('round-deadline-ms', s('round-deadline-ms'), d.roundDeadlineMs, 100),
    roundPauseMs: int('round-pause-ms', s('round-pause-ms'), d.roundPauseMs, 0),
    epochs: plan?.epochs ?? int('epochs', s('epochs'), d.epochs, 1, MAX_PLAN_EPOCHS),
    localSteps,
    batchSize: plan?.batchSize ?? int('batch-size', s('batch-size'), d.batchSize, 1, 4096),
    learningRate: plan?.learningRate ?? num('lr', s('lr'), d.learningRate, 1e-7, 10),
    optimizer: plan?.optimizer ?? optimizer,
    serverLearningRate: num('server-lr', s('server-lr'), d.serverLearningRate, 1e-6, 100),
    serverOptimizer: {
      name: serverOptName(s('server-opt') ?? d.serverOptimizer.name),
      momentum: num('server-momentum', s('server-momentum'), d.serverOptimizer.momentum, 0, 0.9999),
      beta1: num('server-beta1', s('server-beta1'), d.serverOptimizer.beta1, 0, 0.9999),
      beta2: num('server-beta2', s('server-beta2'), d.serverOptimizer.beta2, 0, 0.99999),
      tau: num('server-tau', s('server-tau'), d.serverOptimizer.tau, 1e-9, 10),
    },
    proximalMu: plan ? (plan.proximalMu ?? 0) : num('prox-mu', s('prox-mu'), d.proximalMu, 0, 1000),
    augment: plan ? plan.augment === true : onOff('augment', s('augment'), d.augment),
    logitAdjust: plan ? plan.logitAdjust === true : onOff('logit-adjust', s('logit-adjust'), d.logitAdjust),
    partition: parsePartition(s),
    examplesPerClient,
    testExamples: int('test-examples', s('test-examples'), d.testExamples, 1, 10_000),
    cifarDir: s('cifar-dir'),
    seed: int('seed', s('seed'), d.seed, 0, 2 ** 31),
    // Default: one update of the chosen model plus 64 KiB of envelope. Every frame up to this size is
    // buffered before it is checked, so a limit far above the largest real message only helps a flood.
    maxMessageBytes: int(
      'max-message-bytes',
      s('max-message-bytes'),
      updateMessageBytes(file?.numParams ?? serverTask({ ...d, model }).numParams),
      1024,
    ),
    // Default: 4x the mean shard. Ring weights are numExamples / this cap, so a cap far above real shard
    // sizes would spend the weight coordinate's precision on values no client has.
    maxExamplesPerClient: int(
      'max-examples-per-client',
      s('max-examples-per-client'),
      4 * examplesPerClient,
      1,
    ),
    distDir: s('dist-dir') ?? d.distDir,
    saveModel: s('save-model'),
    stateDir: s('state-dir'),
    role: pickRole(s('role')),
    redis: s('redis'),
    gatewaySum: onOff('gateway-sum', s('gateway-sum'), d.gatewaySum),
    logLevel: v.quiet ? 'quiet' : 'info',
    secagg: onOff('secagg', s('secagg'), d.secagg),
    secaggKeysDeadlineMs: int(
      'secagg-keys-deadline-ms',
      s('secagg-keys-deadline-ms'),
      d.secaggKeysDeadlineMs,
      100,
    ),
    secaggSharesDeadlineMs: int(
      'secagg-shares-deadline-ms',
      s('secagg-shares-deadline-ms'),
      d.secaggSharesDeadlineMs,
      100,
    ),
    secaggUnmaskDeadlineMs: int(
      'secagg-unmask-deadline-ms',
      s('secagg-unmask-deadline-ms'),
      d.secaggUnmaskDeadlineMs,
      100,
    ),
    secaggDropout: num('secagg-dropout', s('secagg-dropout'), d.secaggDropout, 1e-6, 0.5),
    secaggCorrupt: num('secagg-corrupt', s('secagg-corrupt'), d.secaggCorrupt, 1e-6, 0.5),
    secaggThreshold: num('secagg-threshold', s('secagg-threshold'), d.secaggThreshold, 0, 0.99),
    secaggMaliciousServer: onOff(
      'secagg-malicious-server',
      s('secagg-malicious-server'),
      d.secaggMaliciousServer,
    ),
    secaggConsistency: onOff('secagg-consistency', s('secagg-consistency'), d.secaggConsistency),
    siteAttestationKey: parseSiteKey(s('site-attestation-key')),
    coordClip: num('coord-clip', s('coord-clip'), d.coordClip, 1e-6, 1e6),
    maxLossIncrease: num('max-loss-increase', s('max-loss-increase'), d.maxLossIncrease, 0, 1e6),
    dp: null,
    sessionTtlMs: int('session-ttl-ms', s('session-ttl-ms'), d.sessionTtlMs, 1000, 7 * 24 * 3600_000),
    maxSessions: int('max-sessions', s('max-sessions'), d.maxSessions, 1, 10_000_000),
    socketRate: num('socket-rate', s('socket-rate'), d.socketRate, 0.01, 1e6),
    socketBurst: int('socket-burst', s('socket-burst'), d.socketBurst, 1, 1e6),
    addressRate: num('address-rate', s('address-rate'), d.addressRate, 0.01, 1e6),
    addressBurst: int('address-burst', s('address-burst'), d.addressBurst, 1, 1e6),
    trustedProxy: parseTrustedProxy(s('trusted-proxy')),
    allowedOrigins: parseOrigins(s('allowed-origins')),
    joinTokenKey: s('join-token-key'),
    joinTokenKeyPrevious: s('join-token-key-previous'),
    joinTokenMaxTtlS: int('join-token-max-ttl', s('join-token-max-ttl'), d.joinTokenMaxTtlS, 10, 24 * 3600),
    operatorKey: s('operator-key'),
  };
  cfg.dp = parseDp(s, v['dp-adaptive-clip'] === true, cfg.clientsPerRound);
  return validateConfig(cfg);
}

/** Cross-field checks: a config that cannot work is refused at start-up, not discovered mid-run. */
export function validateConfig<T extends ServerConfig>(c: T): T {
  if (c.minUpdates > c.clientsPerRound)
    throw new Error(
      `--min-updates (${c.minUpdates}) cannot exceed --clients-per-round (${c.clientsPerRound})`,
    );
  if (c.minClients < c.minUpdates)
    throw new Error(`--min-clients (${c.minClients}) must be at least --min-updates (${c.minUpdates})`);
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined))
    throw new Error('--tls-cert and --tls-key go together');
  const task = serverTask(c);
  const updateBytes = task.numParams * 4;
  if (c.maxMessageBytes < updateBytes + 4096) {
    throw new Error(
      `--max-message-bytes (${c.maxMessageBytes}) is below one "${task.task.name}" update (${updateBytes} bytes + 4 KiB envelope)`,
    );
  }
  const image = isImageTask(task.task);
  if (!image && !c.taskEval)
    throw new Error(
      `task "${task.task.name}" is not a CIFAR-10 image task: give its held-out set with --task-eval`,
    );
  if (!image && c.cifarDir !== undefined)
    throw new Error(`--cifar-dir holds CIFAR-10 images; task "${task.task.name}" takes other examples`);
  if (c.secagg && c.minUpdates < 2)
    throw new Error("--secagg on needs --min-updates >= 2 (a sum over one client is that client's update)");
  if (c.secaggMaliciousServer && !c.secagg) throw new Error('--secagg-malicious-server needs --secagg on');
  if (c.secagg && c.clientsPerRound < SECAGG_MIN_COHORT)
    throw new Error(
      `--secagg on needs --clients-per-round >= ${SECAGG_MIN_COHORT} (with 2, the sum shows each client the other's update)`,
    );
  if (c.secaggConsistency && !c.secagg) throw new Error('--secagg-consistency on needs --secagg on');
  if (c.secaggConsistency && !c.siteAttestationKey)
    throw new Error(
      '--secagg-consistency on needs --site-attestation-key (the site that attests its visitors)',
    );
  if (!c.secaggConsistency && c.siteAttestationKey)
    throw new Error('--site-attestation-key is used only with --secagg-consistency on');
  // Keeping the fastest of the invited is not Poisson sampling: the accountant's amplification by q
  // would no longer hold, so the two are refused together rather than charged at a q that is not true.
  if (c.overSelect > 1 && c.dp && c.dp.population > 0)
    throw new Error(
      '--over-select keeps the first clients to answer, which is not the Poisson sampling --dp-population accounts for: use one or the other',
    );
  if (c.maxSessions < c.minClients)
    throw new Error(`--max-sessions (${c.maxSessions}) cannot be below --min-clients (${c.minClients})`);
  if (c.joinTokenKeyPrevious !== undefined && c.joinTokenKey === undefined)
    throw new Error('--join-token-key-previous needs --join-token-key (the current key)');
  if (c.operatorKey !== undefined && c.joinTokenKey === undefined)
    throw new Error('--operator-key needs --join-token-key (the key the minted tokens are signed with)');
  if (c.role !== 'all' && c.redis === undefined)
    throw new Error(`--role ${c.role} needs --redis (the bus and state the roles share)`);
  if (c.role === 'all' && c.redis !== undefined)
    throw new Error('--redis is for --role coordinator or gateway; one process (--role all) needs none');
  if (c.role !== 'all' && c.stateDir !== undefined)
    throw new Error(`--role ${c.role} keeps its state in --redis; --state-dir is for --role all`);
  if (c.redis !== undefined && !/^rediss?:\/\/[^\s]+$/.test(c.redis))
    throw new Error(`--redis must be a redis:// or rediss:// URL, got "${c.redis.slice(0, 60)}"`);
  if (c.examplesPerClient > c.maxExamplesPerClient)
    throw new Error('--examples-per-client exceeds --max-examples-per-client');
  return c;
}

function pickRole(v: string | undefined): ServerRole {
  if (v === undefined) return 'all';
  if ((SERVER_ROLES as readonly string[]).includes(v)) return v as ServerRole;
  throw new Error(`--role must be one of ${SERVER_ROLES.join(', ')}, got "${v.slice(0, 40)}"`);
}
