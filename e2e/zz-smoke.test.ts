import { it, expect } from 'vitest';
import { MODELS, numParams } from '../shared/model/spec.ts';
import { startCluster } from '../e2e/cluster-lib.ts';
import { ScriptedClient } from '../e2e/scripted-client.ts';
import { cohortOf, TINY_SERVER, waitFor } from '../e2e/server-process.ts';
const P = numParams(MODELS.tiny);
it('smoke', { timeout: 120_000 }, async () => {
  const c = await startCluster({ gateways: 2, flags: { ...TINY_SERVER, ...cohortOf(4), 'min-updates': 2, rounds: 2, 'round-pause-ms': 200, 'max-examples-per-client': 16 } });
  try {
    const cs = [0, 1, 2, 3].map((i) => new ScriptedClient(c.gateways[i % 2].url, `c${i}`, new Float32Array(P).fill(0.001 * (i + 1)), 8));
    const s = await waitFor(async () => { const s = await (await fetch(c.coordinators[0].url + '/api/status')).json(); return s.history.length >= 2 ? s : null; }, 60_000, 'rounds', 300);
    console.log(JSON.stringify(s.history.map((h: any) => [h.round, h.clients, h.examples])));
    cs.forEach((x) => x.close());
  } catch (e) { console.log(c.output()); throw e; } finally { await c.stop(); }
});
