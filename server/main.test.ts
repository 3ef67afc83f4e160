import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';

/** Runs the CLI to its exit; the server must not get as far as listening. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts', ...args], {
      cwd: new URL('..', import.meta.url).pathname,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d));
    p.stderr.on('data', (d: Buffer) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const lines = (s: string): string[] => s.split('\n').filter((l) => l.trim() !== '');

describe('CLI', { timeout: 60_000 }, () => {
  it('a bad flag: one line with a hint, exit 2, no usage, no stack', async () => {
    const r = await cli(['--rounds', 'many']);
    expect(r.code).toBe(2);
    expect(lines(r.stderr)).toEqual([
      'error: --rounds must be an integer in 0..9007199254740991, got "many" (run with --help to list the flags)',
    ]);
    expect(r.stdout).toBe('');
  });

  it('an unknown flag: one line, exit 2', async () => {
    const r = await cli(['--no-such-flag']);
    expect(r.code).toBe(2);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: .*--no-such-flag.*\(run with --help/);
  });

  it('a missing --cifar-dir: one line before anything is built, exit 2', async () => {
    const r = await cli(['--cifar-dir', '/nonexistent/cifar']);
    expect(r.code).toBe(2);
    expect(lines(r.stderr)).toEqual([
      'error: --cifar-dir: /nonexistent/cifar/data_batch_1.bin not found (expected the binary version, cifar-10-batches-bin)',
    ]);
    expect(r.stdout).toBe(''); // not even the evaluation backend line
  });

  it('a port in use: one line, non-zero exit, no stack', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const r = await cli(['--port', String(port), '--host', '127.0.0.1', '--model', 'tiny']);
      expect(r.code).toBe(2);
      // (stderr may also carry the static-file middleware's note that dist/ is not built)
      expect(lines(r.stderr).filter((l) => l.startsWith('error'))).toEqual([
        `error: port ${port} is in use (--port)`,
      ]);
      expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
    } finally {
      blocker.close();
    }
  });

  it('an unreadable certificate: one line, non-zero exit', async () => {
    const r = await cli(['--tls-cert', '/nonexistent/cert.pem', '--tls-key', '/nonexistent/key.pem']);
    expect(r.code).toBe(2);
    expect(lines(r.stderr)).toEqual(['error: --tls-cert /nonexistent/cert.pem: no such file']);
  });

  it('a damaged file in --state-dir: one line naming it, exit 2, nothing resumed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aegis-state-'));
    try {
      writeFileSync(join(dir, 'run'), 'not json at all');
      const r = await cli(['--state-dir', dir, '--port', '0']);
      expect(r.code).toBe(2);
      expect(lines(r.stderr)).toEqual([
        `error: --state-dir ${dir}: state file "run" refused: not valid JSON (damaged?)`,
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--help prints the flags and exits 0', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: /);
    expect(r.stdout).toContain('--port <value>');
    expect(r.stderr).toBe('');
  });
});
