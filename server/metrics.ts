import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { REJECT_REASONS } from '../shared/base/errors.ts';
import { RELEASE_STEPS } from '../shared/protocol/messages.ts';
import { BOUNDS_FAILURES } from '../shared/fl/encoding.ts';
import { CULPRIT_KINDS } from '../shared/secagg/types.ts';
import { COHORT_SKIPS } from './cohort.ts';
import { REJECT_EVENTS } from './reject-events.ts';
import { TOKEN_PROBLEMS } from './join-token.ts';

export type Metrics = ReturnType<typeof createMetrics>;

/** Where an internal error was caught (closed set: it is a metric label). */
export const INTERNAL_ERROR_SITES = [
  'message', // handling a client message
  'disconnect', // handling a closed link
  'timer', // a deadline, a phase timer, the pause before a round, or a deferred phase check
  'finish', // releasing an aggregate: optimizer step, ledger, evaluation, round:end
  'send', // sending to one client
  'listener', // a listener of the coordinator's events
  'persist', // writing the checkpoint or the privacy ledger to the state store (--state-dir)
] as const;
export type InternalErrorSite = (typeof INTERNAL_ERROR_SITES)[number];

/** Why a round attempt ended without a model (closed set: it is a metric label). */
export const ATTEMPT_FAILURES = [
  'too_few_updates',
  'secagg_aborted',
  'aggregate_rejected',
  'internal_error',
] as const;
export type AttemptFailure = (typeof ATTEMPT_FAILURES)[number];

/** Why the loss guard discarded a new model (closed set: it is a metric label). */
export const MODEL_REJECTIONS = ['loss_increase', 'not_finite'] as const;
export type ModelRejection = (typeof MODEL_REJECTIONS)[number];

/** What aegis_event_loop_delay_seconds reports (closed set: it is a metric label). */
export const LOOP_DELAY_STATS = ['p50', 'p99', 'max'] as const;

/** Resolution of the loop-delay sampler: a timer every 10 ms measures how late it fires. */
const LOOP_DELAY_RESOLUTION_MS = 10;

/** prom-client defaults left out: each is O(open handles) per scrape (see createMetrics). */
export const EXPENSIVE_DEFAULT_METRICS = [
  'process_open_fds',
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_requests',
  'nodejs_active_requests_total',
  'nodejs_active_resources',
  'nodejs_active_resources_total',
] as const;

