import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RedisProcess {
  /** redis://127.0.0.1:<port> */
  url: string;
  port: number;
  /** Stops it (SIGTERM, then waits for the exit) and removes its directory. */
  stop(): Promise<void>;
  /** Kills it at once (SIGKILL), as a crash would; the directory is removed too. */
  kill(): void;
}

const INSTALL_HINT =
  'redis-server (Redis 7) is needed by the Redis tests: `npm run setup` installs it ' +
  '(deploy/install-tools.sh; Debian package redis-server)';

/** A port nothing listens on right now (the OS picks it; a small race with other processes remains). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no port from the OS'))));
    });
  });
}

/** Sends one inline PING; true when the answer is +PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let got = '';
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (b) => {
      got += b.toString('latin1');
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
  });
}

/**
 * Starts a private, throw-away redis-server on 127.0.0.1 (no persistence, its own temporary directory) and
 * resolves once it answers PING. For unit tests of server/redis/* and e2e tests: no Redis service is needed.
 */
export async function startRedis(timeoutMs = 10_000): Promise<RedisProcess> {
  // The port is free when picked but could be taken before redis binds it: a bind failure retries.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(await freePort(), timeoutMs);
    } catch (e) {
      if (attempt < 3 && /Address already in use/i.test((e as Error).message)) continue;
      throw e;
    }
  }
}

async function startOnce(port: number, timeoutMs: number): Promise<RedisProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'aegisfl-redis-'));
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--protected-mode',
    'yes',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
  ];
  let child: ChildProcess;
  try {
    child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    removeDir();
    throw new Error(`could not start redis-server (${(e as Error).message}); ${INSTALL_HINT}`);
  }
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<string>((resolve) => {
    child.once('error', (e: NodeJS.ErrnoException) =>
      resolve(
        e.code === 'ENOENT'
          ? `redis-server not found on PATH; ${INSTALL_HINT}`
          : `could not start redis-server: ${e.message}`,
      ),
    );
    child.once('exit', (code, signal) =>
      resolve(`redis-server exited (code ${code}, signal ${signal}) before answering PING:\n${out}`),
    );
  });
  const early: { exit: string | null } = { exit: null };
  void exited.then((m) => (early.exit = m));

  const deadline = Date.now() + timeoutMs;
  while (!(await ping(port))) {
    if (early.exit !== null) {
      removeDir();
      throw new Error(early.exit);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      removeDir();
      throw new Error(
        `redis-server did not answer PING on port ${port} in ${timeoutMs} ms; ${INSTALL_HINT}\n${out}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }

  const gone = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      child.kill('SIGTERM');
      await gone;
      removeDir();
    },
    kill() {
      child.kill('SIGKILL');
      removeDir();
    },
  };
}
