import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildModel } from '../shared/model/build.ts';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { getFlatWeights, setFlatWeights } from '../shared/model/weights.ts';
import { createApp } from './app.ts';
import { DEFAULTS, serverTask } from './config.ts';
import { Coordinator } from './coordinator.ts';
import { syntheticSource } from './datasets.ts';
import { main as exportMain } from './export-model.ts';
import { createMetrics } from './metrics.ts';
import { EventEmitter } from 'node:events';
import {
  checkModelFiles,
  layersModelJson,
  saveModelEachRound,
  saveModelFiles,
  type LayersModelJson,
} from './model-files.ts';

const spec = MODELS.tiny;
const task = serverTask({ ...DEFAULTS, model: spec });
const ORIGIN = 'http://aegis.test';
let app: ReturnType<typeof createApp>;
let serverWeights: Float32Array;
/** tfjs' own HTTP loader, its requests answered by the app (no port). */
const viaApp = (url: RequestInfo | URL, init?: RequestInit): Promise<Response> =>
  Promise.resolve(app.request(String(url), init));

/** The server's model, rebuilt from the spec with the weights it holds: what a loaded model must equal. */
function reference(w: Float32Array): tf.LayersModel {
  const m = buildModel(spec, 99); // another seed: only the weights set here may count
  setFlatWeights(m, spec, w);
  return m;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
  const init = buildModel(spec, 7);
  serverWeights = await getFlatWeights(init);
  init.dispose();
  const data = syntheticSource(1, 8, 10);
  const coordinator = new Coordinator({
    config: { ...DEFAULTS, model: spec },
    metrics: createMetrics(),
    evaluate: async () => ({ accuracy: 0.1, loss: 2.3, ms: 1, examples: 10 }),
    evalBackend: 'cpu',
    initialWeights: serverWeights,
    dataFor: (i) => data.specFor(i),
  });
  await coordinator.init();
  app = createApp({ coordinator, metrics: createMetrics(), data, distDir: 'none', startedAt: Date.now() });
});

describe('/api/model/model.json', () => {
  it('tf.loadLayersModel loads the global model: same weights, same predictions', async () => {
    const m = await tf.loadLayersModel(`${ORIGIN}/api/model/model.json`, { fetchFunc: viaApp });
    expect(await getFlatWeights(m)).toEqual(serverWeights);
    const x = tf.randomUniform([3, 32, 32, 3], 0, 1, 'float32', 5);
    const ref = reference(serverWeights);
    const got = (m.predict(x) as tf.Tensor).arraySync() as number[][];
    expect(got).toEqual((ref.predict(x) as tf.Tensor).arraySync());
    expect(got[0].reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5); // softmax output
    x.dispose();
    m.dispose();
    ref.dispose();
  });

  it('types, caching and the round ETag (a matching If-None-Match is a 304)', async () => {
    const j = await app.request('/api/model/model.json');
    expect(j.headers.get('content-type')).toMatch(/^application\/json/);
    expect(j.headers.get('cache-control')).toBe('no-cache');
    expect(j.headers.get('access-control-allow-origin')).toBe('*');
    const etag = j.headers.get('etag')!;
    expect(etag).toBe(`"${task.hash.slice(0, 16)}-r0"`);
    const body = (await j.json()) as LayersModelJson;
    expect(body.weightsManifest[0].paths).toEqual(['weights.bin']);
    const w = await app.request('/api/model/weights.bin');
    expect(w.headers.get('content-type')).toBe('application/octet-stream');
    expect(w.headers.get('etag')).toBe(etag);
    const bytes = new Uint8Array(await w.arrayBuffer());
    expect(new Float32Array(bytes.buffer)).toEqual(serverWeights);
    checkModelFiles(body, bytes.length);
    const again = await app.request('/api/model/weights.bin', { headers: { 'If-None-Match': etag } });
    expect(again.status).toBe(304);
    expect((await again.arrayBuffer()).byteLength).toBe(0);
    const stale = await app.request('/api/model/model.json', {
      headers: { 'If-None-Match': `"${task.hash.slice(0, 16)}-r7"` },
    });
    expect(stale.status).toBe(200);
  });
});

/** A --save-model folder read back through plain tf.loadLayersModel, as a user of the files would. */
async function loadSavedFiles(dir: string): Promise<{ json: LayersModelJson; model: tf.LayersModel }> {
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as LayersModelJson;
  const bin = readFileSync(join(dir, 'weights.bin'));
  const model = await tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest[0].weights,
      weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
    }),
  );
  return { json, model };
}

