import { bytes, bytesView, index, list, record } from './check.ts';
import { ProtocolError } from '../base/errors.ts';
import { bytesToHex } from '@noble/hashes/utils.js';
import {
  checkKeyAuth,
  checkSigningKey,
  countSurvivorSignatures,
  SIGN_PUBLIC_BYTES,
  SIGNATURE_BYTES,
  type KeyAuth,
  type ShareKind,
} from './consistency.ts';
import { SecAggAbort } from './errors.ts';
import { bytesEqual, checkPublicKey, KEY_BYTES } from './keys.ts';
import { WordSum } from './words.ts';
import { isFieldElementAt, SHARE_BYTES } from './shamir.ts';
import { packReveal, REVEAL_RECORD } from './wire.ts';
import {
  CULPRIT_KINDS,
  type AdvertiseKeys,
  type Culprit,
  type CulpritKind,
  type Inbox,
  type PeerKeys,
  type Reveal,
  type Roster,
  type SecAggPhase,
  type SurvivorSet,
  type UnmaskRequest,
} from './types.ts';
import {
  packUnmaskJob,
  runUnmask,
  REVEALED_BYTES,
  type RevealLog,
  type UnmaskJob,
  type UnmaskResult,
  type UnmaskSecret,
} from './unmask.ts';

export interface ServerSessionConfig {
  tag: string;
  /** Clients are 1..n. */
  n: number;
  /**
   * neighbours[i - 1] = the neighbour indices of client i: a simple undirected graph (symmetric, each
   * in 1..n, no client its own neighbour, none listed twice; checkGraph). Ignored with `cohort`, whose
   * graph is laid when R0 closes (pass []).
   */
  neighbours: number[][];
  /**
   * Over-selection: at most `size` of the n invited clients take part, the first `size` to advertise
   * valid keys. R0 waits for no one once they have; later keys are refused (not_selected), and every
   * invitee without keys in is `released` when R0 closes. The graph is laid over the advertisers then:
   * graph(m) gives neighbour lists over positions 0..m-1 (the m advertisers in ascending index order).
   * Absent: all n take part over `neighbours`.
   */
  cohort?: { size: number; graph: (m: number) => number[][] } | null;
  t: number;
  vectorLength: number;
  /** Fewest inputs for which a sum is released (the DP n_min). */
  minSurvivors: number;
  /**
   * Authenticated keys and the consistency round (R3): every client's keys must carry an identity the
   * site attested under sitePublicKey; R2 closes into R3 (closeMaskedToConsistency). Absent: no R3.
   */
  consistency?: { sitePublicKey: Uint8Array } | null;
}

const MAX_BOX_BYTES = 256;

/**
 * A sender's boxes, in one buffer: the box for to[i] (ascending) is data[start[i] .. start[i + 1]). Kept
 * compact because cohorts run to thousands with k ~ 40 boxes each: a buffer per box cost ~300 bytes of
 * bookkeeping per box, 120 MB at 10 000 clients.
 */
interface Boxes {
  to: Int32Array;
  start: Int32Array;
  data: Uint8Array;
}

/** A reveal log with room for `n` shares. (One object per share had cost ~230 MB at 10 000 clients.) */
const emptyLog = (n: number): RevealLog => ({
  revealHolder: new Int32Array(n),
  revealOf: new Int32Array(n),
  revealKind: new Uint8Array(n),
  revealData: new Uint8Array(n * REVEALED_BYTES),
});

/**
 * The neighbour lists of clients 1..n are a simple undirected graph: every entry a client 1..n other
 * than its own, none twice, u in v's list exactly when v is in u's. Checked on sorted copies walked in
 * step (for u ascending, each list meets its entries in order), not by a set lookup per entry: that
 * cost ~100 ms of the round's start at 10 000 clients. Returns the sorted lists.
 */
export function checkGraph(lists: readonly (readonly number[])[]): Int32Array[] {
  const n = lists.length;
  const sorted = lists.map((l, i) => {
    for (const v of l)
      if (!Number.isInteger(v) || v < 1 || v > n || v === i + 1)
        throw new RangeError(`client ${i + 1} has neighbour ${v}: not another client in 1..${n}`);
    return Int32Array.from(l).sort();
  });
  const next = new Int32Array(n);
  for (let u = 1; u <= n; u++) {
    const l = sorted[u - 1];
    for (let j = 0; j < l.length; j++) {
      const v = l[j];
      if (j > 0 && l[j - 1] === v) throw new RangeError(`client ${u} lists neighbour ${v} twice`);
      if (sorted[v - 1][next[v - 1]++] !== u)
        throw new RangeError(`neighbour graph is not symmetric at ${u}-${v}`);
    }
  }
  for (let v = 1; v <= n; v++)
    if (next[v - 1] !== sorted[v - 1].length)
      throw new RangeError(`neighbour graph is not symmetric at ${v}: a neighbour does not list it`);
  return sorted;
}