/** One registry per server instance (tests run several servers in one process). */
export function createMetrics() {
  const registry = new Registry();
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  loopDelay.enable();
  // prom-client names its metrics process_* and nodejs_*: the prefix makes them aegis_process_*, aegis_nodejs_*.
  collectDefaultMetrics({ register: registry, prefix: 'aegis_' });
  // These walk every open handle or /proc/self/fd on each scrape, synchronously: at 10 000 connections
  // ~100 ms of blocked event loop per scrape (profiled). aegis_clients_connected counts the connections.
  for (const name of EXPENSIVE_DEFAULT_METRICS) registry.removeSingleMetric(`aegis_${name}`);
  const m = {
    registry,
    roundsCompleted: new Counter({
      name: 'aegis_rounds_completed_total',
      help: 'Rounds aggregated into the global model',
      registers: [registry],
    }),
    roundAttemptsFailed: new Counter({
      name: 'aegis_round_attempts_failed_total',
      help: 'Round attempts that ended without a new model, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    aggregatesRejected: new Counter({
      name: 'aegis_aggregates_rejected_total',
      help: 'Round sums refused before decoding: beyond what honest clipped clients can produce, by check',
      labelNames: ['check'] as const,
      registers: [registry],
    }),
    modelsRejected: new Counter({
      name: 'aegis_models_rejected_total',
      help: 'New global models discarded because their test loss jumped past --max-loss-increase, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    currentRound: new Gauge({
      name: 'aegis_current_round',
      help: 'Round number in progress (or next)',
      registers: [registry],
    }),
    clientsConnected: new Gauge({
      name: 'aegis_clients_connected',
      help: 'Clients with a live socket that said hello',
      registers: [registry],
    }),
    clientsByBackend: new Gauge({
      name: 'aegis_clients_ready',
      help: 'Ready clients by training backend',
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
    sessions: new Gauge({
      name: 'aegis_sessions',
      help: 'Client sessions held (connected or waiting to be resumed)',
      registers: [registry],
    }),
    sessionsEnded: new Counter({
      name: 'aegis_sessions_ended_total',
      help: 'Sessions forgotten: expired after their TTL, or evicted at the session cap',
      labelNames: ['why'] as const,
      registers: [registry],
    }),
    updatesAccepted: new Counter({
      name: 'aegis_updates_accepted_total',
      help: 'Client updates accepted into a round',
      registers: [registry],
    }),
    updatesRejected: new Counter({
      name: 'aegis_messages_rejected_total',
      help: 'Client messages rejected, by reason',
      labelNames: ['reason', 'event'] as const,
      registers: [registry],
    }),
    stragglersDropped: new Counter({
      name: 'aegis_stragglers_dropped_total',
      help: 'Selected clients that missed the round deadline',
      registers: [registry],
    }),
    roundDuration: new Histogram({
      name: 'aegis_round_duration_seconds',
      help: 'Wall time of completed rounds, selection to evaluated model',
      buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    bytesIn: new Counter({
      name: 'aegis_bytes_received_total',
      help: 'socket.io payload bytes received from clients',
      registers: [registry],
    }),
    bytesOut: new Counter({
      name: 'aegis_bytes_sent_total',
      help: 'socket.io payload bytes sent to clients',
      registers: [registry],
    }),
    testAccuracy: new Gauge({
      name: 'aegis_test_accuracy',
      help: 'Accuracy of the current global model on the held-out set',
      registers: [registry],
    }),
    testLoss: new Gauge({
      name: 'aegis_test_loss',
      help: 'Cross-entropy of the current global model on the held-out set',
      registers: [registry],
    }),
    evalBackend: new Gauge({
      name: 'aegis_eval_backend_info',
      help: 'Evaluation backend in use (value 1)',
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
    evalDuration: new Histogram({
      name: 'aegis_eval_duration_seconds',
      help: 'Time to evaluate one global model',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers: [registry],
    }),
    secaggRounds: new Counter({
      name: 'aegis_secagg_rounds_total',
      help: 'Secure-aggregation rounds by outcome',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    secaggDropouts: new Counter({
      name: 'aegis_secagg_dropouts_total',
      help: 'Clients that did not answer a secure-aggregation phase',
      labelNames: ['phase'] as const,
      registers: [registry],
    }),
    secaggPhaseDuration: new Histogram({
      name: 'aegis_secagg_phase_seconds',
      help: 'Duration of each secure-aggregation phase',
      labelNames: ['phase'] as const,
      buckets: [0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120],
      registers: [registry],
    }),
    secaggUnmaskSeconds: new Histogram({
      name: 'aegis_secagg_unmask_seconds',
      help: 'Server time to rebuild secrets and strip masks from the sum',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30],
      registers: [registry],
    }),
    secaggRefusals: new Counter({
      name: 'aegis_secagg_client_refusals_total',
      help: 'Requests clients refused to answer (e.g. both shares of a peer)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    secaggCulprits: new Counter({
      name: 'aegis_secagg_culprits_total',
      help: 'Clients a secure-aggregation attempt proved to have cheated, by the evidence (kind)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    clientRefusals: new Counter({
      name: 'aegis_client_refusals_total',
      help: 'Round attempts clients sat out because the plan was below their page floors, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    internalErrors: new Counter({
      name: 'aegis_internal_errors_total',
      help: 'Exceptions caught inside the server (the attempt in progress is aborted and retried)',
      labelNames: ['where'] as const,
      registers: [registry],
    }),
    // Gauges over a window, like prom-client's nodejs_eventloop_lag_*: each scrape reports the delays since
    // the previous one and starts a new window (so one scraper per server, or the windows split). max is
    // the one to alert on: a single long stall is one sample, and barely moves p99.
    eventLoopDelay: new Gauge({
      name: 'aegis_event_loop_delay_seconds',
      help: 'How late a 10 ms timer fired on the main thread since the previous scrape: p50, p99 and max',
      labelNames: ['stat'] as const,
      registers: [registry],
      collect() {
        // The sampler records the whole interval between its ticks: the lateness is what exceeds it.
        const seconds = (ns: number): number =>
          loopDelay.count > 0 && Number.isFinite(ns)
            ? Math.max(0, ns / 1e6 - LOOP_DELAY_RESOLUTION_MS) / 1000
            : 0;
        this.set({ stat: 'p50' }, seconds(loopDelay.percentile(50)));
        this.set({ stat: 'p99' }, seconds(loopDelay.percentile(99)));
        this.set({ stat: 'max' }, seconds(loopDelay.max));
        loopDelay.reset();
      },
    }),
    clientsReleased: new Counter({
      name: 'aegis_clients_released_total',
      help: 'Over-selected clients released when the cohort was fixed without them (not dropouts), by step',
      labelNames: ['step'] as const,
      registers: [registry],
    }),
    cohortSkips: new Counter({
      name: 'aegis_cohort_draws_skipped_total',
      help: 'Cohort draws outside the allowed size (never trimmed): no round started, drawn again later',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    joinTokensRefused: new Counter({
      name: 'aegis_join_tokens_refused_total',
      help: 'Connections refused at the handshake for their join token, by problem (all also count as bad_token)',
      labelNames: ['problem'] as const,
      registers: [registry],
    }),
    joinTokensIssued: new Counter({
      name: 'aegis_join_tokens_issued_total',
      help: 'Join tokens minted by POST /api/join-token',
      registers: [registry],
    }),
    /** DP gauges: registered by enablePrivacy() only, so a server without DP exports none (not zeros). */
    dp: {
      epsilon: new Gauge({
        name: 'aegis_dp_epsilon',
        help: 'Privacy spent on the released models (epsilon at aegis_dp_delta, sampling rate q)',
        registers: [],
      }),
      epsilonAgainstServer: new Gauge({
        name: 'aegis_dp_epsilon_against_server',
        help: 'Privacy spent against the server, which sees each cohort (the same rounds at q = 1)',
        registers: [],
      }),
      delta: new Gauge({ name: 'aegis_dp_delta', help: 'Delta of the privacy guarantee', registers: [] }),
      budget: new Gauge({
        name: 'aegis_dp_epsilon_budget',
        help: 'Epsilon at which training stops',
        registers: [],
      }),
      noise: new Gauge({
        name: 'aegis_dp_noise_multiplier',
        help: 'Noise multiplier z (std on the sum / clip norm)',
        registers: [],
      }),
      clip: new Gauge({ name: 'aegis_dp_clip_norm', help: 'L2 clip norm of client updates', registers: [] }),
      samplingRate: new Gauge({
        name: 'aegis_dp_sampling_rate',
        help: 'Sampling rate q the ledger charges (1 = no amplification claimed)',
        registers: [],
      }),
    },
    /** Registers the DP gauges (once; later calls do nothing). */
    enablePrivacy(): void {
      if (registry.getSingleMetric('aegis_dp_epsilon')) return;
      for (const g of Object.values(m.dp)) registry.registerMetric(g);
    },
  };
  // Zero-initialise every reason so dashboards show flat lines, not gaps.
  for (const reason of REJECT_REASONS)
    for (const event of REJECT_EVENTS[reason]) m.updatesRejected.inc({ reason, event }, 0);
  for (const where of INTERNAL_ERROR_SITES) m.internalErrors.inc({ where }, 0);
  for (const kind of CULPRIT_KINDS) m.secaggCulprits.inc({ kind }, 0);
  for (const why of ['expired', 'evicted']) m.sessionsEnded.inc({ why }, 0);
  for (const check of BOUNDS_FAILURES) m.aggregatesRejected.inc({ check }, 0);
  for (const reason of MODEL_REJECTIONS) m.modelsRejected.inc({ reason }, 0);
  for (const reason of COHORT_SKIPS) m.cohortSkips.inc({ reason }, 0);
  for (const step of RELEASE_STEPS) m.clientsReleased.inc({ step }, 0);
  m.clientRefusals.inc({ reason: 'below_floor' }, 0);
  for (const problem of TOKEN_PROBLEMS) m.joinTokensRefused.inc({ problem }, 0);
  return m;
}
