import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULTS,
  FLAGS,
  helpText,
  invitedPerRound,
  parseConfig,
  serverTask,
  shownDefault,
} from './config.ts';
import { presetTask } from '../shared/model/task.ts';
import { readTaskEval } from './task-file.ts';

describe('parseConfig', () => {
  it('uses documented defaults', () => {
    const c = parseConfig([]);
    expect(c.port).toBe(8080);
    expect(c.model.name).toBe('small');
    expect(c.minUpdates).toBe(DEFAULTS.minUpdates);
    expect(c.help).toBe(false);
    expect(c.maxLossIncrease).toBe(1);
  });

  it('--max-loss-increase sets the keep-old-model margin; 0 turns the guard off', () => {
    expect(parseConfig(['--max-loss-increase', '0.25']).maxLossIncrease).toBe(0.25);
    expect(parseConfig(['--max-loss-increase', '0']).maxLossIncrease).toBe(0);
  });

  it('parses every kind of flag', () => {
    const c = parseConfig([
      '--port',
      '0',
      '--model',
      'tiny',
      '--rounds',
      '3',
      '--lr',
      '0.01',
      '--optimizer',
      'sgd',
      '--quiet',
      '--cifar-dir',
      '/data',
    ]);
    expect(c).toMatchObject({
      port: 0,
      rounds: 3,
      learningRate: 0.01,
      optimizer: 'sgd',
      logLevel: 'quiet',
      cifarDir: '/data',
    });
    expect(c.model.name).toBe('tiny');
    expect(parseConfig(['--optimizer', 'momentum']).optimizer).toBe('momentum');
  });

  it.each([
    [['--port', '70000'], /--port must be an integer in 0..65535/],
    [['--lr', 'fast'], /--lr must be a number/],
    [['--model', 'huge'], /unknown model "huge"/],
    [['--optimizer', 'rmsprop'], /--optimizer must be one of sgd, momentum, adam; got "rmsprop"/],
    [
      ['--min-updates', '5', '--clients-per-round', '3'],
      /--min-updates \(5\) cannot exceed --clients-per-round \(3\)/,
    ],
    [
      ['--min-clients', '1', '--min-updates', '2'],
      /--min-clients \(1\) must be at least --min-updates \(2\)/,
    ],
    [['--tls-cert', 'a.pem'], /--tls-cert and --tls-key go together/],
    [['--max-message-bytes', '100000'], /below one "small" update/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['--secagg', 'maybe'], /--secagg must be on or off/],
    [['--secagg-malicious-server', 'yes'], /--secagg-malicious-server must be on or off/],
    [
      ['--secagg', 'off', '--secagg-malicious-server', 'on', '--min-updates', '1', '--min-clients', '1'],
      /--secagg-malicious-server needs --secagg on/,
    ],
    [['--partition', 'random'], /--partition must be iid, dirichlet or shards/],
    [['--partition', 'iid', '--dirichlet-alpha', '1'], /--dirichlet-alpha does not apply to --partition iid/],
    [['--server-opt', 'sgd'], /--server-opt must be one of fedavg, fedavgm, fedadagrad, fedyogi, fedadam/],
    [['--prox-mu=-1'], /--prox-mu must be a number/],
    [['--augment', 'yes'], /--augment must be on or off/],
    [['--min-updates', '1', '--min-clients', '1'], /--secagg on needs --min-updates >= 2/],
    [['--clients-per-round', '2'], /--secagg on needs --clients-per-round >= 3/],
    [['--dp-noise', '1'], /DP needs a budget: set --dp-epsilon/],
    [['--dp-epsilon', '3'], /--dp-epsilon needs --dp-noise/],
    [['--dp-adaptive-clip'], /--dp-adaptive-clip needs --dp-noise/],
    [
      ['--dp-noise', '1', '--dp-epsilon', '5', '--dp-adaptive-clip', '--clients-per-round', '10'],
      /z < 2 sigma_b = 1/,
    ],
    [['--dp-noise', '1', '--dp-epsilon', '5', '--dp-population', '3'], /--dp-population cannot be below/],
    [['--session-ttl-ms', '10'], /--session-ttl-ms must be an integer in 1000\.\./],
    [['--max-sessions', '1'], /--max-sessions \(1\) cannot be below --min-clients \(2\)/],
    [['--socket-rate', '0'], /--socket-rate must be a number/],
    [['--address-burst', '1.5'], /--address-burst must be an integer/],
    [['--trusted-proxy', 'proxy.local'], /not an IP address or CIDR/],
    [['--max-loss-increase=-1'], /--max-loss-increase must be a number in 0\.\./],
    [['--max-loss-increase', 'lots'], /--max-loss-increase must be a number/],
    [['--secagg-consistency', 'on'], /needs --site-attestation-key/],
    [
      ['--site-attestation-key', 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a'],
      /used only with --secagg-consistency on/,
    ],
    [['--secagg-consistency', 'on', '--site-attestation-key', 'abcd'], /must be 64 hex digits/],
    [
      ['--secagg-consistency', 'on', '--site-attestation-key', '01' + '00'.repeat(31)],
      /not a usable Ed25519 public key \(low_order\)/,
    ],
    [
      [
        '--secagg',
        'off',
        '--min-updates',
        '1',
        '--min-clients',
        '1',
        '--secagg-consistency',
        'on',
        '--site-attestation-key',
        'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
      ],
      /--secagg-consistency on needs --secagg on/,
    ],
  ])('refuses %j', (argv, msg) => {
    expect(() => parseConfig(argv)).toThrow(msg);
  });

  it('the consistency round is off by default; on, it carries the site key', () => {
    expect(parseConfig([])).toMatchObject({ secaggConsistency: false, siteAttestationKey: null });
    const c = parseConfig([
      '--secagg-consistency',
      'on',
      '--site-attestation-key',
      'D75A980182B10AB7D54BFED3C964073A0EE172F3DAA62325AF021A68F707511A',
    ]);
    expect(c.secaggConsistency).toBe(true);
    expect(Buffer.from(c.siteAttestationKey!).toString('hex')).toBe(
      'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    );
  });

  it('secure aggregation is on by default and can be turned off; DP is off unless asked for', () => {
    expect(parseConfig([]).secagg).toBe(true);
    expect(parseConfig([]).dp).toBeNull();
    expect(parseConfig(['--secagg', 'off', '--min-updates', '1', '--min-clients', '1']).secagg).toBe(false);
    expect(parseConfig([]).secaggMaliciousServer).toBe(false);
    expect(parseConfig(['--secagg-malicious-server', 'on']).secaggMaliciousServer).toBe(true);
  });

  it('DP: a given z, or z derived from a target epsilon over a number of rounds', () => {
    const a = parseConfig([
      '--dp-noise',
      '1.1',
      '--dp-epsilon',
      '8',
      '--dp-clip',
      '0.2',
      '--dp-population',
      '1000',
    ]);
    expect(a.dp).toMatchObject({
      noiseMultiplier: 1.1,
      epsilonBudget: 8,
      clipNorm: 0.2,
      delta: 1e-5,
      population: 1000,
      adaptive: null,
    });
    const b = parseConfig([
      '--dp-epsilon',
      '8',
      '--dp-rounds',
      '50',
      '--dp-population',
      '1000',
      '--dp-adaptive-clip',
      '--dp-indicator-std',
      '5',
    ]);
    expect(b.dp!.noiseMultiplier).toBeGreaterThan(0.3);
    expect(b.dp!.noiseMultiplier).toBeLessThan(3);
    expect(b.dp!.adaptive).toEqual({ targetQuantile: 0.5, learningRate: 0.2, indicatorStd: 5 });
  });

  it('access flags: allowed origins, join-token keys, operator key', () => {
    const d = parseConfig([]);
    expect(d.allowedOrigins).toBeNull();
    expect(d.joinTokenKey).toBeUndefined();
    expect(d.joinTokenMaxTtlS).toBe(600);
    const c = parseConfig([
      '--allowed-origins',
      'https://a.example, https://b.example:8443/,https://a.example',
      '--join-token-key',
      'k.hex',
      '--join-token-key-previous',
      'old.hex',
      '--join-token-max-ttl',
      '120',
      '--operator-key',
      'op.hex',
    ]);
    expect(c.allowedOrigins).toEqual(['https://a.example', 'https://b.example:8443']);
    expect([c.joinTokenKey, c.joinTokenKeyPrevious, c.operatorKey, c.joinTokenMaxTtlS]).toEqual([
      'k.hex',
      'old.hex',
      'op.hex',
      120,
    ]);
    expect(() => parseConfig(['--allowed-origins', 'https://a.example/path'])).toThrow(/--allowed-origins/);
    expect(() => parseConfig(['--allowed-origins', ' , '])).toThrow(/at least one/);
    expect(() => parseConfig(['--join-token-key-previous', 'old.hex'])).toThrow(/needs --join-token-key/);
    expect(() => parseConfig(['--operator-key', 'op.hex'])).toThrow(/needs --join-token-key/);
    expect(() => parseConfig(['--join-token-max-ttl', '5'])).toThrow(/--join-token-max-ttl/);
  });

  it('session and rate-limit flags', () => {
    const d = parseConfig([]);
    expect(d).toMatchObject({
      sessionTtlMs: DEFAULTS.sessionTtlMs,
      maxSessions: DEFAULTS.maxSessions,
      socketRate: DEFAULTS.socketRate,
      addressBurst: DEFAULTS.addressBurst,
      trustedProxy: { kind: 'none' },
    });
    const c = parseConfig([
      '--session-ttl-ms',
      '60000',
      '--max-sessions',
      '500',
      '--socket-rate',
      '5',
      '--socket-burst',
      '50',
      '--address-rate',
      '2.5',
      '--address-burst',
      '10',
      '--trusted-proxy',
      '1',
    ]);
    expect(c).toMatchObject({
      sessionTtlMs: 60_000,
      maxSessions: 500,
      socketRate: 5,
      socketBurst: 50,
      addressRate: 2.5,
      addressBurst: 10,
      trustedProxy: { kind: 'hops', hops: 1 },
    });
    expect(parseConfig(['--trusted-proxy', '10.0.0.0/8,::1']).trustedProxy.kind).toBe('list');
  });

  it('server optimizer and FedProx flags', () => {
    const c = parseConfig([
      '--server-opt',
      'fedyogi',
      '--server-lr',
      '0.03',
      '--server-tau',
      '0.01',
      '--prox-mu',
      '0.1',
    ]);
    expect(c.serverOptimizer).toEqual({ name: 'fedyogi', momentum: 0.9, beta1: 0.9, beta2: 0.99, tau: 0.01 });
    expect(c.serverLearningRate).toBe(0.03);
    expect(c.proximalMu).toBe(0.1);
    expect(c.augment).toBe(false);
    expect(parseConfig(['--augment', 'on']).augment).toBe(true);
    expect(c.logitAdjust).toBe(false);
    const la = parseConfig(['--logit-adjust', 'on']);
    expect(la.logitAdjust).toBe(true);
    // It is part of the plan clients pin: the task hash changes with it.
    expect(serverTask(la).task.plan.logitAdjust).toBe(true);
    expect(serverTask(la).hash).not.toBe(serverTask(parseConfig([])).hash);
    expect(() => parseConfig(['--logit-adjust', 'yes'])).toThrow(/logit-adjust/);
    // Local steps: off (epochs) by default, in the pinned plan when set, bounded like the task file's field.
    expect(c.localSteps).toBe(0);
    expect(serverTask(parseConfig([])).task.plan).not.toHaveProperty('steps');
    const stepped = parseConfig(['--local-steps', '16']);
    expect(serverTask(stepped).task.plan.steps).toBe(16);
    expect(serverTask(stepped).hash).not.toBe(serverTask(parseConfig([])).hash);
    for (const bad of ['-1', '1.5', '10001', 'many'])
      expect(() => parseConfig(['--local-steps', bad])).toThrow(/local-steps/);
    expect(() => parseConfig(['--local-steps', '8', '--epochs', '2'])).toThrow(/--epochs and --local-steps/);
    // steps x batch is bounded (epochs scale with a client's data, steps would not): the task check refuses.
    expect(() => serverTask(parseConfig(['--local-steps', '10000', '--batch-size', '32']))).toThrow(
      /steps x plan.batchSize must be at most 256000/,
    );
    expect(parseConfig([]).serverOptimizer.name).toBe('fedavg');
    expect(parseConfig(['--partition', 'dirichlet', '--dirichlet-alpha', '0.3']).partition).toEqual({
      kind: 'dirichlet',
      alpha: 0.3,
    });
    expect(parseConfig(['--partition', 'shards']).partition).toEqual({ kind: 'shards', shardsPerClient: 2 });
    expect(parseConfig([]).partition).toEqual({ kind: 'iid' });
  });

  it('--over-select: off by default, a factor in 1..4, and refused with Poisson sampling (--dp-population)', () => {
    expect(parseConfig([]).overSelect).toBe(1);
    const c = parseConfig(['--clients-per-round', '5', '--over-select', '1.4']);
    expect(c.overSelect).toBe(1.4);
    expect(invitedPerRound(c)).toBe(7);
    expect(invitedPerRound(parseConfig(['--clients-per-round', '10', '--over-select', '1.25']))).toBe(13);
    expect(invitedPerRound(parseConfig([]))).toBe(DEFAULTS.clientsPerRound);
    for (const bad of ['0.9', '4.5', 'x'])
      expect(() => parseConfig(['--over-select', bad])).toThrow(/--over-select/);
    // Keeping the first to answer is not the Poisson sampling the accountant's q assumes.
    const dp = ['--dp-noise', '1', '--dp-epsilon', '5'];
    expect(() => parseConfig([...dp, '--dp-population', '100', '--over-select', '1.3'])).toThrow(
      /--over-select keeps the first clients to answer, which is not the Poisson sampling --dp-population/,
    );
    expect(parseConfig([...dp, '--dp-population', '100', '--over-select', '1']).overSelect).toBe(1);
    // DP charged at q = 1 (no --dp-population) claims no amplification: over-selection is allowed.
    expect(parseConfig([...dp, '--over-select', '1.3']).overSelect).toBe(1.3);
  });

  it('help lists every flag', () => {
    const h = helpText();
    for (const f of [
      '--port',
      '--round-deadline-ms',
      '--min-updates',
      '--cifar-dir',
      '--max-message-bytes',
      '--tls-cert',
      '--session-ttl-ms',
      '--max-loss-increase',
      '--max-sessions',
      '--socket-rate',
      '--address-burst',
      '--trusted-proxy',
    ])
      expect(h).toContain(f);
  });
});

describe('--help', () => {
  const rows = helpText()
    .split('\n')
    .filter((l) => l.startsWith('  --'));

  it('has one aligned row per flag, each with its default where it has one', () => {
    expect(rows.length).toBe(Object.keys(FLAGS).length);
    const starts = new Set(rows.map((l) => l.indexOf(l.trimStart().split(/ {2,}/)[1])));
    expect(starts.size).toBe(1); // every description starts in the same column
    for (const [i, k] of Object.keys(FLAGS).entries()) {
      const def = shownDefault(k as keyof typeof FLAGS);
      expect(rows[i].startsWith(`  --${k}`)).toBe(true);
      if (def !== null) expect(rows[i].endsWith(`(default: ${def})`)).toBe(true);
      else expect(rows[i]).not.toContain('(default:');
    }
    expect(shownDefault('port')).toBe(String(DEFAULTS.port));
    expect(shownDefault('secagg')).toBe('on');
  });

  it('shows the defaults the parser applies', () => {
    const n = (k: keyof typeof FLAGS): number => Number(shownDefault(k));
    expect(parseConfig(['--partition', 'dirichlet']).partition).toEqual({
      kind: 'dirichlet',
      alpha: n('dirichlet-alpha'),
    });
    expect(parseConfig(['--partition', 'shards']).partition).toEqual({
      kind: 'shards',
      shardsPerClient: n('shards-per-client'),
    });
    const dp = parseConfig(['--dp-noise', '0.5', '--dp-epsilon', '8', '--dp-adaptive-clip']).dp!;
    expect(dp.delta).toBe(n('dp-delta'));
    expect(dp.clipNorm).toBe(n('dp-clip'));
    expect(dp.population).toBe(n('dp-population'));
    expect(dp.adaptive!.targetQuantile).toBe(n('dp-target-quantile'));
    expect(dp.adaptive!.learningRate).toBe(n('dp-clip-lr'));
    expect(parseConfig([]).dp).toBeNull(); // --dp-noise 0 = off
  });

  it('every flag is in the flag table of docs/operations.md, and the table names no other', () => {
    const doc = readFileSync(new URL('../docs/operations.md', import.meta.url), 'utf8');
    const table = doc.split('\n').filter((l) => l.startsWith('| `--'));
    const documented = new Set(
      table.flatMap((l) => [...l.split('|')[1].matchAll(/`--([a-z0-9-]+)`/g)].map((m) => m[1])),
    );
    const flags = Object.keys(FLAGS).filter((k) => k !== 'help');
    expect(flags.filter((k) => !documented.has(k))).toEqual([]);
    expect([...documented].filter((k) => !flags.includes(k))).toEqual([]);
  });
});

describe('--task and --task-eval', () => {
  const TASK = 'demo/tasks/blobs.task.json';
  const EVAL = 'demo/tasks/blobs.eval.json';
  const blobs = ['--task', TASK, '--task-eval', EVAL];
  const dir = mkdtempSync(join(tmpdir(), 'aegis-task-'));
  const file = (name: string, body: unknown): string => {
    const p = join(dir, name);
    writeFileSync(p, typeof body === 'string' ? body : JSON.stringify(body));
    return p;
  };

  it("without --task, the task is today's: the --model preset with the plan flags", () => {
    const c = parseConfig(['--model', 'tiny', '--lr', '0.01', '--epochs', '2']);
    expect(c.task).toBeNull();
    const t = serverTask(c);
    expect(t.task).toEqual(
      presetTask('tiny', { epochs: 2, batchSize: 32, learningRate: 0.01, optimizer: 'adam' }),
    );
    expect(serverTask(parseConfig([])).task.name).toBe('small');
  });

  it("loads the task file: its plan becomes the round's training settings; the defaults follow its size", () => {
    const c = parseConfig(blobs);
    expect(c.task).toMatchObject({ name: 'blobs', inputShape: [8], numClasses: 4 });
    expect(c).toMatchObject({
      epochs: 5,
      batchSize: 16,
      learningRate: 0.02,
      optimizer: 'adam',
      proximalMu: 0,
      augment: false,
    });
    expect(serverTask(c).numParams).toBe(212);
    expect(c.maxMessageBytes).toBe((212 + 3) * 4 + 64 * 1024);
    expect(c.taskEval).toBe(EVAL);
  });

  it.each([
    [['--task', TASK, '--task-eval', EVAL, '--lr', '0.1'], /--lr is set by the --task file's plan/],
    [
      ['--task', TASK, '--task-eval', EVAL, '--local-steps', '8'],
      /--local-steps is set by the --task file's plan/,
    ],
    [['--task', TASK, '--task-eval', EVAL, '--model', 'tiny'], /--model and --task go apart/],
    [['--task-eval', EVAL], /--task-eval needs --task/],
    [['--task', TASK], /not a CIFAR-10 image task: give its held-out set with --task-eval/],
    [['--task', TASK, '--task-eval', EVAL, '--cifar-dir', '/data'], /--cifar-dir holds CIFAR-10 images/],
    [['--task', '/no/such/task.json'], /--task \/no\/such\/task.json: no such file/],
  ])('%j is refused', (argv, msg) => {
    expect(() => parseConfig(argv)).toThrow(msg);
  });

  it('a hostile or broken task file is refused with what is wrong', () => {
    expect(() => parseConfig(['--task', file('bad.json', '{ nope')])).toThrow(/not JSON/);
    const t = JSON.parse(readFileSync(TASK, 'utf8'));
    t.model.topology.config.layers[0].class_name = 'Lambda';
    expect(() => parseConfig(['--task', file('lambda.json', t), '--task-eval', EVAL])).toThrow(
      /--task .*lambda.json: layer 0 is a Lambda: only stock layers/,
    );
  });

  it('the held-out file: rows of features and labels, checked against the task', () => {
    const task = serverTask(parseConfig(blobs)).task;
    const e = readTaskEval(EVAL, task);
    expect(e.n).toBe(300);
    expect(e.x.length).toBe(300 * 8);
    expect(() => readTaskEval(file('short.json', { x: [[1, 2]], y: [0] }), task)).toThrow(
      /example 0 must have 8 features/,
    );
    expect(() => readTaskEval(file('label.json', { x: [[1, 2, 3, 4, 5, 6, 7, 8]], y: [4] }), task)).toThrow(
      /label 4, outside 0..3/,
    );
    expect(() => readTaskEval(file('nan.json', { x: [[1, 2, 3, 4, 5, 6, 7, 'a']], y: [1] }), task)).toThrow(
      /not finite/,
    );
    expect(() => readTaskEval(file('shape.json', { x: [], y: [1] }), task)).toThrow(/as many labels as rows/);
  });
});
