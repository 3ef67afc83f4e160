import { existsSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  CIFAR_BATCH_BYTES,
  CIFAR10_MD5,
  checkCifar10Md5,
  download,
  main,
  md5Hex,
  readTar,
  unpackTarGz,
  validateCifar10Dir,
} from './data-cifar10.ts';
import { CIFAR_RECORD_BYTES, CIFAR_TEST_FILE, CIFAR_TRAIN_FILES } from '../shared/data/cifar10.ts';

/** A ustar archive written by hand: the reader is checked against the format, not against itself. */
function ustar(files: { name: string; data: Uint8Array; type?: '0' | '5'; prefix?: string }[]): Uint8Array {
  const blocks: Uint8Array[] = [];
  const enc = new TextEncoder();
  for (const f of files) {
    const h = new Uint8Array(512);
    const put = (s: string, at: number): void => h.set(enc.encode(s), at);
    put(f.name, 0);
    put('0000644\0', 100);
    put('0000000\0', 108);
    put('0000000\0', 116);
    put(f.data.length.toString(8).padStart(11, '0') + '\0', 124);
    put('00000000000\0', 136);
    put('        ', 148);
    put(f.type ?? '0', 156);
    put('ustar\0', 257);
    put('00', 263);
    if (f.prefix) put(f.prefix, 345);
    const sum = h.reduce((a, b) => a + b, 0);
    put(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h);
    const body = new Uint8Array(Math.ceil(f.data.length / 512) * 512);
    body.set(f.data);
    blocks.push(body);
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((s, b) => s + b.length, 0));
  let o = 0;
  for (const b of blocks) {
    out.set(b, o);
    o += b.length;
  }
  return out;
}

/** The read-only copy the project keeps beside its checkouts (../shared from the main checkout). */
function sharedCifarDir(): string {
  if (process.env.AEGIS_CIFAR_DIR) return process.env.AEGIS_CIFAR_DIR;
  for (let d = resolve(import.meta.dirname, '..'); ; d = dirname(d)) {
    const c = join(d, 'shared/data/cifar10/cifar-10-batches-bin');
    if (existsSync(join(c, CIFAR_TEST_FILE))) return c;
    if (dirname(d) === d)
      throw new Error('no shared/data/cifar10/cifar-10-batches-bin above the repo: set AEGIS_CIFAR_DIR');
  }
}

describe('readTar', () => {
  it('reads names (with the ustar prefix), types and contents, and checks header checksums', () => {
    const a = new Uint8Array(700).map((_, i) => i % 251);
    const tar = ustar([
      { name: 'top/', data: new Uint8Array(0), type: '5' },
      { name: 'a.bin', data: a, prefix: 'top' },
      { name: 'top/empty.txt', data: new Uint8Array(0) },
    ]);
    const e = readTar(tar);
    expect(e.map((x) => [x.name, x.type, x.data.length])).toEqual([
      ['top/', 'dir', 0],
      ['top/a.bin', 'file', 700],
      ['top/empty.txt', 'file', 0],
    ]);
    expect(Array.from(e[1].data)).toEqual(Array.from(a));
    tar[10] ^= 1; // a flipped name byte breaks the first header's checksum
    expect(() => readTar(tar)).toThrow(/checksum/);
  });

  it('refuses an entry that runs past the end', () => {
    const tar = ustar([{ name: 'x', data: new Uint8Array(2000) }]);
    expect(() => readTar(tar.subarray(0, 1024))).toThrow(/past the end/);
  });
});