/** Index of v in a sorted Int32Array, or -1. */
function find(sorted: Int32Array, v: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < v) lo = mid + 1;
    else if (sorted[mid] > v) hi = mid - 1;
    else return mid;
  }
  return -1;
}

/**
 * The server's side of one round (privacy.md C), as a pure state machine. It relays keys and boxes it
 * cannot open, sums masked vectors as they arrive (no per-client copies), and at the end reconstructs
 * exactly the secrets needed to strip the masks from the SUM: b_u of survivors, s_d of dropouts.
 * Each receive* throws ProtocolError for a bad message (the round goes on); each close* moves to the next
 * phase with whoever answered, or throws SecAggAbort when too few remain (no partial result).
 * Wrong revealed shares are set aside where the others allow, and whoever is provably at fault is named
 * in `culprits`: every share is signed by its dealer, so a holder that altered one and a dealer that
 * dealt inconsistent ones can be told apart (recover.ts); an honest client is never named.
 */
export class SecAggServerSession {
  phase: SecAggPhase = 'keys';
  failure: string | null = null;
  private readonly keys = new Map<number, AdvertiseKeys>();
  /** from -> its boxes; kept while R2 is open (inboxes are cut from them as they are sent), then let go. */
  private readonly boxes = new Map<number, Boxes>();
  private readonly commits = new Map<number, Uint8Array>();
  private readonly masked = new Set<number>();
  private readonly sum: WordSum;
  private u1: number[] = [];
  private u2: number[] = [];
  /** The same sets for O(1) membership checks on every message (cohorts run to thousands). */
  private inU1 = new Set<number>();
  private inU2 = new Set<number>();
  private u3: number[] = [];
  private inU3 = new Set<number>();
  /** R3: identity key (hex) -> the index that advertised it (one identity, one seat). */
  private readonly idOwner = new Map<string, number>();
  /** R3: each signer's signature over U3. */
  private readonly signatures = new Map<number, Uint8Array>();
  private requests = new Map<number, UnmaskRequest>();
  /** Holders whose reveal was taken. */
  private readonly revealed = new Set<number>();
  /**
   * Every taken share with its dealer's signature (checked only when a secret needs it), in arrival
   * order, in buffers sized when the requests go out: each holder's entries are its request's at most.
   * The unmasking sorts them by secret; this thread only appends.
   */
  private log: RevealLog = emptyLog(0);
  /** receiveRevealWire's scratch marks, one per client (made at the first reveal). */
  private marks: Uint8Array | null = null;
  private logLength = 0;
  /** Each client's neighbours, ascending (checkGraph's copies). */
  private nb: Int32Array[];
  /** Over-selection: invitees without keys in when R0 closed (see ServerSessionConfig.cohort). */
  private releasedSet = new Set<number>();
  /** Clients dropped from this attempt for a bad key (R0) or a malformed share (R4): not waited for. */
  private readonly excluded = new Set<number>();
  /** index -> why it is named. */
  private readonly named = new Map<number, Set<CulpritKind>>();
  /** R4 closed: the shares went to the unmasking (prepareUnmask); later reveals are refused. */
  private sealed = false;
  /**
   * Who the current phase still waits for, kept as messages arrive: the round asks after every message
   * whether the phase can close, and rebuilding the list each time was O(n) per message, O(n^2) per phase
   * (a 15 s stall at 10 000 clients). Filled when a phase opens, in ascending order; emptied when it closes.
   */
  private waiting = new Set<number>();

  constructor(readonly cfg: ServerSessionConfig) {
    const cohort = cfg.cohort;
    if (cohort) {
      if (!(Number.isInteger(cohort.size) && cohort.size >= 1 && cohort.size <= cfg.n))
        throw new RangeError(`cohort size must be an integer in 1..${cfg.n}, got ${cohort.size}`);
      this.nb = Array.from({ length: cfg.n }, () => new Int32Array(0));
    } else {
      if (cfg.neighbours.length !== cfg.n) throw new RangeError('need one neighbour list per client');
      this.nb = checkGraph(cfg.neighbours);
    }
    this.sum = new WordSum(cfg.vectorLength);
    for (let u = 1; u <= cfg.n; u++) this.waiting.add(u);
  }

  /** Over-selection: the invitees released when R0 closed (no keys in by then), ascending; [] otherwise. */
  get released(): number[] {
    return [...this.releasedSet].sort((a, b) => a - b);
  }

  /** Over-selection: the cohort is full (R0 waits for no one more). */
  private get cohortFull(): boolean {
    return !!this.cfg.cohort && this.keys.size >= this.cfg.cohort.size;
  }

