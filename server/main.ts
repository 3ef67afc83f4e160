import { helpText, parseConfig, type ServerConfig } from './config.ts';
import { missingCifar10 } from './datasets.ts';
import { StartupError, startServer, type RunningServer } from './server.ts';
import { startRole } from './cluster/roles.ts';

const HINT = 'run with --help to list the flags';
/** Longest a clean shutdown may take (an evaluation in progress is finished): below Kubernetes' 30 s default. */
const SHUTDOWN_GRACE_MS = 20_000;

/** One line on stderr, no stack: the failure is the user's to fix, not a bug. */
function fail(message: string, hint?: string): never {
  console.error(`error: ${message}${hint ? ` (${hint})` : ''}`);
  process.exit(2);
}

/** Flags parsed and checked against the filesystem, before anything is built. */
function parseFlags(argv: string[]): ServerConfig & { help: boolean } {
  let cfg;
  try {
    cfg = parseConfig(argv);
  } catch (e) {
    fail((e as Error).message, HINT);
  }
  if (cfg.cifarDir !== undefined) {
    const missing = missingCifar10(cfg.cifarDir);
    if (missing) fail(missing);
  }
  return cfg;
}

/** CLI entry: `npm start -- --help` lists the flags. */
async function main(): Promise<void> {
  const cfg = parseFlags(process.argv.slice(2));
  if (cfg.help) {
    process.stdout.write(helpText());
    return;
  }
  const ts = (): string => new Date().toISOString().slice(11, 19);
  const log = (m: string): void => console.log(`[${ts()}] ${m}`);
  let server: { shutdown(): Promise<void> };
  try {
    // One process (the default), or one role of the cluster over --redis (docs/scale-out.md).
    server = cfg.role === 'all' ? await startServer(cfg, log) : await startRole(cfg, log);
  } catch (e) {
    if (e instanceof StartupError) fail(e.message);
    throw e;
  }
  if (cfg.rounds > 0 && 'evalBackend' in server) {
    (server as RunningServer).coordinator.once('done', () => {
      console.log(`[${ts()}] finished ${cfg.rounds} rounds; still serving (Ctrl-C to stop)`);
    });
  }
  let stopping = false;
  // SIGTERM (a pod eviction) or Ctrl-C: no new attempt, the one in training abandoned, a round being
  // evaluated finished, the state written (--state-dir), clients told to come back (their connections
  // drop; they reconnect), exit 0. A second signal, or a shutdown stuck past the grace time, exits at once.
  const shutdown = (sig: string): void => {
    if (stopping) process.exit(0);
    stopping = true;
    console.log(`[${ts()}] ${sig}: shutting down`);
    void server
      .shutdown()
      .then(
        () => console.log(`[${ts()}] state saved; bye`),
        (e: unknown) => console.error(`[${ts()}] shutdown: ${(e as Error).message}`),
      )
      .then(() => process.exit(0));
    setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS).unref();
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});
