import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, relative } from 'node:path';
import { io } from 'socket.io-client';
import { listenForServer } from '../e2e/server-process.ts';
import {
  dockerignoreMatcher,
  execForm,
  healthcheckCommand,
  instructions,
  last,
  parseCopy,
  parseDockerfile,
  type Stage,
} from './dockerfile.ts';

/**
 * deploy/Dockerfile without a container engine: dockerfilelint, the image-hygiene rules as assertions, and a
 * replay of the runtime stage (only the paths it COPYs, a fresh `npm ci --omit=dev`, the image's own entry
 * command) that must answer /health and shut down on SIGTERM so that clients reconnect.
 */
const ROOT = join(import.meta.dirname, '..');
const DOCKERFILE = join(ROOT, 'deploy/Dockerfile');
const text = readFileSync(DOCKERFILE, 'utf8');
const stages = parseDockerfile(text);
const runtime = stages[stages.length - 1];
const STATE_DIR = '/var/lib/aegisfl';

const runs = (s: Stage): string[] => s.instructions.filter((i) => i.op === 'RUN').map((i) => i.args);

describe('Dockerfile', () => {
  it('passes dockerfilelint', () => {
    const r = spawnSync(join(ROOT, 'node_modules/.bin/dockerfilelint'), ['-o', 'json', DOCKERFILE], {
      encoding: 'utf8',
    });
    const report = JSON.parse(r.stdout) as { totalIssues: number; files: { issues: unknown[] }[] };
    expect(report.files[0].issues).toEqual([]);
    expect(report.totalIssues).toBe(0);
    expect(r.status).toBe(0);
  });

  it('builds from one base image pinned to an exact Node release the package supports', () => {
    const images = new Set(stages.map((s) => s.image));
    expect(images.size).toBe(1);
    const [image] = images;
    const m = /^node:(\d+)\.(\d+)\.(\d+)-[a-z]+-slim$/.exec(image);
    expect(m, `${image} is not pinned to node:X.Y.Z-<debian>-slim`).not.toBeNull();
    const engines = (
      JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }
    ).engines.node;
    const [, emaj, emin] = /^>=(\d+)\.(\d+)/.exec(engines)!.map(Number);
    const [maj, min] = [Number(m![1]), Number(m![2])];
    expect(maj > emaj || (maj === emaj && min >= emin), `${image} does not satisfy engines ${engines}`).toBe(
      true,
    );
  });

  it('installs only from the lockfile, and the runtime stage builds nothing', () => {
    // Packages arrive only through `npm ci` (fails when package.json and the lock disagree), never `npm install`.
    const commands = stages.flatMap((s) => runs(s).flatMap((r) => r.split('&&').map((c) => c.trim())));
    for (const cmd of commands) {
      expect(cmd).not.toMatch(/\byarn\b|\bpnpm\b|\bnpx\b/);
      if (/^npm\b/.test(cmd)) expect(cmd).toMatch(/^npm (ci|run build|cache clean)\b/);
    }
    expect(commands.filter((c) => c.startsWith('npm ci')).length).toBeGreaterThan(0);
    // Production dependencies come from a stage that omits the dev ones.
    const deps = stages.find((s) => runs(s).some((r) => /^npm ci\b.*--omit=dev/.test(r)));
    expect(deps).toBeDefined();
    // No package manager, compiler or whole-context copy in the stage that becomes the image.
    for (const cmd of runs(runtime))
      expect(cmd).not.toMatch(
        /apt-get|apk|\bnpm\b|npx|gcc|g\+\+|make|python|build-essential|node-gyp|curl|wget/,
      );
    for (const c of runtime.instructions.filter((i) => i.op === 'COPY').map((i) => parseCopy(i.args))) {
      expect(c.sources).not.toContain('.');
      if (c.from) expect(stages.map((s) => s.name)).toContain(c.from);
    }
    expect(runtime.instructions.some((i) => i.op === 'ADD')).toBe(false);
  });

  it('runs as a numeric non-root user, checks /health and keeps --state-dir on a volume', () => {
    const user = last(runtime, 'USER');
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(Number(user!.split(':')[0])).toBeGreaterThan(0);
    // USER comes before the entry command, so nothing after it runs as root.
    const at = (op: string): number => runtime.instructions.findIndex((i) => i.op === op);
    expect(at('USER')).toBeLessThan(at('ENTRYPOINT'));
    expect(healthcheckCommand(last(runtime, 'HEALTHCHECK')!).join(' ')).toContain('/health');
    expect(execForm(last(runtime, 'VOLUME')!)).toContain(STATE_DIR);
    const cmd = execForm(last(runtime, 'CMD')!);
    expect(cmd[cmd.indexOf('--state-dir') + 1]).toBe(STATE_DIR);
    expect(runs(runtime).join('\n')).toContain(`chown 1000:1000 ${STATE_DIR}`);
  });
});

