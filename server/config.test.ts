import { describe, expect, it } from 'vitest';
import { DEFAULTS, helpText, parseConfig } from './config.ts';

describe('parseConfig', () => {
  it('uses documented defaults', () => {
    const c = parseConfig([]);
    expect(c.port).toBe(8080);
    expect(c.model.name).toBe('small');
    expect(c.minUpdates).toBe(DEFAULTS.minUpdates);
    expect(c.help).toBe(false);
  });

  it('parses every kind of flag', () => {
    const c = parseConfig(['--port', '0', '--model', 'tiny', '--rounds', '3', '--lr', '0.01', '--optimizer', 'sgd', '--quiet', '--cifar-dir', '/data']);
    expect(c).toMatchObject({ port: 0, rounds: 3, learningRate: 0.01, optimizer: 'sgd', logLevel: 'quiet', cifarDir: '/data' });
    expect(c.model.name).toBe('tiny');
  });

  it.each([
    [['--port', '70000'], /--port must be an integer in 0..65535/],
    [['--lr', 'fast'], /--lr must be a number/],
    [['--model', 'huge'], /unknown model "huge"/],
    [['--optimizer', 'rmsprop'], /--optimizer must be sgd or adam/],
    [['--min-updates', '5', '--clients-per-round', '3'], /--min-updates \(5\) cannot exceed --clients-per-round \(3\)/],
    [['--min-clients', '1', '--min-updates', '2'], /--min-clients \(1\) must be at least --min-updates \(2\)/],
    [['--tls-cert', 'a.pem'], /--tls-cert and --tls-key go together/],
    [['--max-message-bytes', '100000'], /below one "small" update/],
    [['--bogus'], /Unknown option '--bogus'/],
  ])('refuses %j', (argv, msg) => {
    expect(() => parseConfig(argv)).toThrow(msg);
  });

  it('help lists every flag', () => {
    const h = helpText();
    for (const f of ['--port', '--round-deadline-ms', '--min-updates', '--cifar-dir', '--max-message-bytes', '--tls-cert']) expect(h).toContain(f);
  });
});
