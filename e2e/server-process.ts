import { spawn, type ChildProcess } from 'node:child_process';
import type { ServerStatus } from '../shared/protocol/status.ts';

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  output: () => string;
  stop(): Promise<void>;
}

/**
 * Collects a server process's stdout and stderr, and resolves `url` once it prints "AegisFL server on
 * <url>"; rejects when it exits first or prints nothing of the kind within `timeoutMs`.
 */
export function listenForServer(
  child: ChildProcess,
  timeoutMs: number,
): { url: Promise<string>; output: () => string; append: (s: string) => void } {
  let out = '';
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server did not start in ${timeoutMs} ms:\n${out}`)),
      timeoutMs,
    );
    const onData = (b: Buffer): void => {
      out += b.toString();
      const m = /AegisFL server on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${out}`));
    });
  });
  return { url, output: () => out, append: (s) => void (out += s) };
}

/** Starts `server/main.ts` as its own process on a free port, as an operator would, and waits for it to listen. */
export async function startServerProcess(
  flags: string[],
  timeoutMs = 60_000,
  env: Record<string, string> = {},
): Promise<ServerProcess> {
  const child = spawn(
    process.execPath,
    [
      // Extra node flags for the server alone, e.g. AEGISFL_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/p"
      // to profile a benchmark's server (NODE_OPTIONS refuses --cpu-prof, and would reach every process).
      ...(process.env.AEGISFL_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
      '--import',
      'tsx',
      'server/main.ts',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      ...flags,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    },
  );
  const server = listenForServer(child, timeoutMs);
  const url = await server.url;
  child.once('exit', (code, signal) =>
    server.append(`\n[server process exited: code ${code}, signal ${signal}]\n`),
  );
  return {
    url,
    child,
    output: server.output,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve(); // already gone
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }),
  };
}

/** Waits until the server reports `phase` (e.g. 'done' after --rounds) and returns that status. */
export function waitForPhase(
  url: string,
  phase: ServerStatus['phase'],
  timeoutMs: number,
  everyMs = 500,
): Promise<ServerStatus> {
  let lastError = '';
  return waitFor(
    async () => {
      try {
        const s = (await fetch(url + '/api/status').then((r) => r.json())) as ServerStatus;
        return s.phase === phase ? s : null;
      } catch (e) {
        // Clients training in this same process can block the event loop past the server's keep-alive
        // timeout; the next poll then meets a closed socket. That is not the server failing: poll again.
        lastError = String((e as Error).cause ?? e);
        return null;
      }
    },
    timeoutMs,
    () => `phase "${phase}"${lastError ? ` (last poll: ${lastError})` : ''}`,
    everyMs,
  );
}

/** Polls until `fn` returns a truthy value or the time runs out. */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs: number,
  what: string | (() => string),
  everyMs = 500,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Flags as an object, e.g. { rounds: 2, 'dp-adaptive-clip': true } -> ['--rounds', '2', '--dp-adaptive-clip']. */
export function flags(f: Record<string, string | number | boolean>): string[] {
  return Object.entries(f).flatMap(([k, v]) =>
    v === true ? [`--${k}`] : v === false ? [] : [`--${k}`, String(v)],
  );
}

/** A small, quick server: the tiny model, 16 examples per client, 100 test examples. */
export const TINY_SERVER = { model: 'tiny', 'examples-per-client': 16, 'test-examples': 100 };

/** A cohort of exactly n: a round starts with n ready clients and selects them all. */
export const cohortOf = (n: number) => ({ 'min-clients': n, 'clients-per-round': n });
