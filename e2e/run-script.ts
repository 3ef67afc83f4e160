import { spawnSync, type SpawnSyncReturns } from 'node:child_process';

/** Runs a TypeScript entry point to completion as `npm run` does (node --import tsx); its status and output. */
export function runScript(file: string, args: readonly string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, ['--import', 'tsx', file, ...args], { encoding: 'utf8' });
}