describe('unpackTarGz', () => {
  it('writes the files under the output folder', async () => {
    const out = mkdtempSync(join(tmpdir(), 'cifar-unpack-'));
    const data = new Uint8Array([1, 2, 3]);
    const n = await unpackTarGz(gzipSync(ustar([{ name: 'cifar-10-batches-bin/readme.html', data }])), out);
    expect(n).toBe(1);
    expect(Array.from(readFileSync(join(out, 'cifar-10-batches-bin/readme.html')))).toEqual([1, 2, 3]);
  });

  it('refuses a name that climbs out of the output folder', async () => {
    const out = mkdtempSync(join(tmpdir(), 'cifar-unpack-'));
    const evil = gzipSync(ustar([{ name: '../escaped.txt', data: new Uint8Array(1) }]));
    await expect(unpackTarGz(evil, out)).rejects.toThrow(/outside/);
    expect(existsSync(join(out, '../escaped.txt'))).toBe(false);
  });
});

describe('md5', () => {
  it('is the published digest check', () => {
    expect(md5Hex(new TextEncoder().encode('abc'))).toBe('900150983cd24fb0d6963f7d28e17f72'); // RFC 1321
    expect(() => checkCifar10Md5(new Uint8Array(10))).toThrow(new RegExp(`expected ${CIFAR10_MD5}`));
  });
});

describe('validateCifar10Dir', () => {
  it('accepts the real CIFAR-10 binaries (60,000 records)', async () => {
    expect(await validateCifar10Dir(sharedCifarDir())).toBe(60_000);
  });

  it('names a missing file, a wrong size and a label outside 0..9', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cifar-bad-'));
    await expect(validateCifar10Dir(dir)).rejects.toThrow(/data_batch_1\.bin is missing/);
    for (const f of [...CIFAR_TRAIN_FILES, CIFAR_TEST_FILE])
      writeFileSync(join(dir, f), new Uint8Array(CIFAR_BATCH_BYTES));
    expect(await validateCifar10Dir(dir)).toBe(60_000);
    const bad = new Uint8Array(CIFAR_BATCH_BYTES);
    bad[5 * CIFAR_RECORD_BYTES] = 10;
    writeFileSync(join(dir, CIFAR_TEST_FILE), bad);
    await expect(validateCifar10Dir(dir)).rejects.toThrow(/record 5 has label 10/);
    truncateSync(join(dir, CIFAR_TRAIN_FILES[2]), 100);
    await expect(validateCifar10Dir(dir)).rejects.toThrow(/data_batch_3\.bin has 100 bytes/);
  });
});

describe('the command', () => {
  it('offline: one line naming the cause, exit status 1', async () => {
    const lines: string[] = [];
    const offline = (() =>
      Promise.reject(
        Object.assign(new TypeError('fetch failed'), { cause: { code: 'ENOTFOUND' } }),
      )) as unknown as typeof fetch;
    const out = mkdtempSync(join(tmpdir(), 'cifar-cmd-'));
    const rc = await main(
      ['--out', out],
      () => {},
      (m) => lines.push(m),
      offline,
    );
    expect(rc).toBe(1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^data:cifar10: cannot download https:\/\/www\.cs\.toronto\.edu.*ENOTFOUND/);
    expect(lines[0]).not.toMatch(/\n/);
  });

  it('a local archive with the wrong md5 is refused before anything is written', async () => {
    const out = mkdtempSync(join(tmpdir(), 'cifar-cmd-'));
    const file = join(out, 'a.tar.gz');
    mkdirSync(out, { recursive: true });
    writeFileSync(file, gzipSync(ustar([{ name: 'cifar-10-batches-bin/x', data: new Uint8Array(1) }])));
    const lines: string[] = [];
    expect(
      await main(
        ['--archive', file, '--out', out],
        () => {},
        (m) => lines.push(m),
      ),
    ).toBe(1);
    expect(lines[0]).toMatch(/md5 .* corrupt download/);
    expect(existsSync(join(out, 'cifar-10-batches-bin'))).toBe(false);
  });

  it('an HTTP error is reported with its status', async () => {
    const notFound = (async () => new Response('no', { status: 404 })) as unknown as typeof fetch;
    await expect(download('https://example.invalid/x', notFound)).rejects.toThrow(/HTTP 404/);
  });
});
