import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/** shared/ must run unchanged in browsers, workers and Node: no Node modules, no DOM globals. */
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith('.ts') && !p.endsWith('.test.ts') ? [p] : [];
  });
}

const NODE_IMPORT =
  /from\s+['"](node:[^'"]+|fs|path|os|crypto|http|https|net|events|child_process|worker_threads|buffer|stream|url|util)['"]/;
const DOM_GLOBAL =
  /\b(window|document|localStorage|sessionStorage|navigator|location|HTMLElement|OffscreenCanvas|Buffer|process|require|__dirname)\b\s*[.([]/;

describe('shared/ purity', () => {
  const files = sources(new URL('.', import.meta.url).pathname);
  it('has sources to check', () => expect(files.length).toBeGreaterThan(5));
  it.each(files)('%s imports no Node modules and touches no DOM/Node globals', (f) => {
    const code = readFileSync(f, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    expect(code).not.toMatch(NODE_IMPORT);
    expect(code).not.toMatch(DOM_GLOBAL);
  });
  it('the checker itself catches violations', () => {
    expect(`import { readFile } from 'node:fs';`).toMatch(NODE_IMPORT);
    expect(`const w = window.innerWidth;`).toMatch(DOM_GLOBAL);
    expect(`const b = Buffer.from(x);`).toMatch(DOM_GLOBAL);
  });
});

/** Imports of one file, as the paths written in its import/export-from statements. */
function importsOf(file: string): string[] {
  const code = readFileSync(file, 'utf8');
  return [...code.matchAll(/(?:import|export)\s[^'";]*?from\s+['"]([^'"]+)['"]/g)].map((m) => m[1]);
}

describe('shared/ dependency direction', () => {
  const root = new URL('.', import.meta.url).pathname;
  it.each(sources(join(root, 'base')))(
    '%s imports nothing (errors, records, bytes sit under everything)',
    (f) => {
      expect(importsOf(f)).toEqual([]);
    },
  );
  it.each(sources(join(root, 'secagg')))(
    '%s does not import shared/protocol (only protocol imports secagg)',
    (f) => {
      expect(importsOf(f).filter((p) => p.includes('protocol/'))).toEqual([]);
    },
  );
  it('the import reader sees type imports and re-exports', () => {
    const tmp = join(root, 'base', 'errors.ts');
    expect(importsOf(tmp)).toEqual([]);
    expect(importsOf(join(root, 'protocol', 'messages.ts'))).toContain('../secagg/types.ts');
  });
});
