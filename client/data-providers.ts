import { parseCifar10 } from '../shared/data/cifar10.ts';
import { checkDataset, type DataProvider, type DataSpec, type Dataset } from '../shared/data/dataset.ts';
import { syntheticDataset } from '../shared/data/synthetic.ts';

export class SyntheticProvider implements DataProvider {
  readonly description: string;
  constructor(
    private readonly seed: number,
    private readonly count: number,
    private readonly classWeights?: number[],
  ) {
    this.description = `synthetic(seed=${seed}, n=${count}${classWeights ? ', label-skewed' : ''})`;
  }
  async load(): Promise<Dataset> {
    return syntheticDataset({ seed: this.seed, count: this.count, classWeights: this.classWeights });
  }
}

/** Fetches this client's CIFAR-10 shard (official binary record format) from the server. */
export class CifarShardProvider implements DataProvider {
  readonly description: string;
  constructor(
    private readonly url: string,
    private readonly count: number,
  ) {
    this.description = `cifar10-shard(${url}, n=${count})`;
  }
  async load(): Promise<Dataset> {
    const res = await fetch(this.url);
    if (!res.ok) throw new Error(`GET ${this.url} failed: ${res.status} ${res.statusText}`);
    const d = parseCifar10(new Uint8Array(await res.arrayBuffer()));
    if (d.n !== this.count) throw new Error(`shard has ${d.n} records, server announced ${this.count}`);
    return checkDataset(d);
  }
}

/** Turns the server's DataSpec into a provider; relative URLs resolve against the server's origin. */
export function providerFor(spec: DataSpec, serverUrl: string): DataProvider {
  switch (spec.kind) {
    case 'synthetic':
      return new SyntheticProvider(spec.seed, spec.count, spec.classWeights);
    case 'cifar10-shard':
      return new CifarShardProvider(new URL(spec.url, serverUrl).toString(), spec.count);
    case 'page':
      throw new Error("this server's task trains on the page's own data: pass join({ data })");
  }
}
