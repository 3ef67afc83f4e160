import { verifyShare, SIGN_PUBLIC_BYTES, SIGNATURE_BYTES, type ShareKind } from './consistency.ts';
import { bytesEqual, commitSeed, KEY_BYTES, maskSeeds, publicKeyOf, publicKeysOf } from './keys.ts';
import { addMasks, type MaskTerm } from './prg.ts';
import { recoverSecret, type SignedShare } from './recover.ts';
import { prepareLagrange, reconstructChecked, SHARE_BYTES, type LagrangeCache } from './shamir.ts';
import type { Culprit } from './types.ts';

/**
 * Everything the last step of a round (R4 -> done) needs, and nothing else: the secrets to rebuild with
 * their revealed shares, what each is checked against, the public keys of the pairwise masks to strip,
 * and the masked sum. All of it is public to the server already (it is what the server received); it is
 * laid out in a few flat typed arrays so it can cross to a worker thread by transfer, not by copy.
 *
 * Secret i is client secretOf[i]'s b (self-mask seed, secretKind 0) or s (mask key of a dropped client,
 * secretKind 1); survivors' b come first, then the dropped clients' s, each ascending.
 */
export interface UnmaskJob {
  tag: string;
  t: number;
  secretOf: Int32Array;
  /** 0: b (checked against the seed commitment), 1: s (checked against the client's sPk). */
  secretKind: Uint8Array;
  /** 32 bytes per secret: its commitment (b) or public key sPk (s). */
  check: Uint8Array;
  /** SIGN_PUBLIC_BYTES per secret: the dealer's share-signing key gPk. */
  dealerKey: Uint8Array;
  /**
   * The shares revealed in R4 in the order they were taken (RevealLog): the worker groups them by secret
   * (packShares), so the turn that closes R4 hands over the session's buffers as they are.
   */
  revealHolder: Int32Array;
  revealOf: Int32Array;
  revealKind: Uint8Array;
  revealData: Uint8Array;
  /** For an s secret: its surviving neighbours pairStart[i] .. pairStart[i + 1] - 1 (none for a b secret). */
  pairStart: Int32Array;
  pairWith: Int32Array;
  /** KEY_BYTES per pair: the neighbour's sPk. */
  pairKey: Uint8Array;
  /** Holders already proved to have cheated: their shares are tried last. */
  named: Int32Array;
  /** The masked sum of the survivors' inputs; unmasked in place. */
  sum: Uint32Array;
}

/** The unmasked sum, or why there is none; either way the culprits the reconstruction proved. */
export type UnmaskResult =
  { ok: true; sum: Uint32Array; culprits: Culprit[] } | { ok: false; reason: string; culprits: Culprit[] };

/** One secret to rebuild, as the session knows it; its shares travel apart, in the job's reveal log. */
export interface UnmaskSecret {
  of: number;
  kind: ShareKind;
  check: Uint8Array;
  dealerKey: Uint8Array;
  /** For a dropped client's s: its neighbours in U3 and their sPk. */
  pairs?: readonly { with: number; sPk: Uint8Array }[];
}

/** Bytes per revealed share in a reveal log: its value, then its dealer's signature over it. */
export const REVEALED_BYTES = SHARE_BYTES + SIGNATURE_BYTES;

/**
 * Revealed shares in arrival order, not by secret: entry e is holder revealHolder[e]'s share of client
 * revealOf[e]'s secret of kind revealKind[e] (0 b, 1 s), its value then its signature at
 * e * REVEALED_BYTES in revealData.
 */
export type RevealLog = Pick<UnmaskJob, 'revealHolder' | 'revealOf' | 'revealKind' | 'revealData'>;

/** Secret i's shares are log entries entry[shareStart[i]] .. entry[shareStart[i + 1] - 1]. */
export interface PackedShares {
  shareStart: Int32Array;
  entry: Int32Array;
}

/**
 * The log's entries grouped by secret, each group in log order (a counting sort: two passes, no copy
 * of the shares). Entries of no secret of the job are left out.
 */
