import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { encodeCifar10 } from '../shared/data/cifar10.ts';
import { syntheticDataset } from '../shared/data/synthetic.ts';
import { CifarShardProvider, providerFor } from './data-providers.ts';

async function serve(body: Uint8Array | null): Promise<{ url: string; close: () => void }> {
  const s = createServer((_, res) => {
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.from(body));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, close: () => s.close() };
}

describe('data providers', () => {
  it('synthetic spec -> the same examples the generator makes', async () => {
    const p = providerFor({ kind: 'synthetic', seed: 4, count: 6 }, 'http://x');
    expect(p.description).toBe('synthetic(seed=4, n=6)');
    expect(await p.load()).toEqual(syntheticDataset({ seed: 4, count: 6 }));
  });

  it('CIFAR-10 shard is fetched over HTTP and parsed from the official record format', async () => {
    const d = syntheticDataset({ seed: 8, count: 5 });
    const srv = await serve(encodeCifar10(d));
    try {
      const p = providerFor({ kind: 'cifar10-shard', url: '/api/data/shard/3', count: 5 }, srv.url);
      expect(p.description).toContain(`${srv.url}/api/data/shard/3`);
      const got = await p.load();
      expect(got.y).toEqual(d.y);
      expect(got.x).toEqual(d.x);
      await expect(new CifarShardProvider(`${srv.url}/x`, 6).load()).rejects.toThrow(
        /shard has 5 records, server announced 6/,
      );
    } finally {
      srv.close();
    }
  });

  it('reports HTTP failures', async () => {
    const srv = await serve(null);
    try {
      await expect(new CifarShardProvider(`${srv.url}/missing`, 1).load()).rejects.toThrow(/404/);
    } finally {
      srv.close();
    }
  });
});
