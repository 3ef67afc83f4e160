import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileStore, MemoryStore, nodeFileOps, type FileOps } from './store.ts';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'aegis-store-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The node calls, each one recorded; `crashAt` makes that call throw (a crash at that point). */
function recording(crashAt?: keyof FileOps): { ops: FileOps; calls: string[] } {
  const calls: string[] = [];
  const ops = Object.fromEntries(
    Object.entries(nodeFileOps).map(([k, f]) => [
      k,
      async (...a: unknown[]) => {
        calls.push(k);
        if (k === crashAt) throw new Error(`crash in ${k}`);
        return (f as (...x: unknown[]) => unknown)(...a);
      },
    ]),
  ) as unknown as FileOps;
  return { ops, calls };
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | null): string | null => (b ? new TextDecoder().decode(b) : null);

describe('FileStore', () => {
  it('round-trips a value; an absent key reads as null', async () => {
    const s = await FileStore.open(join(tmp(), 'nested', 'state'));
    expect(await s.get('checkpoint')).toBeNull();
    await s.put('checkpoint', bytes('one'));
    expect(text(await s.get('checkpoint'))).toBe('one');
    await s.put('checkpoint', bytes('two'));
    expect(text(await s.get('checkpoint'))).toBe('two');
  });

  it('writes a temp file, fsyncs it, renames it over the key, then fsyncs the directory', async () => {
    const dir = tmp();
    const { ops, calls } = recording();
    const s = await FileStore.open(dir, ops);
    await s.put('ledger', bytes('L'));
    expect(calls).toEqual(['writeSynced', 'rename', 'syncDir']);
    expect(readdirSync(dir)).toEqual(['ledger']); // no temp file left behind
    expect(readFileSync(join(dir, 'ledger'), 'utf8')).toBe('L');
  });

  it('writeSynced fsyncs before it resolves', async () => {
    const dir = tmp();
    let synced = false;
    const ops: FileOps = {
      ...nodeFileOps,
      async writeSynced(path, data) {
        await nodeFileOps.writeSynced(path, data);
        synced = true;
      },
    };
    const s = await FileStore.open(dir, ops);
    await s.put('run', bytes('R'));
    expect(synced).toBe(true);
    // And the node implementation really calls FileHandle.sync: spy on it through a real write.
    const { open } = await import('node:fs/promises');
    const fh = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(fh) as { sync: () => Promise<void> };
    await fh.close();
    const orig = proto.sync;
    let syncs = 0;
    proto.sync = async function (this: unknown) {
      syncs++;
      return orig.call(this);
    };
    try {
      await s.put('run', bytes('R2'));
    } finally {
      proto.sync = orig;
    }
    expect(syncs).toBe(2); // the temp file, then the directory
  });

  it('a crash between the temp write and the rename leaves the old value', async () => {
    const dir = tmp();
    await (await FileStore.open(dir)).put('checkpoint', bytes('old'));
    const { ops } = recording('rename');
    const crashing = await FileStore.open(dir, ops);
    await expect(crashing.put('checkpoint', bytes('new'))).rejects.toThrow(/crash in rename/);
    // After the "restart": the old value, and the stale temp file is ignored and later overwritten.
    const s = await FileStore.open(dir);
    expect(text(await s.get('checkpoint'))).toBe('old');
    await s.put('checkpoint', bytes('newer'));
    expect(text(await s.get('checkpoint'))).toBe('newer');
    expect(readdirSync(dir).sort()).toEqual(['checkpoint']);
  });

  it('a crash while writing the temp file leaves the old value too', async () => {
    const dir = tmp();
    await (await FileStore.open(dir)).put('ledger', bytes('old'));
    const { ops } = recording('writeSynced');
    await expect((await FileStore.open(dir, ops)).put('ledger', bytes('new'))).rejects.toThrow();
    expect(text(await (await FileStore.open(dir)).get('ledger'))).toBe('old');
  });

  it('serializes writes to one key; a failed put does not fail the next', async () => {
    const dir = tmp();
    let fail = true;
    const ops: FileOps = {
      ...nodeFileOps,
      async rename(a, b) {
        if (fail) {
          fail = false;
          throw new Error('disk full');
        }
        return nodeFileOps.rename(a, b);
      },
    };
    const s = await FileStore.open(dir, ops);
    const first = s.put('ledger', bytes('1'));
    const second = s.put('ledger', bytes('2'));
    await expect(first).rejects.toThrow('disk full');
    await second;
    expect(text(await s.get('ledger'))).toBe('2');
  });

  it('refuses keys outside the closed set', async () => {
    const s = await FileStore.open(tmp());
    await expect(s.put('../escape' as never, bytes('x'))).rejects.toThrow(/unknown store key/);
    await expect(s.get('weights' as never)).rejects.toThrow(/unknown store key/);
  });
});

describe('MemoryStore', () => {
  it('keeps copies, not the caller buffers', async () => {
    const s = new MemoryStore();
    const b = bytes('abc');
    await s.put('run', b);
    b[0] = 0;
    expect(text(await s.get('run'))).toBe('abc');
  });
});
