import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { checkModelFiles, MODEL_JSON, type LayersModelJson } from './model-files.ts';
import { writeFileAtomic } from './store.ts';

/**
 * `npm run export -- --server URL --out DIR`: the server's current global model as TensorFlow.js Layers
 * files (model.json + its weight files) in DIR; `--from DIR` copies a --save-model folder instead. The
 * manifest is checked against the weights' size before anything is written.
 */
export async function exportModel(
  src: { server: string } | { from: string },
  out: string,
  fetchFn: typeof fetch = fetch,
): Promise<{ round: number; bytes: number }> {
  const get = async (name: string): Promise<Uint8Array> => {
    if ('from' in src) return readFile(join(src.from, name));
    const url = new URL(`/api/model/${name}`, src.server);
    let res: Response;
    try {
      res = await fetchFn(url);
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code;
      throw new Error(`cannot reach ${url.origin} (${cause ?? (e as Error).message})`);
    }
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  };
  const jsonBytes = await get(MODEL_JSON);
  let json: LayersModelJson;
  try {
    json = JSON.parse(new TextDecoder().decode(jsonBytes)) as LayersModelJson;
  } catch {
    throw new Error(`${MODEL_JSON} is not JSON`);
  }
  const paths = json.weightsManifest?.flatMap((g) => g.paths) ?? [];
  if (paths.some((p) => typeof p !== 'string' || !/^[\w.-]+$/.test(p)))
    throw new Error('the manifest names a weights path outside the model folder');
  const parts = await Promise.all(paths.map(get));
  const bytes = parts.reduce((s, p) => s + p.length, 0);
  checkModelFiles(json, bytes);
  await mkdir(out, { recursive: true });
  for (let i = 0; i < paths.length; i++) await writeFileAtomic(join(out, paths[i]), parts[i]);
  await writeFileAtomic(join(out, MODEL_JSON), jsonBytes);
  return { round: json.userDefinedMetadata?.round ?? -1, bytes };
}

/** The command; resolves to the exit status, errors are one line on stderr. */
export async function main(
  argv: string[],
  log: (m: string) => void = console.log,
  fail: (m: string) => void = console.error,
  fetchFn: typeof fetch = fetch,
): Promise<number> {
  try {
    const { values: v } = parseArgs({
      args: argv,
      options: { server: { type: 'string' }, from: { type: 'string' }, out: { type: 'string' } },
    });
    if (!v.out || !v.server === !v.from)
      throw new Error('usage: npm run export -- (--server URL | --from DIR) --out DIR');
    const src = v.server ? { server: v.server } : { from: v.from! };
    const r = await exportModel(src, v.out, fetchFn);
    log(`wrote ${join(v.out, MODEL_JSON)} (round ${r.round}, ${r.bytes} bytes of weights)`);
    return 0;
  } catch (e) {
    fail(`export: ${(e as Error).message}`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href)
  process.exitCode = await main(process.argv.slice(2));