describe('saved and exported model files', () => {
  it('--save-model files load back to the same model; no temporary file is left', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'saved-'));
    const w = serverWeights.map((v, i) => v + (i % 3) * 0.01);
    await saveModelFiles(dir, task, w, 4);
    expect(readdirSync(dir).sort()).toEqual(['model.json', 'weights.bin']);
    const { json, model: m } = await loadSavedFiles(dir);
    expect(json.userDefinedMetadata).toEqual({ task: task.task.name, hash: task.hash, round: 4 });
    expect(await getFlatWeights(m)).toEqual(w);
    m.dispose();
    await expect(saveModelFiles(dir, task, new Float32Array(3), 5)).rejects.toThrow(/needs/);
  });

  it.each(Object.keys(MODELS))(
    'preset %s: its saved files load with plain tf.loadLayersModel and predict as the server model does',
    async (name) => {
      // Stock layers only (no BatchNorm, no custom class): what --long's `medium` promises its users.
      const p = MODELS[name];
      const t = serverTask({ ...DEFAULTS, model: p });
      const built = buildModel(p, 5);
      const w = await getFlatWeights(built);
      const dir = mkdtempSync(join(tmpdir(), `saved-${name}-`));
      await saveModelFiles(dir, t, w, 1);
      const { model: m } = await loadSavedFiles(dir);
      const x = tf.randomUniform([2, 32, 32, 3], 0, 1, 'float32', 3);
      const [a, b] = [m.predict(x) as tf.Tensor, built.predict(x) as tf.Tensor];
      expect(Array.from(await a.data())).toEqual(Array.from(await b.data()));
      expect(m.countParams()).toBe(numParams(p));
      tf.dispose([x, a, b]);
      m.dispose();
      built.dispose();
    },
  );

  it('--save-model writes after each round end, in order; a failed write is logged and not thrown', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'each-'));
    const src = Object.assign(new EventEmitter(), {
      globalWeights: serverWeights,
      task,
      roundsCompleted: 0,
    });
    const logs: string[] = [];
    const settled = saveModelEachRound(src, dir, (m) => logs.push(m));
    for (const round of [1, 2]) {
      src.globalWeights = serverWeights.map((v) => v * round);
      src.roundsCompleted = round;
      src.emit('roundEnd', { round });
    }
    await settled();
    expect(logs).toEqual([1, 2].map((r) => `round ${r}: model saved to ${join(dir, 'model.json')}`));
    const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as LayersModelJson;
    expect(json.userDefinedMetadata.round).toBe(2);
    expect(new Float32Array(readFileSync(join(dir, 'weights.bin')).buffer.slice(0))).toEqual(
      serverWeights.map((v) => v * 2),
    );
    src.globalWeights = new Float32Array(1); // a write that fails
    src.emit('roundEnd', { round: 3 });
    await settled();
    expect(logs[2]).toMatch(/^--save-model .*needs/);
  });

  it('npm run export writes the server model, or copies a saved folder; bad input is one line', async () => {
    const out = mkdtempSync(join(tmpdir(), 'export-'));
    const lines: string[] = [];
    const rc = await exportMain(
      ['--server', ORIGIN, '--out', out],
      (m) => lines.push(m),
      (m) => lines.push(m),
      viaApp as typeof fetch,
    );
    expect(rc).toBe(0);
    expect(lines[0]).toContain(`round 0, ${numParams(spec) * 4} bytes`);
    expect(new Float32Array(readFileSync(join(out, 'weights.bin')).buffer.slice(0))).toEqual(serverWeights);
    expect(JSON.parse(readFileSync(join(out, 'model.json'), 'utf8'))).toEqual(layersModelJson(task, 0));

    const copy = mkdtempSync(join(tmpdir(), 'export-'));
    expect(
      await exportMain(
        ['--from', out, '--out', copy],
        () => {},
        () => {},
      ),
    ).toBe(0);
    expect(readFileSync(join(copy, 'weights.bin'))).toEqual(readFileSync(join(out, 'weights.bin')));

    const errs: string[] = [];
    const down = (() =>
      Promise.reject(
        Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } }),
      )) as unknown as typeof fetch;
    expect(
      await exportMain(
        ['--server', 'http://127.0.0.1:9', '--out', out],
        () => {},
        (m) => errs.push(m),
        down,
      ),
    ).toBe(1);
    expect(
      await exportMain(
        ['--out', out],
        () => {},
        (m) => errs.push(m),
      ),
    ).toBe(1);
    expect(errs).toEqual([
      'export: cannot reach http://127.0.0.1:9 (ECONNREFUSED)',
      'export: usage: npm run export -- (--server URL | --from DIR) --out DIR',
    ]);
  });
});
