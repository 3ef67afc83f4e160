import { describe, expect, it } from 'vitest';
import { addMasks, CHUNK_BYTES, type MaskTerm } from '../shared/secagg/prg.ts';
import { nodeKeystream } from './node-keystream.ts';

const terms: MaskTerm[] = [0, 1, 2].map((k) => ({
  seed: Uint8Array.from({ length: 32 }, (_, i) => (i * 5 + k) & 0xff),
  domain: k ? 'pair' : 'self',
  sign: k === 2 ? -1 : 1,
}));

describe('nodeKeystream (the mask PRG through node:crypto)', () => {
  it('gives the words WebCrypto gives, across chunks and from an offset', async () => {
    const n = (CHUNK_BYTES / 4) * 2 + 3;
    for (const from of [0, 4 * 1000, (CHUNK_BYTES / 4) * 3]) {
      const web = new Uint32Array(n).fill(7);
      const node = new Uint32Array(n).fill(7);
      await addMasks(web, terms, from);
      await addMasks(node, terms, from, nodeKeystream);
      expect(Buffer.from(node.buffer).equals(Buffer.from(web.buffer))).toBe(true);
    }
  });

  it('refuses more than one chunk at once', () => {
    expect(() => nodeKeystream(new Uint8Array(32))(0, CHUNK_BYTES + 16)).toThrow(/at most/);
  });
});