  /** Who the current phase still waits for, ascending (O(n): for a phase's start and for status). */
  waitingFor(): number[] {
    return [...this.waiting];
  }

  /** How many the current phase still waits for (O(1)). */
  get waitingCount(): number {
    return this.waiting.size;
  }

  /** Whether the current phase still waits for client u (O(1)). */
  isWaitingFor(u: number): boolean {
    return this.waiting.has(u);
  }

  /** A phase opens: it waits for `members` (ascending) but those already out of the attempt. */
  private waitFor(members: Iterable<number>): void {
    this.waiting = new Set();
    for (const u of members) if (!this.excluded.has(u)) this.waiting.add(u);
  }

  get survivors(): readonly number[] {
    return this.u3;
  }

  /**
   * Clients proven to have cheated (kept when the round aborts), ascending: a holder that revealed a share
   * that is not a field element or lacks its dealer's valid signature, and a dealer whose signed shares
   * are inconsistent. Signatures are checked only for a secret that does not rebuild from its first t
   * shares, so a bad share that was not needed goes unnoticed (and did no harm).
   */
  get culprits(): number[] {
    return [...this.named.keys()].sort((a, b) => a - b);
  }

  /** Each culprit with the kind of evidence against it (a closed set, fit for metric labels). */
  get culpritEvidence(): Culprit[] {
    const out: Culprit[] = [];
    for (const index of this.culprits)
      for (const kind of CULPRIT_KINDS) if (this.named.get(index)!.has(kind)) out.push({ index, kind });
    return out;
  }

  private name(index: number, kind: CulpritKind): void {
    let s = this.named.get(index);
    if (!s) this.named.set(index, (s = new Set()));
    s.add(kind);
  }

  private expect(phase: SecAggPhase, what: string): void {
    if (this.phase !== phase)
      throw new ProtocolError(
        this.phase === 'done' || this.phase === 'failed' ? 'late' : 'wrong_phase',
        `${what} is not accepted in phase ${this.phase}`,
      );
  }

  private abort(why: string): never {
    this.phase = 'failed';
    this.boxes.clear();
    this.waiting.clear();
    this.failure = why;
    throw new SecAggAbort(why);
  }

  /** Drops, until stable, members with fewer than t neighbours in the set (their secrets could not be rebuilt). */
  private prune(set: number[]): number[] {
    const live = new Set(set);
    for (let changed = true; changed;) {
      changed = false;
      for (const u of live) {
        let c = 0;
        for (const v of this.nb[u - 1]) if (live.has(v)) c++;
        if (c < this.cfg.t) {
          live.delete(u);
          changed = true;
        }
      }
    }
    return [...live].sort((a, b) => a - b);
  }

  receiveKeys(from: number, raw: unknown): void {
    if (this.releasedSet.has(from))
      throw new ProtocolError('not_selected', `client ${from} was released: the cohort was fixed without it`);
    this.expect('keys', 'keys');
    if (this.keys.has(from)) throw new ProtocolError('duplicate', `client ${from} already advertised keys`);
    if (this.cohortFull)
      throw new ProtocolError('not_selected', `the cohort of ${this.cfg.cohort!.size} is full`);
    if (this.excluded.has(from))
      throw new ProtocolError('duplicate', `client ${from} was dropped from this attempt for a bad key`);
    const r = record(raw, 'keys');
    const cPk = bytes(r.cPk, 'cPk', KEY_BYTES);
    const sPk = bytes(r.sPk, 'sPk', KEY_BYTES);
    const gPk = bytes(r.gPk, 'gPk', SIGN_PUBLIC_BYTES);
    // A small-order key would make every neighbour's key agreement fail, and no share signed under an
    // unusable gPk would verify: refuse it before rosters go out (clients refuse such a roster).
    const problem = checkPublicKey(cPk) ?? checkPublicKey(sPk) ?? checkSigningKey(gPk);
    if (problem) {
      this.exclude(from);
      throw new ProtocolError('bad_key', `public key refused: ${problem}`);
    }
    if (bytesEqual(cPk, sPk)) throw new ProtocolError('bad_key', 'cPk and sPk must differ');
    const site = this.cfg.consistency?.sitePublicKey;
    if (!site) return this.keysIn(from, { cPk, sPk, gPk });
    // R3: keys the site does not vouch for would make every honest neighbour refuse its roster; refused here.
    let auth: KeyAuth;
    try {
      if (r.auth === undefined) throw new ProtocolError('unattested', 'keys carry no attestation');
      const a = record(r.auth, 'auth');
      auth = {
        idPk: bytes(a.idPk, 'idPk', SIGN_PUBLIC_BYTES),
        attestation: bytes(a.attestation, 'attestation', SIGNATURE_BYTES),
        keysSig: bytes(a.keysSig, 'keysSig', SIGNATURE_BYTES),
      };
      const why = checkKeyAuth(site, this.cfg.tag, from, { cPk, sPk, gPk }, auth);
      if (why) throw new ProtocolError('unattested', `keys are not vouched for (${why})`);
      const owner = this.idOwner.get(bytesToHex(auth.idPk));
      if (owner !== undefined)
        throw new ProtocolError('unattested', `identity already advertised by client ${owner}`);
    } catch (e) {
      this.exclude(from);
      throw e;
    }
    this.idOwner.set(bytesToHex(auth.idPk), from);
    this.keysIn(from, { cPk, sPk, gPk, auth });
  }

