import { startRedis, type RedisProcess } from './redis-server.ts';
import { flags, startServerProcess, type ServerProcess } from './server-process.ts';

/** One Redis, coordinators (the first leads, the rest stand by) and gateways, each its own process. */
export interface Cluster {
  redis: RedisProcess;
  coordinators: ServerProcess[];
  gateways: ServerProcess[];
  /** Everything the processes printed, for a failed test. */
  output(): string;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  gateways: number;
  coordinators?: number;
  /** Flags every process gets (the run's config: the gateways check messages against the same task). */
  flags: Record<string, string | number | boolean>;
  /** Environment of the first coordinator only (e.g. a test hold). */
  leaderEnv?: Record<string, string>;
}

export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const redis = await startRedis();
  const procs: ServerProcess[] = [];
  const cluster: Cluster = {
    redis,
    coordinators: [],
    gateways: [],
    output: () => procs.map((p, i) => `--- process ${i} ---\n${p.output()}`).join('\n'),
    stop: async () => {
      await Promise.all(procs.map((p) => p.stop()));
      await redis.stop();
    },
  };
  try {
    const role = (r: string) => flags({ ...o.flags, role: r, redis: redis.url });
    const leader = await startServerProcess(role('coordinator'), 60_000, o.leaderEnv ?? {});
    procs.push(leader);
    cluster.coordinators.push(leader);
    await waitForOutput(leader, /leading \(fence \d+\)/, 60_000);
    for (let i = 1; i < (o.coordinators ?? 1); i++) {
      const standby = await startServerProcess(role('coordinator'));
      procs.push(standby);
      cluster.coordinators.push(standby);
    }
    const gws = await Promise.all(
      Array.from({ length: o.gateways }, () => startServerProcess(role('gateway'))),
    );
    procs.push(...gws);
    cluster.gateways.push(...gws);
    // Ready once the coordinator has published its first status (the gateways serve it).
    await waitForOutput(leader, /coordinating /, 60_000);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

export async function waitForOutput(
  p: ServerProcess,
  re: RegExp,
  timeoutMs: number,
): Promise<RegExpExecArray> {
  const t0 = Date.now();
  for (;;) {
    const m = re.exec(p.output());
    if (m) return m;
    if (Date.now() - t0 > timeoutMs) throw new Error(`no ${re} in ${timeoutMs} ms:\n${p.output()}`);
    if (p.child.exitCode !== null) throw new Error(`process exited before ${re}:\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
