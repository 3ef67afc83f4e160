/**
 * An example host page with a task of its own: it pins the task file it agreed to and hands join() its
 * visitor's examples from its own array. ?seed=N picks this visitor's examples (a stand-in for real data).
 */
import taskJson from './tasks/blobs.task.json?raw';
import { join } from '../client/index.ts';
import { blobs } from '../shared/data/blobs.ts';
import type { Task } from '../shared/model/task.ts';
import type { RejectReason } from '../shared/base/errors.ts';

const task = JSON.parse(taskJson) as Task;
const params = new URLSearchParams(location.search);
const seed = Number(params.get('seed') ?? 1);
// The page's own data: here generated, on a real site whatever it holds about this visitor.
const examples = blobs({ seed, count: 48 });

/** What the page shows, also read by e2e/task-browser.test.ts. */
interface TaskPageProbe {
  state: string;
  task: { name: string; hash: string } | null;
  rounds: number[];
  accuracy: number | null;
  errors: { message: string; reason: RejectReason | null }[];
}
const probe: TaskPageProbe = { state: 'starting', task: null, rounds: [], accuracy: null, errors: [] };
(window as unknown as { __task: TaskPageProbe }).__task = probe;
const $ = (id: string): HTMLElement => document.getElementById(id)!;
$('examples').textContent = `${examples.length} (seed ${seed})`;

// One options object: the task the page agreed to, its data, and its privacy floors.
const client = join({
  task,
  data: async () => examples,
  floors: { requireSecAgg: true, minCohort: 3 },
});
client.on('state', (s) => {
  probe.state = s;
  $('state').textContent = s;
});
client.on('task', (t) => {
  probe.task = { name: t.name, hash: t.hash };
  $('task').textContent = `${t.name} (${t.numParams} parameters, ${t.hash.slice(0, 16)}…)`;
});
client.on('roundEnd', (r) => {
  probe.rounds.push(r.round);
  probe.accuracy = r.accuracy;
  $('rounds').textContent = String(probe.rounds.length);
  $('accuracy').textContent = `${(r.accuracy * 100).toFixed(1)}%`;
});
client.on('error', (e) => {
  const reason = (e as Error & { reason?: RejectReason }).reason ?? null;
  probe.errors.push({ message: e.message, reason });
  $('error').textContent = reason ? `${reason}: ${e.message}` : e.message;
});
