/**
 * A page's main-thread tasks between two `performance.mark`s, read from a Chrome trace, each with the CPU
 * time it used (Chrome's thread clock, `tdur`) beside its wall time (`dur`).
 *
 * Why CPU time: on a 2-core machine shared by a browser's workers, a test runner and a server, the OS can
 * take the main thread off the cores in the middle of a task. The Long Tasks API and frame gaps then read
 * 50-160 ms for tasks that ran 5-7 ms of code (seen in the embed's host-page test), so a wall-clock bound
 * flakes. The thread clock counts only the time the task's own code ran, which is what the page's visitor
 * pays for our work wherever the page runs.
 */

/** What `browser.startTracing` must record for {@link tasksBetween}. */
export const MAIN_THREAD_CATEGORIES = [
  'disabled-by-default-devtools.timeline',
  'devtools.timeline',
  'blink.user_timing',
];

interface TraceEvent {
  name: string;
  cat: string;
  ph: string;
  pid: number;
  tid: number;
  ts: number;
  dur?: number;
  tdur?: number;
  args?: { data?: { functionName?: string; url?: string; type?: string } };
}

export interface MainThreadTask {
  /** ms after the `from` mark. */
  at: number;
  wallMs: number;
  cpuMs: number;
  /** The script calls and events inside it that used 1 ms of CPU or more, heaviest first: for failure messages. */
  inside: string[];
}

/** Parses what `browser.stopTracing()` returned. */
export function parseTrace(buf: Uint8Array | string): TraceEvent[] {
  const json = JSON.parse(typeof buf === 'string' ? buf : new TextDecoder().decode(buf)) as
    { traceEvents: TraceEvent[] } | TraceEvent[];
  return Array.isArray(json) ? json : json.traceEvents;
}

function markNamed(events: TraceEvent[], name: string): TraceEvent {
  const marks = events.filter((e) => e.name === name && e.cat.includes('blink.user_timing'));
  if (marks.length !== 1) throw new Error(`the trace has ${marks.length} marks named ${name} (want 1)`);
  return marks[0];
}

const label = (e: TraceEvent): string => {
  const d = e.args?.data;
  const what = d?.functionName || d?.type || '';
  const where = d?.url ? `@${d.url.replace(/^.*\//, '')}` : '';
  return `${e.name}${what ? `:${what}` : ''}${where} ${((e.tdur ?? 0) / 1000).toFixed(1)} ms`;
};

/**
 * The tasks of the thread that made the `from` mark (a page's main thread) that overlap the span from the
 * `from` mark to `slackMs` after the `to` mark. Throws if the marks are missing, on different threads, or
 * the trace has no thread clock (then CPU time cannot be told from wall time).
 */
export function tasksBetween(events: TraceEvent[], from: string, to: string, slackMs = 50): MainThreadTask[] {
  const a = markNamed(events, from);
  const b = markNamed(events, to);
  if (a.pid !== b.pid || a.tid !== b.tid)
    throw new Error(`${from} and ${to} were marked on different threads`);
  const end = b.ts + slackMs * 1000;
  const onThread = events.filter(
    (e) => e.pid === a.pid && e.tid === a.tid && e.ph === 'X' && e.dur !== undefined,
  );
  const tasks = onThread.filter((e) => e.name === 'RunTask' && e.ts + e.dur! > a.ts && e.ts <= end);
  if (tasks.length && tasks.every((t) => t.tdur === undefined))
    throw new Error('the trace has no thread-clock durations (tdur)');
  return tasks.map((t) => ({
    at: (t.ts - a.ts) / 1000,
    wallMs: t.dur! / 1000,
    cpuMs: (t.tdur ?? 0) / 1000,
    inside: onThread
      .filter((e) => e !== t && e.name !== 'RunTask' && e.ts >= t.ts && e.ts + e.dur! <= t.ts + t.dur!)
      .filter((e) => (e.tdur ?? 0) >= 1000)
      .sort((x, y) => y.tdur! - x.tdur!)
      .slice(0, 5)
      .map(label),
  }));
}
