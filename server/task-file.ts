import { readFileSync } from 'node:fs';
import { packExamples, type Example, type Examples } from '../shared/data/examples.ts';
import { checkTask, TaskError, type CheckedTask, type Task } from '../shared/model/task.ts';

/** Reads and parses a JSON file, or throws naming the flag and the path. */
function readJson(flag: string, path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`${flag} ${path}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${flag} ${path}: not JSON (${(e as Error).message})`);
  }
}

/** --task: a task file (docs/tasks.md), checked as strictly as a client checks it. */
export function readTaskFile(path: string): CheckedTask {
  const raw = readJson('--task', path);
  try {
    return checkTask(raw);
  } catch (e) {
    if (e instanceof TaskError) throw new Error(`--task ${path}: ${e.message}`);
    throw e;
  }
}

/**
 * --task-eval: the operator's held-out set, JSON { "x": [[...features], ...], "y": [labels] }: row i is
 * example i's features, flattened row-major to prod(inputShape) numbers; y[i] its class in 0..numClasses-1.
 */
export function readTaskEval(path: string, task: Task): Examples {
  const raw = readJson('--task-eval', path) as { x?: unknown; y?: unknown } | null;
  const { x, y } = raw ?? {};
  if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length)
    throw new Error(`--task-eval ${path}: expected { "x": [[...]], "y": [...] } with as many labels as rows`);
  try {
    const list: Example[] = x.map((row, i) => ({ x: row as number[], y: y[i] as number }));
    return packExamples(list, task.inputShape, task.numClasses);
  } catch (e) {
    throw new Error(`--task-eval ${path}: ${(e as Error).message}`);
  }
}