  private keysIn(from: number, keys: AdvertiseKeys): void {
    this.keys.set(from, keys);
    this.waiting.delete(from);
    if (this.cohortFull) this.waiting.clear(); // over-selection: R0 waits for no one more
  }

  /** Drops a client from this attempt (a bad key, signature or share): the phase no longer waits for it. */
  private exclude(from: number): void {
    this.excluded.add(from);
    this.waiting.delete(from);
  }

  /** R0 -> R1: a roster for each client in U1 (all built now; closeKeysLazily builds each when asked). */
  closeKeys(): Map<number, Roster> {
    const lazy = this.closeKeysLazily();
    return new Map(lazy.recipients.map((u) => [u, lazy.roster(u)]));
  }

  /**
   * R0 -> R1: decides U1 and says who gets a roster; each is built when asked (as its sliced send goes
   * out, and again for a re-send), from keys that no longer change. Building all 10 000 in the turn that
   * closed R0 held the event loop ~0.6 s (~420 000 peer entries). A roster is asked for only while R1 is
   * open, and only for a client in U1.
   */
  closeKeysLazily(): { recipients: readonly number[]; roster: (u: number) => Roster } {
    this.expect('keys', 'closeKeys');
    if (this.cfg.cohort) this.fixCohort();
    this.u1 = this.prune([...this.keys.keys()]);
    if (this.u1.length < this.cfg.minSurvivors)
      this.abort(`only ${this.u1.length} clients advertised keys (need ${this.cfg.minSurvivors})`);
    this.phase = 'shares';
    this.waitFor(this.u1);
    const inU1 = (this.inU1 = new Set(this.u1));
    const roster = (u: number): Roster => {
      if (this.phase !== 'shares')
        throw new Error(`rosters are sent only while R1 is open (phase ${this.phase})`);
      if (!inU1.has(u)) throw new Error(`client ${u} is not in U1: it has no roster`);
      const peers: PeerKeys[] = [];
      for (const v of this.nb[u - 1]) if (inU1.has(v)) peers.push({ index: v, ...this.keys.get(v)! });
      return { peers };
    };
    return { recipients: this.u1, roster };
  }

  /** Over-selection at R0's close: the graph over the advertisers; every other invitee without keys is released. */
  private fixCohort(): void {
    const members = [...this.keys.keys()].sort((a, b) => a - b);
    const lists = this.cfg.cohort!.graph(members.length);
    if (lists.length !== members.length) throw new RangeError('need one neighbour list per cohort member');
    const byIndex: number[][] = Array.from({ length: this.cfg.n }, () => []);
    lists.forEach((l, pos) => {
      for (const p of l) {
        const v = members[p];
        if (v === undefined || p === pos) throw new RangeError(`bad neighbour position ${p}`);
        byIndex[members[pos] - 1].push(v);
      }
    });
    this.nb = checkGraph(byIndex);
    for (let u = 1; u <= this.cfg.n; u++)
      if (!this.keys.has(u) && !this.excluded.has(u)) this.releasedSet.add(u);
  }

  receiveShares(from: number, raw: unknown): void {
    this.expect('shares', 'shares');
    if (!this.inU1.has(from))
      throw new ProtocolError('not_selected', `client ${from} is not in this round's key roster`);
    if (this.boxes.has(from)) throw new ProtocolError('duplicate', `client ${from} already sent shares`);
    const r = record(raw, 'shares');
    const commit = bytes(r.commit, 'commit', 32);
    const expected = new Set([...this.nb[from - 1]].filter((v) => this.inU1.has(v)));
    const entries = list(r.shares, 'shares', this.cfg.n);
    const byTo = new Map<number, Uint8Array>();
    let size = 0;
    for (const e of entries) {
      const er = record(e, 'share');
      const to = index(er.to, 'share.to', this.cfg.n);
      if (!expected.has(to))
        throw new ProtocolError(
          'not_neighbour',
          `share addressed to ${to}, which is not a neighbour of ${from} in U1`,
        );
      if (byTo.has(to)) throw new ProtocolError('duplicate', `two shares addressed to ${to}`);
      const ct = bytesView(er.ct, 'share.ct', undefined, MAX_BOX_BYTES);
      byTo.set(to, ct);
      size += ct.length;
    }
    if (byTo.size !== expected.size)
      throw new ProtocolError(
        'malformed',
        `expected shares for ${expected.size} neighbours, got ${byTo.size}`,
      );
    // One copy of all the boxes (the transport may reuse its buffers), in ascending order of recipient.
    const to = Int32Array.from(byTo.keys()).sort();
    const start = new Int32Array(to.length + 1);
    const data = new Uint8Array(size);
    to.forEach((v, i) => {
      const ct = byTo.get(v)!;
      data.set(ct, start[i]);
      start[i + 1] = start[i] + ct.length;
    });
    this.boxes.set(from, { to, start, data });
    this.commits.set(from, commit);
    this.waiting.delete(from);
  }