describe('runtime stage replayed in a fresh folder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-image-'));
  const stateDir = mkdtempSync(join(tmpdir(), 'aegis-state-'));
  let child: ChildProcess | undefined;
  afterAll(() => {
    child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('serves /health with only the copied paths and fresh production dependencies, and stops on SIGTERM', async () => {
    const ignored = dockerignoreMatcher(readFileSync(join(ROOT, '.dockerignore'), 'utf8'));
    const workdir = last(runtime, 'WORKDIR')!;
    // From the build context, .dockerignore applies; a build output copied from a stage is taken whole.
    const replayCopy = (sources: string[], dest: string, context = true): void => {
      for (const src of sources) {
        const to = join(
          dir,
          posix.relative(workdir, posix.resolve(workdir, dest)),
          dest.endsWith('/') ? src : '',
        );
        cpSync(join(ROOT, src), to, {
          recursive: true,
          filter: (p) => !context || !ignored(relative(ROOT, p)),
        });
      }
    };
    for (const ins of runtime.instructions.filter((i) => i.op === 'COPY')) {
      const c = parseCopy(ins.args);
      if (!c.from) {
        replayCopy(c.sources, c.dest);
        continue;
      }
      const stage = stages.find((s) => s.name === c.from)!;
      const from = last(stage, 'WORKDIR')!;
      for (const src of c.sources) {
        const rel = posix.relative(from, src);
        if (rel === 'node_modules') {
          // The dependency stage: its own COPYs, then its `npm ci` (not its cache clean: that cache is shared here).
          for (const i of stage.instructions.filter((x) => x.op === 'COPY'))
            replayCopy(parseCopy(i.args).sources, parseCopy(i.args).dest);
          const ci = runs(stage)
            .flatMap((r) => r.split('&&').map((s) => s.trim()))
            .filter((s) => s.startsWith('npm ci'));
          expect(ci).toHaveLength(1);
          execFileSync('npm', [...ci[0].split(/\s+/).slice(1), '--prefer-offline'], {
            cwd: dir,
            stdio: 'pipe',
          });
        } else {
          // A build output: the same `npm run build` made it in this checkout (npm test runs vite build first).
          expect(runs(stage)).toContain('npm run build');
          expect(existsSync(join(ROOT, rel)), `${rel}/ missing: run "npm run build" first`).toBe(true);
          replayCopy([rel], c.dest, false);
        }
        expect(existsSync(join(dir, posix.relative(workdir, posix.resolve(workdir, c.dest))))).toBe(true);
      }
    }
    // Nothing beyond the runtime's COPYs: no client/, demo/, e2e/ sources, no dev dependencies, no tests.
    expect(readdirSync(dir).sort()).toEqual([
      'dist',
      'node_modules',
      'package-lock.json',
      'package.json',
      'server',
      'shared',
    ]);
    expect(existsSync(join(dir, 'node_modules/vitest'))).toBe(false);
    expect(existsSync(join(dir, 'node_modules/tsx'))).toBe(true);
    expect(existsSync(join(dir, 'server/main.test.ts'))).toBe(false);
    expect(existsSync(join(dir, 'dist/aegis-embed.js'))).toBe(true);

    // The image's command: ENTRYPOINT + CMD, the volume at a temporary folder, then a free loopback port.
    const env = Object.fromEntries(
      runtime.instructions
        .filter((i) => i.op === 'ENV')
        .map((i) => /^(\w+)=(.*)$/.exec(i.args)!.slice(1, 3) as [string, string]),
    );
    const [node, ...entry] = [...execForm(last(runtime, 'ENTRYPOINT')!), ...execForm(last(runtime, 'CMD')!)];
    expect(node).toBe('node');
    const help = execFileSync(
      process.execPath,
      [...entry.slice(0, entry.indexOf('server/main.ts') + 1), '--help'],
      {
        cwd: dir,
        encoding: 'utf8',
      },
    );
    const args = entry.map((a) => (a === STATE_DIR ? stateDir : a));
    for (const f of args.slice(args.indexOf('server/main.ts')).filter((a) => a.startsWith('--')))
      expect(help).toContain(`${f} `);
    child = spawn(process.execPath, [...args, '--host', '127.0.0.1', '--port', '0'], {
      cwd: dir,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const server = listenForServer(child, 60_000);
    const url = await server.url;
    expect(server.output()).not.toContain('not found; run "npm run build"');
    const health = await fetch(url + '/health');
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ ok: true });
    expect((await fetch(url + '/demo/')).status).toBe(200);

    // The image's HEALTHCHECK command, pointed at this port, passes now and fails once the server is gone.
    const port = new URL(url).port;
    const check = healthcheckCommand(last(runtime, 'HEALTHCHECK')!).map((a) =>
      a.replace(':8080/', `:${port}/`),
    );
    expect(check[0]).toBe('node');
    const runCheck = (): number | null => spawnSync(process.execPath, check.slice(1), { cwd: dir }).status;
    expect(runCheck()).toBe(0);

    // SIGTERM (what a spot preemption or a rollout sends): the process exits 0 and a connected client sees
    // the transport close, which socket.io-client answers by reconnecting (a server "disconnect" would not).
    const socket = io(url, { transports: ['websocket'], reconnection: false });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    });
    const reason = new Promise<string>((resolve) => socket.once('disconnect', resolve));
    const exited = new Promise<number | null>((resolve) => child!.once('exit', resolve));
    child.kill('SIGTERM');
    expect(await reason).toBe('transport close');
    expect(await exited).toBe(0);
    expect(server.output()).toContain('SIGTERM: shutting down');
    expect(runCheck()).toBe(1);
  }, 180_000);
});

describe('dockerfile reader', () => {
  it('joins continuations, skips comments and reads COPY flags', () => {
    const ins = instructions('# c\nFROM a:1 AS x\nRUN a \\\n  && b\nCOPY --from=x --chown=1:1 /app/d ./d\n');
    expect(ins.map((i) => [i.op, i.args, i.line])).toEqual([
      ['FROM', 'a:1 AS x', 2],
      ['RUN', 'a && b', 3],
      ['COPY', '--from=x --chown=1:1 /app/d ./d', 5],
    ]);
    expect(parseCopy(ins[2].args)).toEqual({ from: 'x', sources: ['/app/d'], dest: './d' });
    expect(() => execForm('node x')).toThrow();
  });

  it('matches .dockerignore names and globs', () => {
    const m = dockerignoreMatcher('# x\nnode_modules\n**/*.test.ts\n');
    expect(m('node_modules')).toBe(true);
    expect(m('node_modules/a/b.js')).toBe(true);
    expect(m('server/a.test.ts')).toBe(true);
    expect(m('a.test.ts')).toBe(true);
    expect(m('server/a.ts')).toBe(false);
    expect(m('server/node_modules_x')).toBe(false);
    expect(() => dockerignoreMatcher('!keep')).toThrow();
  });
});
