/**
 * One client process of `npm run bench:swarm` (started by bench-swarm-lib.ts over IPC): runs its share of
 * the swarm as ScriptedClients (the real client session code and crypto over socket.io) and reports counts
 * every second. Nothing here is a second protocol implementation: it only connects, paces and counts.
 */
import {
  benchDelta,
  benchExamples,
  emptyReport,
  type ClientJob,
  type ClientReport,
} from './bench-swarm-lib.ts';
import { getPriority } from 'node:os';
import { ScriptedClient } from './scripted-client.ts';

const send = (m: ClientReport): void => void process.send?.(m);

/**
 * One client's crypto at a time, each in its own turn of the event loop: hundreds of clients of this
 * process get their roster at once, and answering them back to back would hold the loop for tens of
 * seconds, past socket.io's ping timeout (the server would drop them all as dead).
 */
const waiting: (() => void)[] = [];
let turning = false;
function nextTurn(): void {
  const go = waiting.shift();
  if (!go) {
    turning = false;
    return;
  }
  go(); // its answer runs in this turn's microtasks; the next client waits for the next turn
  setImmediate(nextTurn);
}
function turn(): Promise<void> {
  return new Promise((resolve) => {
    waiting.push(resolve);
    if (!turning) {
      turning = true;
      setImmediate(nextTurn);
    }
  });
}

process.once('message', async (job: ClientJob) => {
  const vanish = new Map(job.vanish);
  const clients: ScriptedClient[] = [];
  const report: ClientReport = { ...emptyReport(), nice: getPriority() };
  let stopped = false;
  process.on('message', (m: { stop?: boolean }) => {
    if (!m.stop) return;
    stopped = true;
    tally();
    send({ ...report, final: true });
    for (const c of clients) c.close();
    setTimeout(() => process.exit(0), 200);
  });
  const ids = new Map<ScriptedClient, number>();
  const counted = new WeakSet<ScriptedClient>();
  // What each client sent is counted and then forgotten: the swarm would otherwise hold every payload.
  const tally = (): void => {
    for (const c of clients) {
      for (const s of c.sent) {
        report.sent[s.event] = (report.sent[s.event] ?? 0) + 1;
        if (s.event === 'update') report.maskedSent.push(ids.get(c)!);
      }
      c.sent.length = 0;
      c.plain.clear();
      for (const e of c.errors.splice(0)) if (report.errors.length < 20) report.errors.push(e.message);
      const why = c.disconnectReason;
      if (why !== null && !counted.has(c)) {
        counted.add(c);
        report.disconnects[why] = (report.disconnects[why] ?? 0) + 1;
      }
    }
  };
  const timer = setInterval(() => {
    tally();
    send(report);
  }, 1000);
  timer.unref();
  const gap = 1000 / Math.max(1, job.connectPerSecond);
  for (const i of job.ids) {
    if (stopped) break;
    const c = new ScriptedClient(
      job.url,
      `bench-${i}`,
      benchDelta(i, job.numParams),
      benchExamples(i),
      vanish.get(i) ?? null,
    );
    ids.set(c, i);
    for (const phase of ['keys', 'shares', 'masked', 'unmask'] as const) c.hooks[phase] = turn;
    c.socket.on('connect', () => {
      report.connected++;
      // hello and ready are sent by the client on connect and welcome.
      report.sent.hello = (report.sent.hello ?? 0) + 1;
    });
    c.socket.on('welcome', () => (report.sent.ready = (report.sent.ready ?? 0) + 1));
    c.socket.onAny(() => report.received++);
    clients.push(c);
    await new Promise((r) => setTimeout(r, gap));
  }
});