  /** R1 -> R2: each client in U2 gets the boxes addressed to it by its neighbours in U2 (all built here). */
  closeShares(): Map<number, Inbox> {
    const r = this.closeSharesLazily();
    return new Map(r.recipients.map((u) => [u, r.inbox(u)]));
  }

  /**
   * R1 -> R2 without building the inboxes: who gets one, and each one cut from the boxes when asked, while
   * R2 is open. Building all of them at the close (~k views per client) held a server's event loop ~0.5 s
   * at 10 000 clients; a sliced sender asks for each as it sends it, and again for a re-send.
   */
  closeSharesLazily(): { recipients: readonly number[]; inbox(u: number): Inbox } {
    this.expect('shares', 'closeShares');
    this.u2 = this.prune(this.u1.filter((u) => this.boxes.has(u)));
    if (this.u2.length < this.cfg.minSurvivors)
      this.abort(`only ${this.u2.length} clients shared keys (need ${this.cfg.minSurvivors})`);
    this.phase = 'masked';
    this.waitFor(this.u2);
    const inU2 = (this.inU2 = new Set(this.u2));
    // Boxes from senders outside U2 (pruned) are never relayed.
    for (const from of [...this.boxes.keys()]) if (!inU2.has(from)) this.boxes.delete(from);
    const boxFor = (from: number, to: number): Uint8Array => {
      const b = this.boxes.get(from)!;
      const i = find(b.to, to);
      // receiveShares took a box for every neighbour in U1; a gap would be a bug here, never an empty box.
      if (i < 0) throw new Error(`no box from ${from} to ${to}`);
      return b.data.subarray(b.start[i], b.start[i + 1]);
    };
    const inbox = (u: number): Inbox => {
      if (this.phase !== 'masked')
        throw new Error(`inboxes are relayed only while R2 is open (phase ${this.phase})`);
      if (!inU2.has(u)) throw new Error(`client ${u} is not in U2: it has no inbox`);
      const shares = [...this.nb[u - 1]]
        .filter((v) => inU2.has(v))
        .map((v) => ({ from: v, ct: boxFor(v, u) }));
      return { shares };
    };
    return { recipients: this.u2, inbox };
  }

  /** R2: adds y_u to the running sum. The vector must already be vectorLength words. */
  receiveMasked(from: number, y: Uint32Array): void {
    this.receiveMaskedSum([from], y);
  }

  /**
   * R2, checked only: throws what receiveMasked would for `from`'s input, and counts nothing. A gateway's
   * claim is checked here before its vector joins the gateway's partial sum.
   */
  checkMasked(from: number): void {
    this.expect('masked', 'masked input');
    if (!this.inU2.has(from))
      throw new ProtocolError(
        'not_selected',
        `client ${from} is not in U2 (did not share keys, or was pruned)`,
      );
    if (this.masked.has(from))
      throw new ProtocolError('duplicate', `client ${from} already sent its masked input`);
  }

  /**
   * R2: adds the sum of several members' y_u at once (a gateway sums its own clients' masked inputs; the
   * sum mod 2^32 is associative, so the total is the same). All are checked before any is counted.
   */
  receiveMaskedSum(from: readonly number[], ySum: Uint32Array): void {
    if (from.length === 0) throw new ProtocolError('malformed', 'a masked sum must name its members');
    const seen = new Set<number>();
    for (const u of from) {
      this.checkMasked(u);
      if (seen.has(u)) throw new ProtocolError('duplicate', `client ${u} is named twice in one masked sum`);
      seen.add(u);
    }
    if (ySum.length !== this.cfg.vectorLength)
      throw new ProtocolError(
        'wrong_length',
        `masked input has ${ySum.length} values, expected ${this.cfg.vectorLength}`,
      );
    this.sum.add(ySum);
    for (const u of from) {
      this.masked.add(u);
      this.waiting.delete(u);
    }
  }

