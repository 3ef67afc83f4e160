import { helpText, parseConfig } from './config.ts';
import { startServer } from './server.ts';

/** CLI entry: `npm start -- --help` lists the flags. */
async function main(): Promise<void> {
  let cfg;
  try {
    cfg = parseConfig(process.argv.slice(2));
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n\n${helpText()}`);
    process.exit(2);
  }
  if (cfg.help) {
    process.stdout.write(helpText());
    return;
  }
  const ts = (): string => new Date().toISOString().slice(11, 19);
  const server = await startServer(cfg, (m) => console.log(`[${ts()}] ${m}`));
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
