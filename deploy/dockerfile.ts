/**
 * A small Dockerfile reader for the tests that check deploy/Dockerfile and replay its runtime stage without a
 * container engine. It knows the instructions that file uses, not the whole Dockerfile grammar.
 */

export interface Instruction {
  /** Upper-case instruction name: FROM, COPY, RUN, ... */
  op: string;
  /** Everything after the name, continuation lines joined. */
  args: string;
  /** 1-based line where the instruction starts. */
  line: number;
}

export interface Stage {
  /** The `AS` name, or the stage index as a string. */
  name: string;
  image: string;
  instructions: Instruction[];
}

export interface Copy {
  from?: string;
  sources: string[];
  dest: string;
}

/** Instructions, comments and blank lines dropped, `\` continuations joined. */
export function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) {
      line = line.slice(0, -1).trimEnd() + ' ' + lines[++i].trim();
    }
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`line ${start + 1}: cannot read "${line}"`);
    out.push({ op: m[1].toUpperCase(), args: m[2].trim(), line: start + 1 });
  }
  return out;
}

/** The build stages in order; instructions before the first FROM (ARG) are not kept. */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  for (const ins of instructions(text)) {
    if (ins.op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`line ${ins.line}: cannot read FROM ${ins.args}`);
      stages.push({ name: m[2] ?? String(stages.length), image: m[1], instructions: [] });
    } else if (stages.length > 0) {
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  if (stages.length === 0) throw new Error('no FROM in the Dockerfile');
  return stages;
}

/** The JSON ("exec") form of CMD, ENTRYPOINT or HEALTHCHECK's CMD; the shell form is refused. */
export function execForm(args: string): string[] {
  const v: unknown = JSON.parse(args);
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string'))
    throw new Error(`not an exec-form array: ${args}`);
  return v;
}

/** COPY's flags, sources and destination (no quoted or JSON-form paths: the file does not use them). */
export function parseCopy(args: string): Copy {
  const words = args.split(/\s+/);
  let from: string | undefined;
  while (words[0]?.startsWith('--')) {
    const flag = words.shift()!;
    if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
  }
  if (words.length < 2) throw new Error(`COPY needs a source and a destination: ${args}`);
  return { from, sources: words.slice(0, -1), dest: words[words.length - 1] };
}

/** HEALTHCHECK's command (exec form), its options dropped. */
export function healthcheckCommand(args: string): string[] {
  const m = /\bCMD\s+(\[.*\])\s*$/.exec(args);
  if (!m) throw new Error(`HEALTHCHECK without an exec-form CMD: ${args}`);
  return execForm(m[1]);
}

/** The last value of an instruction in a stage (WORKDIR, USER, ...), or undefined. */
export function last(stage: Stage, op: string): string | undefined {
  return stage.instructions.filter((i) => i.op === op).at(-1)?.args;
}

/**
 * A matcher for .dockerignore lines of the kinds the repository's file uses: a name or path (matches it and
 * everything below it) and `**` / `*` globs. Negations (`!`) are refused rather than misread.
 */
export function dockerignoreMatcher(text: string): (relPath: string) => boolean {
  const res = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((p) => {
      if (p.startsWith('!')) throw new Error(`.dockerignore negation not supported here: ${p}`);
      const body = p
        .replace(/^\/+|\/+$/g, '')
        .split('/')
        .map((seg) =>
          seg === '**'
            ? '(?:.*/)?'
            : seg
                .replace(/[.+^${}()|[\]\\]/g, '\\$&')
                .replace(/\*/g, '[^/]*')
                .replace(/\?/g, '[^/]') + '/',
        )
        .join('')
        .replace(/\/$/, '');
      return new RegExp(`^${body}(?:/.*)?$`);
    });
  return (relPath) => res.some((r) => r.test(relPath));
}