  /** R2: U3 = who sent a masked input; aborts when too few did, or a needed secret has too few live holders. */
  private decideU3(): void {
    this.boxes.clear(); // R2 closed: no inbox is cut any more (packInbox copied those sent)
    this.u3 = this.u2.filter((u) => this.masked.has(u));
    if (this.u3.length < this.cfg.minSurvivors)
      this.abort(`only ${this.u3.length} masked inputs arrived (need ${this.cfg.minSurvivors})`);
    const inU3 = (this.inU3 = new Set(this.u3));
    const dropped = this.u2.filter((u) => !inU3.has(u));
    // Counted in place, not by filtering a copy per client: this runs for the whole cohort in one turn.
    for (const u of [...this.u3, ...dropped]) {
      let holders = 0;
      for (const v of this.nb[u - 1]) if (inU3.has(v)) holders++;
      if (holders < this.cfg.t)
        this.abort(`client ${u}'s secret has ${holders} live share holders, threshold ${this.cfg.t}`);
    }
  }

  /** Client u's unmask request: its neighbours in U2, split by U3 (ascending, as nb is). */
  private requestFor(u: number): UnmaskRequest {
    const survivors: number[] = [];
    const dropped: number[] = [];
    for (const v of this.nb[u - 1]) if (this.inU2.has(v)) (this.inU3.has(v) ? survivors : dropped).push(v);
    return { survivors, dropped };
  }

  /** R2 -> R4 (no consistency round): survivors U3; each is asked for b-shares of surviving and s-shares of dropped neighbours. */
  closeMasked(): Map<number, UnmaskRequest> {
    this.expect('masked', 'closeMasked');
    if (this.cfg.consistency)
      throw new Error('this round runs the consistency round: use closeMaskedToConsistency');
    this.decideU3();
    this.phase = 'unmask';
    const out = new Map<number, UnmaskRequest>();
    for (const u of this.u3) out.set(u, this.requestFor(u));
    this.ask(out);
    return out;
  }

  /** R2 -> R3: every client in U3 is told U3 (the same set, ascending) and asked to sign it. */
  closeMaskedToConsistency(): Map<number, SurvivorSet> {
    this.expect('masked', 'closeMaskedToConsistency');
    if (!this.cfg.consistency) throw new Error('this round has no consistency round: use closeMasked');
    this.decideU3();
    this.phase = 'consistency';
    this.waitFor(this.u3);
    const out = new Map<number, SurvivorSet>();
    for (const u of this.u3) out.set(u, { survivors: [...this.u3] });
    return out;
  }

  /** R3: one survivor's signature over U3, by its share-signing key of this attempt (attested at R0). */
  receiveSignature(from: number, raw: unknown): void {
    this.expect('consistency', 'signature');
    if (!this.inU3.has(from)) throw new ProtocolError('not_selected', `client ${from} is not in U3`);
    if (this.signatures.has(from) || this.excluded.has(from))
      throw new ProtocolError('duplicate', `client ${from} already signed`);
    const sig = bytes(record(raw, 'signature').sig, 'sig', SIGNATURE_BYTES);
    const gPk = this.keys.get(from)!.gPk; // this attempt's key, bound to the identity at R0
    const { valid } = countSurvivorSignatures(
      this.cfg.tag,
      this.u3,
      [{ index: from, sig }],
      new Map([[from, gPk]]),
    );
    if (!valid.length) {
      // An honest client signs the set it was told, which is U3: this one signed something else.
      this.exclude(from);
      throw new ProtocolError('inconsistent_view', `client ${from}'s signature is not over U3`);
    }
    this.signatures.set(from, sig);
    this.waiting.delete(from);
  }

  /**
   * R3 -> R4: U4 = the signers. A client reveals only with t neighbour signatures over U3, so only those
   * with t signing neighbours are asked (each with those signatures); every needed secret must keep t such
   * holders, else the attempt aborts here rather than stall in R4.
   */
  closeConsistency(): Map<number, UnmaskRequest> {
    this.expect('consistency', 'closeConsistency');
    const signers = this.signatures;
    const signing = (u: number): number[] => [...this.nb[u - 1]].filter((v) => signers.has(v));
    const asked = new Set(this.u3.filter((u) => signers.has(u) && signing(u).length >= this.cfg.t));
    for (const u of this.u2) {
      const holders = [...this.nb[u - 1]].filter((v) => asked.has(v)).length;
      if (holders < this.cfg.t)
        this.abort(
          `client ${u}'s secret has ${holders} holders with ${this.cfg.t} signing neighbours, threshold ${this.cfg.t}`,
        );
    }
    this.phase = 'unmask';
    const out = new Map<number, UnmaskRequest>();
    for (const u of this.u3) {
      if (!asked.has(u)) continue;
      const signatures = signing(u).map((v) => ({ index: v, sig: signers.get(v)! }));
      out.set(u, { ...this.requestFor(u), signatures });
    }
    this.ask(out);
    return out;
  }

