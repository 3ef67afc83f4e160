import { helpText, parseConfig, type ServerConfig } from './config.ts';
import { missingCifar10 } from './datasets.ts';
import { StartupError, startServer } from './server.ts';

const HINT = 'run with --help to list the flags';

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
  let server;
  try {
    server = await startServer(cfg, (m) => console.log(`[${ts()}] ${m}`));
  } catch (e) {
    if (e instanceof StartupError) fail(e.message);
    throw e;
  }
  if (cfg.rounds > 0) {
    server.coordinator.once('done', () => {
      console.log(`[${ts()}] finished ${cfg.rounds} rounds; still serving (Ctrl-C to stop)`);
    });
  }
  const shutdown = (sig: string): void => {
    console.log(`[${ts()}] ${sig}: shutting down`);
    void server.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});
