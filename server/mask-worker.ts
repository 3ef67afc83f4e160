import { addMasks } from '../shared/secagg/prg.ts';
import { serveJobs } from './job-thread.ts';
import { nodeKeystream } from './node-keystream.ts';
import type { MaskSlice } from './mask-pool.ts';

/** Worker-thread entry (mask-pool.ts): masks one word range of a sum and sends it back, transferred. */
serveJobs(
  async ({ terms, from, words }: MaskSlice) => {
    await addMasks(words, terms, from, nodeKeystream);
    return words;
  },
  (words) => [words.buffer as ArrayBuffer],
);
