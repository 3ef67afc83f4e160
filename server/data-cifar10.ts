import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, stat } from 'node:fs/promises';
import { dirname, join, normalize, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { DEFAULT_CIFAR_PARENT } from './datasets.ts';
import { CIFAR_RECORD_BYTES, CIFAR_TEST_FILE, CIFAR_TRAIN_FILES } from '../shared/data/cifar10.ts';

/**
 * `npm run data:cifar10`: downloads the official CIFAR-10 binary archive, checks its md5, unpacks it (pure
 * Node: gunzip + a minimal ustar reader) into the default data folder the server uses when present, and
 * checks the six batch files. Everything here but main() is a function over bytes or one directory, tested
 * without a download.
 */
export const CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
export const CIFAR10_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530';
/** 10,000 records of 3073 bytes per batch file. */
export const CIFAR_BATCH_BYTES = 10_000 * CIFAR_RECORD_BYTES;

export interface TarEntry {
  name: string;
  type: 'file' | 'dir' | 'other';
  data: Uint8Array;
}

const text = (b: Uint8Array): string =>
  new TextDecoder().decode(b.subarray(0, b.indexOf(0) < 0 ? b.length : b.indexOf(0)));
const octal = (b: Uint8Array, field: string): number => {
  const s = text(b).trim();
  if (!/^[0-7]*$/.test(s)) throw new Error(`tar: bad ${field} field "${s}"`);
  return s === '' ? 0 : parseInt(s, 8);
};

/**
 * The entries of an uncompressed tar (ustar/GNU headers, 512-byte blocks). Checks each header's checksum;
 * GNU long names ('L') and pax headers ('x', 'g') are applied or skipped, which is all the CIFAR archive needs.
 */
export function readTar(tar: Uint8Array): TarEntry[] {
  const out: TarEntry[] = [];
  let off = 0;
  let longName: string | null = null;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break; // end-of-archive marker
    const sum = octal(h.subarray(148, 156), 'checksum');
    let computed = 0;
    for (let i = 0; i < 512; i++) computed += i >= 148 && i < 156 ? 32 : h[i];
    if (sum !== computed) throw new Error(`tar: header checksum mismatch at offset ${off}`);
    const size = octal(h.subarray(124, 136), 'size');
    const flag = String.fromCharCode(h[156] || 48);
    const prefix = text(h.subarray(345, 500));
    let name = text(h.subarray(0, 100));
    if (prefix && text(h.subarray(257, 263)) === 'ustar') name = `${prefix}/${name}`;
    const start = off + 512;
    if (start + size > tar.length) throw new Error(`tar: entry ${name} runs past the end of the archive`);
    const data = tar.subarray(start, start + size);
    off = start + Math.ceil(size / 512) * 512;
    if (flag === 'L') {
      longName = text(data);
      continue;
    }
    if (flag === 'x' || flag === 'g') continue;
    if (longName) [name, longName] = [longName, null];
    const type = flag === '0' || flag === '\0' ? 'file' : flag === '5' ? 'dir' : 'other';
    out.push({ name, type, data });
  }
  return out;
}

/** Hex md5 of bytes. */
export function md5Hex(bytes: Uint8Array): string {
  return createHash('md5').update(bytes).digest('hex');
}

/** Writes a file so a reader never sees half of it: a temporary file, fsync, then rename. */
async function writeAtomic(path: string, data: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

/** Throws unless the archive's md5 is the published one (a truncated or tampered download). */
export function checkCifar10Md5(archive: Uint8Array): void {
  const sum = md5Hex(archive);
  if (sum !== CIFAR10_MD5)
    throw new Error(`archive md5 is ${sum}, expected ${CIFAR10_MD5}: corrupt download`);
}

/**
 * Unpacks a .tar.gz's regular files under `outDir`; returns how many. A name that would land outside
 * outDir (absolute, or with ..) is refused rather than written.
 */
export async function unpackTarGz(archive: Uint8Array, outDir: string): Promise<number> {
  const entries = readTar(gunzipSync(archive));
  const root = resolve(outDir);
  let n = 0;
  for (const e of entries) {
    if (e.type !== 'file') continue;
    const target = resolve(root, normalize(e.name));
    if (!target.startsWith(root + sep)) throw new Error(`archive entry ${e.name} points outside ${outDir}`);
    await mkdir(dirname(target), { recursive: true });
    await writeAtomic(target, e.data);
    n++;
  }
  return n;
}

/**
 * Checks a cifar-10-batches-bin folder: the five training batches and the test batch are there, each
 * 30,730,000 bytes, and every record's label byte is 0..9. Returns the number of records checked.
 */
export async function validateCifar10Dir(dir: string): Promise<number> {
  let records = 0;
  for (const f of [...CIFAR_TRAIN_FILES, CIFAR_TEST_FILE]) {
    const path = join(dir, f);
    const st = await stat(path).catch(() => null);
    if (!st) throw new Error(`${path} is missing`);
    if (st.size !== CIFAR_BATCH_BYTES)
      throw new Error(`${path} has ${st.size} bytes, expected ${CIFAR_BATCH_BYTES}`);
    const bytes = await readFile(path);
    for (let r = 0; r < bytes.length; r += CIFAR_RECORD_BYTES)
      if (bytes[r] > 9)
        throw new Error(`${path}: record ${r / CIFAR_RECORD_BYTES} has label ${bytes[r]}, expected 0..9`);
    records += bytes.length / CIFAR_RECORD_BYTES;
  }
  return records;
}

/** Downloads url; an unreachable host becomes one line naming the cause (no stack). */
export async function download(url: string, fetchFn: typeof fetch = fetch): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetchFn(url);
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (e as Error).message;
    throw new Error(
      `cannot download ${url} (${why}): no network? Fetch the archive elsewhere and run with --archive FILE`,
    );
  }
  if (!res.ok) throw new Error(`cannot download ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** The command: [--archive FILE] [--out DIR]. Resolves to the exit status; errors are one line on stderr. */
export async function main(
  argv: string[],
  log: (m: string) => void = console.log,
  fail: (m: string) => void = console.error,
  fetchFn: typeof fetch = fetch,
): Promise<number> {
  const { parseArgs } = await import('node:util');
  try {
    const { values } = parseArgs({
      args: argv,
      options: { archive: { type: 'string' }, out: { type: 'string', default: DEFAULT_CIFAR_PARENT } },
    });
    const out = values.out!;
    let archive: Uint8Array;
    if (values.archive) archive = await readFile(values.archive);
    else {
      log(`downloading ${CIFAR10_URL} (about 163 MB)`);
      archive = await download(CIFAR10_URL, fetchFn);
    }
    checkCifar10Md5(archive);
    log(`md5 ${CIFAR10_MD5} ok; unpacking into ${out}/`);
    await unpackTarGz(archive, out);
    const dir = join(out, 'cifar-10-batches-bin');
    const n = await validateCifar10Dir(dir);
    log(`CIFAR-10 ready in ${dir} (${n} records); the server uses it when started without --cifar-dir`);
    return 0;
  } catch (e) {
    fail(`data:cifar10: ${(e as Error).message}`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href)
  process.exitCode = await main(process.argv.slice(2));