  /**
   * R4, a reveal as objects ({ b, s }: lists of { of, share, sig }; tests and the in-memory round): checked
   * for form, packed into the wire records (packReveal, fresh buffers), then taken as receiveRevealWire
   * takes them.
   */
  receiveReveal(from: number, raw: unknown): void {
    const req = this.admitReveal(from);
    const r = record(raw, 'reveal');
    const entries = (v: unknown, kind: ShareKind): Reveal['b'] =>
      list(v, kind, this.cfg.n).map((e) => {
        const er = record(e, 'revealed share');
        return {
          of: index(er.of, 'share.of', this.cfg.n),
          share: bytesView(er.share, 'share', SHARE_BYTES),
          sig: bytesView(er.sig, 'share.sig', SIGNATURE_BYTES),
        };
      });
    const wire = packReveal({ b: entries(r.b, 'b'), s: entries(r.s, 's') });
    this.takeReveal(from, req, wire.b, wire.s);
  }

  /**
   * R4, a reveal as it travels (wire.ts): b and s each one blob of `u32 of || share || sig` records. Read
   * into the reveal log without an object per share: 8 000 reveals arrive within seconds at 10 000
   * clients, and each share's objects and their garbage held the event loop up to a second.
   */
  receiveRevealWire(from: number, raw: unknown): void {
    const req = this.admitReveal(from);
    const r = record(raw, 'reveal');
    // Our own copies, checked and then logged: nothing the caller holds can change between the two.
    const blob = (v: unknown, kind: ShareKind): Uint8Array => {
      const b = bytes(v, `reveal.${kind}`, undefined, this.cfg.n * REVEAL_RECORD);
      if (b.length % REVEAL_RECORD !== 0)
        throw new ProtocolError(
          'malformed',
          `reveal.${kind} is ${b.length} bytes, not a whole number of ${REVEAL_RECORD}-byte records`,
        );
      return b;
    };
    this.takeReveal(from, req, blob(r.b, 'b'), blob(r.s, 's'));
  }

  /** Whether `from` may reveal now (phase, asked, not sealed, not yet revealed): its request if so. */
  private admitReveal(from: number): UnmaskRequest {
    this.expect('unmask', 'reveal');
    const req = this.requests.get(from);
    if (!req) throw new ProtocolError('not_selected', `client ${from} was not asked to unmask`);
    // Once the unmasking has begun every reveal is late, whoever sends it.
    if (this.sealed) throw new ProtocolError('late', 'the unmasking has already started');
    if (this.revealed.has(from) || this.excluded.has(from))
      throw new ProtocolError('duplicate', `client ${from} already revealed its shares`);
    return req;
  }

  /** Checks a reveal's records (b, s: our own buffers) against its request and appends them to the log. */
  private takeReveal(from: number, req: UnmaskRequest, b: Uint8Array, s: Uint8Array): void {
    const n = this.cfg.n;
    const kinds = [b, s] as const;
    const ofAt = (b: Uint8Array, off: number): number =>
      ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
    // One mark per client for this reveal: what was asked (1 b, 2 s) and what came (4 b, 8 s); cleared
    // in `finally`, so each reveal costs O(its records), not O(n).
    const mark = (this.marks ??= new Uint8Array(n + 1));
    try {
      for (const v of req.survivors) mark[v] |= 1;
      for (const v of req.dropped) mark[v] |= 2;
      kinds.forEach((b, k) => {
        const seen = k === 0 ? 4 : 8;
        for (let off = 0; off < b.length; off += REVEAL_RECORD) {
          const of = ofAt(b, off);
          if (of < 1 || of > n)
            throw new ProtocolError('malformed', `share.of must be a client index in 1..${n}`);
          if (mark[of] & seen)
            throw new ProtocolError('duplicate', `two ${k === 0 ? 'b' : 's'}-shares of ${of}`);
          mark[of] |= seen;
        }
      });
      // Both shares of one client would unmask its input: refused outright, and named for what it is.
      for (let off = 0; off < kinds[0].length; off += REVEAL_RECORD) {
        const of = ofAt(kinds[0], off);
        if (mark[of] & 8) throw new ProtocolError('both_shares', `both shares of ${of} revealed`);
      }
      kinds.forEach((b, k) => {
        const asked = k === 0 ? 1 : 2;
        for (let off = 0; off < b.length; off += REVEAL_RECORD) {
          const of = ofAt(b, off);
          if (!(mark[of] & asked))
            throw new ProtocolError(
              'unrequested_share',
              `${k === 0 ? 'b' : 's'}-share of ${of} was not requested from ${from}`,
            );
        }
      });
    } finally {
      for (const v of req.survivors) mark[v] = 0;
      for (const v of req.dropped) mark[v] = 0;
      for (const b of kinds)
        for (let off = 0; off < b.length; off += REVEAL_RECORD) {
          const of = ofAt(b, off);
          if (of <= n) mark[of] = 0;
        }
    }
    // Appended after the log's end and kept only once every share is checked: our copy is what is
    // checked (the transport may reuse its buffers), so nothing out of the field (33 bytes hold up to
    // 2^264) reaches unmasking.
    const log = this.log;
    let at = this.logLength;
    // ask() sized the log for every request: a holder commits once, at most its request's shares.
    if (at + (kinds[0].length + kinds[1].length) / REVEAL_RECORD > log.revealOf.length)
      throw new Error('reveal log overflow (requests changed?)');
    kinds.forEach((b, k) => {
      for (let off = 0; off < b.length; off += REVEAL_RECORD) {
        const d = at * REVEALED_BYTES;
        log.revealData.set(b.subarray(off + 4, off + REVEAL_RECORD), d);
        if (!isFieldElementAt(log.revealData, d)) {
          this.exclude(from);
          this.name(from, 'malformed_share');
          throw new ProtocolError(
            'malformed_share',
            `share of ${ofAt(b, off)} from ${from} is not a field element`,
          );
        }
        log.revealHolder[at] = from;
        log.revealOf[at] = ofAt(b, off);
        log.revealKind[at] = k;
        at++;
      }
    });
    this.logLength = at;
    this.revealed.add(from);
    this.waiting.delete(from);
  }

