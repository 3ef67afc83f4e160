import { addMasks, type MaskTerm } from '../shared/secagg/prg.ts';
import type { MaskStripper } from '../shared/secagg/unmask.ts';
import { JobThread } from './job-thread.ts';
import { nodeKeystream } from './node-keystream.ts';

/** One helper's share of the stripping: words from .. from + words.length - 1 of the sum. */
export interface MaskSlice {
  terms: readonly MaskTerm[];
  from: number;
  words: Uint32Array;
}

/** Below this many words a vector is masked on one thread: splitting would cost more than it saves. */
export const MIN_SPLIT_WORDS = 1 << 16;

/**
 * Strips mask terms from a sum over `threads` threads: the caller's and threads - 1 helpers, each taking
 * one word range (the PRG is AES-CTR, so any range of the stream starts at its own counter block). The
 * helpers are started on first use and kept for the next round. Seeds cross to the helpers in memory
 * of this process, which holds them anyway.
 */
export class MaskPool {
  private readonly helpers: JobThread<MaskSlice, Uint32Array>[];

  constructor(readonly threads: number) {
    if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`bad thread count ${threads}`);
    this.helpers = Array.from(
      { length: threads - 1 },
      (_, i) =>
        new JobThread<MaskSlice, Uint32Array>(
          new URL('./mask-worker.ts', import.meta.url),
          `aegis-mask-${i + 1}`,
          (s) => [s.words.buffer as ArrayBuffer],
        ),
    );
  }

  readonly strip: MaskStripper = async (sum, terms) => {
    if (!this.helpers.length || sum.length < MIN_SPLIT_WORDS) return addMasks(sum, terms, 0, nodeKeystream);
    const per = Math.ceil(sum.length / this.threads / 4) * 4; // whole AES blocks per range
    const ranges: { from: number; words: Uint32Array }[] = [];
    for (let from = 0; from < sum.length; from += per)
      ranges.push({ from, words: sum.slice(from, from + per) });
    // Each range is masked on a copy and the sum written only once every range succeeded, so a failure
    // (a helper that died, say) leaves the sum as it was.
    const done = await Promise.allSettled(
      ranges.map(async (r, i) =>
        i === 0
          ? (await addMasks(r.words, terms, 0, nodeKeystream), r.words)
          : this.helpers[i - 1].run({ terms, from: r.from, words: r.words }),
      ),
    );
    for (const d of done) if (d.status === 'rejected') throw d.reason;
    done.forEach((d, i) => sum.set((d as PromiseFulfilledResult<Uint32Array>).value, ranges[i].from));
  };

  /** Starts every helper and loads its code (an empty slice each). */
  async warm(): Promise<void> {
    await Promise.all(this.helpers.map((h) => h.run({ terms: [], from: 0, words: new Uint32Array(0) })));
  }

  /** How many helper threads were started (tests check that the work was split). */
  get helpersStarted(): number {
    return this.helpers.filter((h) => h.started).length;
  }

  async close(): Promise<void> {
    await Promise.all(this.helpers.map((h) => h.close()));
  }
}