export function packShares(job: Pick<UnmaskJob, 'secretOf' | 'secretKind'> & RevealLog): PackedShares {
  const S = job.secretOf.length;
  let top = 0;
  for (const of of job.secretOf) top = Math.max(top, of);
  // slot[kind][of] = the secret's index + 1 (0: no such secret in the job).
  const slot = [new Int32Array(top + 1), new Int32Array(top + 1)];
  for (let i = 0; i < S; i++) slot[job.secretKind[i]][job.secretOf[i]] = i + 1;
  const E = job.revealOf.length;
  const secretOfEntry = new Int32Array(E);
  const shareStart = new Int32Array(S + 1);
  for (let e = 0; e < E; e++) {
    const of = job.revealOf[e];
    const k = job.revealKind[e];
    const i = of >= 1 && of <= top && k <= 1 ? slot[k][of] - 1 : -1;
    secretOfEntry[e] = i;
    if (i >= 0) shareStart[i + 1]++;
  }
  for (let i = 0; i < S; i++) shareStart[i + 1] += shareStart[i];
  const entry = new Int32Array(shareStart[S]);
  const next = shareStart.slice(0, S);
  for (let e = 0; e < E; e++) {
    const i = secretOfEntry[e];
    if (i >= 0) entry[next[i]++] = e;
  }
  return { shareStart, entry };
}

/** Packs the secrets (b ones first) and the reveal log into a job. */
export function packUnmaskJob(
  tag: string,
  t: number,
  secrets: readonly UnmaskSecret[],
  log: RevealLog,
  named: readonly number[],
  sum: Uint32Array,
): UnmaskJob {
  const S = secrets.length;
  const E = log.revealOf.length;
  if (
    log.revealHolder.length !== E ||
    log.revealKind.length !== E ||
    log.revealData.length !== E * REVEALED_BYTES
  )
    throw new RangeError(`the reveal log must hold ${E} entries of ${REVEALED_BYTES} bytes`);
  // The job crosses to another thread and packShares indexes by these: checked once here, O(E).
  for (let e = 0; e < E; e++)
    if (log.revealOf[e] < 1 || log.revealHolder[e] < 1 || log.revealKind[e] > 1)
      throw new RangeError(`reveal log entry ${e} names no client or kind`);
  let pairs = 0;
  for (const s of secrets) pairs += s.pairs?.length ?? 0;
  const job: UnmaskJob = {
    tag,
    t,
    secretOf: new Int32Array(S),
    secretKind: new Uint8Array(S),
    check: new Uint8Array(S * 32),
    dealerKey: new Uint8Array(S * SIGN_PUBLIC_BYTES),
    ...log,
    pairStart: new Int32Array(S + 1),
    pairWith: new Int32Array(pairs),
    pairKey: new Uint8Array(pairs * KEY_BYTES),
    named: Int32Array.from(named),
    sum,
  };
  let p = 0;
  secrets.forEach((s, i) => {
    if (s.check.length !== 32 || s.dealerKey.length !== SIGN_PUBLIC_BYTES)
      throw new RangeError(`secret of ${s.of}: check must be 32 bytes and dealerKey ${SIGN_PUBLIC_BYTES}`);
    job.secretOf[i] = s.of;
    job.secretKind[i] = s.kind === 'b' ? 0 : 1;
    job.check.set(s.check, i * 32);
    job.dealerKey.set(s.dealerKey, i * SIGN_PUBLIC_BYTES);
    job.pairStart[i] = p;
    for (const q of s.pairs ?? []) {
      job.pairWith[p] = q.with;
      job.pairKey.set(q.sPk, p * KEY_BYTES);
      p++;
    }
  });
  job.pairStart[S] = p;
  return job;
}

/** The buffers of a job, to hand to postMessage's transfer list (the job is unusable here afterwards). */
export function unmaskTransferList(job: UnmaskJob): ArrayBuffer[] {
  const all = [
    job.secretOf,
    job.secretKind,
    job.check,
    job.dealerKey,
    job.revealHolder,
    job.revealOf,
    job.revealKind,
    job.revealData,
    job.pairStart,
    job.pairWith,
    job.pairKey,
    job.named,
    job.sum,
  ].map((a) => a.buffer as ArrayBuffer);
  return [...new Set(all)];
}