  /**
   * R4 -> unmasking: everything the unmasking needs, as one job (unmask.ts) that may run elsewhere (a
   * worker thread). No reveal is accepted afterwards; finishUnmask takes the result. The shares go as they
   * arrived, not sorted by secret here (~0.3 s of the event loop at 10 000 clients): that is the job's.
   */
  prepareUnmask(): UnmaskJob {
    this.expect('unmask', 'closeUnmask');
    if (this.sealed) throw new Error('the unmasking has already started');
    this.sealed = true;
    this.waiting.clear();
    const inU3 = this.inU3;
    const dropped = this.u2.filter((u) => !inU3.has(u));
    const secrets: UnmaskSecret[] = [];
    for (const u of this.u3) {
      const k = this.keys.get(u)!;
      secrets.push({ of: u, kind: 'b', check: this.commits.get(u)!, dealerKey: k.gPk });
    }
    for (const d of dropped) {
      const k = this.keys.get(d)!;
      const pairs = [...this.nb[d - 1]]
        .filter((v) => inU3.has(v))
        .map((v) => ({ with: v, sPk: this.keys.get(v)!.sPk }));
      secrets.push({ of: d, kind: 's', check: k.sPk, dealerKey: k.gPk, pairs });
    }
    const sum = new Uint32Array(this.cfg.vectorLength);
    this.sum.copyTo(sum);
    return packUnmaskJob(this.cfg.tag, this.cfg.t, secrets, this.takenLog(), [...this.named.keys()], sum);
  }

  /** R2 -> R4: these requests go out; the log gets room for every share they ask for. */
  private ask(requests: Map<number, UnmaskRequest>): void {
    this.requests = requests;
    let n = 0;
    for (const r of requests.values()) n += r.survivors.length + r.dropped.length;
    this.log = emptyLog(n);
    this.logLength = 0;
    this.waitFor(requests.keys());
  }

  /** The log's filled part: views over its buffers, which the job hands on whole (transferred, not copied). */
  private takenLog(): RevealLog {
    const n = this.logLength;
    const { revealHolder, revealOf, revealKind, revealData } = this.log;
    this.log = emptyLog(0); // from here the job owns the buffers (a transfer detaches them)
    return {
      revealHolder: revealHolder.subarray(0, n),
      revealOf: revealOf.subarray(0, n),
      revealKind: revealKind.subarray(0, n),
      revealData: revealData.subarray(0, n * REVEALED_BYTES),
    };
  }

  /** Unmasking -> done: the culprits it proved are named; the sum is returned, or SecAggAbort thrown. */
  finishUnmask(r: UnmaskResult): Uint32Array {
    this.expect('unmask', 'finishUnmask');
    if (!this.sealed) throw new Error('finishUnmask before prepareUnmask');
    for (const c of r.culprits) this.name(c.index, c.kind);
    if (!r.ok) this.abort(r.reason);
    this.phase = 'done';
    this.waiting.clear();
    return r.sum;
  }

  /** R4 -> done, in this thread: the exact sum of the survivors' inputs, or a SecAggAbort rejection. */
  async closeUnmask(): Promise<Uint32Array> {
    return this.finishUnmask(await runUnmask(this.prepareUnmask()));
  }
}