class Abort extends Error {}

const keyOf = (b: Uint8Array): string => String.fromCharCode(...b);

/** X25519 agreements in flight at once while unmasking (WebCrypto jobs hold native memory until done). */
const AGREEMENTS_IN_FLIGHT = 512;
/** Dropouts whose pairwise seeds are agreed at once: about AGREEMENTS_IN_FLIGHT agreements at k ~ 40. */
const DROPOUTS_IN_FLIGHT = 12;

/** Strips mask terms from a sum in place: addMasks here, or the same split over threads (server). */
export type MaskStripper = (sum: Uint32Array, terms: readonly MaskTerm[]) => Promise<void>;

/** How runUnmask does its bulk work; the default is the isomorphic one (WebCrypto). */
export interface UnmaskOptions {
  strip?: MaskStripper;
}

/**
 * The unmasking itself (privacy.md C, R4 -> done), a pure function of the job: every secret is rebuilt
 * and checked (recover.ts names holders that altered a share and dealers that dealt inconsistent ones),
 * every pairwise seed derived, and only then are the masks stripped from the sum, so a failure leaves
 * nothing half-unmasked. Runs on the main thread (closeUnmask) or in a worker (server/unmask-worker.ts,
 * which passes a `strip` that splits the masks over threads).
 */
export async function runUnmask(
  job: UnmaskJob,
  { strip = addMasks }: UnmaskOptions = {},
): Promise<UnmaskResult> {
  const { tag, t } = job;
  const named = new Map<number, Set<Culprit['kind']>>();
  const preNamed = new Set(job.named);
  const name = (index: number, kind: Culprit['kind']): void => {
    let s = named.get(index);
    if (!s) named.set(index, (s = new Set()));
    s.add(kind);
  };
  const culprits = (): Culprit[] => {
    const out: Culprit[] = [];
    for (const index of [...named.keys()].sort((a, b) => a - b))
      for (const kind of named.get(index)!) out.push({ index, kind });
    return out;
  };
  // One weight cache, filled up front with one field inversion for all holder sets: secrets whose first
  // t holders coincide (the common case) share their Lagrange weights.
  const cache: LagrangeCache = new Map();
  const holderSets: number[][] = [];
  const { shareStart, entry } = packShares(job);
  for (let i = 0; i < job.secretOf.length; i++) {
    const from = shareStart[i];
    const to = shareStart[i + 1];
    if (to - from < t) continue;
    const xs = Array.from(entry.subarray(from, to), (e) => job.revealHolder[e]).sort(
      (a, b) => (preNamed.has(a) ? 1 : 0) - (preNamed.has(b) ? 1 : 0) || a - b,
    );
    holderSets.push(xs.slice(0, t));
  }
  prepareLagrange(cache, holderSets);
  const late = (x: number): number => (preNamed.has(x) || named.has(x) ? 1 : 0);
  const sharesOf = (i: number): SignedShare[] => {
    const shares: SignedShare[] = [];
    for (let j = shareStart[i]; j < shareStart[i + 1]; j++) {
      const at = entry[j] * REVEALED_BYTES;
      shares.push({
        x: job.revealHolder[entry[j]],
        y: job.revealData.subarray(at, at + SHARE_BYTES),
        sig: job.revealData.subarray(at + SHARE_BYTES, at + REVEALED_BYTES),
      });
    }
    return shares.sort((a, b) => late(a.x) - late(b.x) || a.x - b.x);
  };
  // The public keys of the mask keys the first t shares give, batched (WebCrypto X25519): the check of
  // an s secret below then costs a lookup in every honest round, an X25519 only on the slow path.
  const candidates: Uint8Array[] = [];
  for (let i = 0; i < job.secretOf.length; i++) {
    if (job.secretKind[i] !== 1) continue;
    const c = reconstructChecked(sharesOf(i), t, () => true, cache);
    if (c) candidates.push(c);
  }
  const publicKeys = new Map<string, Uint8Array>();
  for (let from = 0; from < candidates.length; from += AGREEMENTS_IN_FLIGHT) {
    const batch = candidates.slice(from, from + AGREEMENTS_IN_FLIGHT);
    (await publicKeysOf(batch)).forEach((pk, i) => publicKeys.set(keyOf(batch[i]), pk));
  }
  const publicKey = (sk: Uint8Array): Uint8Array => publicKeys.get(keyOf(sk)) ?? publicKeyOf(sk);
  const terms: MaskTerm[] = [];
  /** Dropped clients' rebuilt mask keys, with their secret's index in the job (for its pairs). */
  const dropped: { of: number; secret: Uint8Array; i: number }[] = [];
  try {
    for (let i = 0; i < job.secretOf.length; i++) {
      const of = job.secretOf[i];
      const kind: ShareKind = job.secretKind[i] === 0 ? 'b' : 's';
      const check = job.check.subarray(i * 32, (i + 1) * 32);
      const gPk = job.dealerKey.subarray(i * SIGN_PUBLIC_BYTES, (i + 1) * SIGN_PUBLIC_BYTES);
      const shares = sharesOf(i);
      const [what, against, verify] =
        kind === 'b'
          ? [
              `self-mask seed of client ${of}`,
              'commitment',
              (seed: Uint8Array): boolean => bytesEqual(commitSeed(seed, tag, of), check),
            ]
          : [
              `mask key of dropped client ${of}`,
              'public key',
              (sk: Uint8Array): boolean => bytesEqual(publicKey(sk), check),
            ];
      if (shares.length < t) throw new Abort(`${what}: ${shares.length} shares, threshold ${t}`);
      const r = recoverSecret(
        shares,
        t,
        verify,
        (s) => verifyShare(gPk, tag, kind, of, s.x, s.y, s.sig),
        cache,
      );
      for (const x of r.altered) name(x, 'altered_share');
      if (r.dealerAtFault) name(of, 'inconsistent_dealer');
      if (!r.secret) {
        const why = r.dealerAtFault
          ? `the ${r.signed} shares client ${of} signed do not rebuild it (inconsistent dealer)`
          : `only ${r.signed} of ${shares.length} shares carry client ${of}'s signature (threshold ${t})`;
        throw new Abort(`${what} does not match its ${against} from the first ${t} shares, and ${why}`);
      }
      if (kind === 'b') {
        terms.push({ seed: r.secret, domain: 'self', sign: -1 });
        continue;
      }
      dropped.push({ of, secret: r.secret, i });
    }
  } catch (e) {
    if (e instanceof Abort) return { ok: false, reason: e.message, culprits: culprits() };
    throw e;
  }
  // Every dropout's pairwise seeds, DROPOUTS_IN_FLIGHT dropouts' agreements at a time (all at once,
  // thousands of dropouts put ~40k WebCrypto jobs and their keys in memory together). Keys were checked at R0.
  const seeds: Uint8Array[][] = [];
  for (let from = 0; from < dropped.length; from += DROPOUTS_IN_FLIGHT) {
    const batch = dropped.slice(from, from + DROPOUTS_IN_FLIGHT).map(({ of, secret, i }) => {
      const peers = [];
      for (let p = job.pairStart[i]; p < job.pairStart[i + 1]; p++)
        peers.push({ index: job.pairWith[p], sPk: job.pairKey.subarray(p * KEY_BYTES, (p + 1) * KEY_BYTES) });
      return maskSeeds(secret, peers, tag, of);
    });
    seeds.push(...(await Promise.all(batch)));
  }
  dropped.forEach(({ of, i }, d) =>
    seeds[d].forEach((seed, p) => {
      // v added +PRG(s_vd) if v > d, else -PRG(s_vd): undo exactly that.
      const v = job.pairWith[job.pairStart[i] + p];
      terms.push({ seed, domain: 'pair', sign: v > of ? -1 : 1 });
    }),
  );
  const sum = job.sum;
  await strip(sum, terms);
  return { ok: true, sum, culprits: culprits() };
}
