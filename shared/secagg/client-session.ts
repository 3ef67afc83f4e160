import { bytesToHex, randomBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { ProtocolError } from '../base/errors.ts';
import { bytes, index, indexList, list, record } from './check.ts';
import {
  checkKeyAuth,
  checkSigningKey,
  countSurvivorSignatures,
  generateSigningKeyPair,
  SIGN_PUBLIC_BYTES,
  SIGNATURE_BYTES,
  signRoundKeys,
  signShare,
  signSurvivors,
  verifyAttestation,
  verifyShare,
  type SigningKeyPair,
} from './consistency.ts';
import {
  DEFAULT_NEIGHBOURHOOD,
  degreeBounds,
  SECAGG_MIN_COHORT,
  SECAGG_MIN_THRESHOLD,
  unsafeThreshold,
} from './graph.ts';
import {
  agree,
  bytesEqual,
  channelKeyFrom,
  checkPublicKey,
  commitSeed,
  generateKeyPair,
  KEY_BYTES,
  maskSeeds,
  open,
  seal,
  type KeyPair,
} from './keys.ts';
import { addMasks, type MaskTerm } from './prg.ts';
import type { SignedShare } from './recover.ts';
import { isFieldElement, SHARE_BYTES, split } from './shamir.ts';
import type {
  AdvertiseKeys,
  KeyAuth,
  PeerKeys,
  Reveal,
  ShareKeys,
  SignedBy,
  SurvivorSignature,
} from './types.ts';
import { BOX_PLAIN_BYTES } from './wire.ts';

export interface ClientSessionConfig {
  /** Binds every key and box to one round attempt. */
  tag: string;
  /** This client's 1-based index. */
  index: number;
  /** Highest index in the round (clients invited). */
  n: number;
  /**
   * Over-selection: at most this many of the n invited take part (the first to advertise keys), and
   * (k, t) are sized for it, so every check of the plan's size reads it instead of n. Absent: n.
   */
  cohort?: number;
  /** Shares needed to reconstruct. */
  t: number;
  vectorLength: number;
  /**
   * Neighbours per client in the round's plan (n - 1 for the complete graph). When given, (n, k, t) must
   * be safe (unsafeThreshold) and no roster may list more than k peers: each holder beyond the plan's k
   * lets a server that splits its unmask requests rebuild both of our secrets with one colluder fewer.
   */
  k?: number;
  /** The embedding page's floors; the server cannot lower them (defaults: the hard minimums). */
  floors?: SessionFloors;
  /** The round runs with authenticated keys and the consistency round (R3): round:start's `consistency`. */
  consistency?: boolean;
  /**
   * Given by the embedding page, never by the server: the site's attestation key and this visitor's
   * identity with the site's signature on it. A client that has one refuses rounds without R3 (a floor the
   * server cannot lower), and trusts in R3 only peers whose keys the site vouches for.
   */
  attestation?: ClientAttestation;
}

/** The site's attestation public key, this visitor's identity key pair, and the site's signature on it. */
export interface ClientAttestation {
  sitePublicKey: Uint8Array;
  identity: SigningKeyPair;
  /** attest(siteSecretKey, identity.publicKey), made by the site's backend. */
  signature: Uint8Array;
}

/** Checks an embedding page's attestation config; throws a RangeError naming what is wrong. */
export function checkClientAttestation(a: ClientAttestation): void {
  if (checkSigningKey(a.sitePublicKey))
    throw new RangeError('the site attestation key is not a usable Ed25519 key');
  if (!(a.identity?.secretKey instanceof Uint8Array) || a.identity.secretKey.length !== 32)
    throw new RangeError('the identity secret key must be 32 bytes');
  if (checkSigningKey(a.identity.publicKey))
    throw new RangeError('the identity public key is not a usable Ed25519 key');
  if (!verifyAttestation(a.sitePublicKey, a.identity.publicKey, a.signature))
    throw new RangeError("the site's signature does not verify on this identity under the site key");
}

/** What a client accepts, whatever the server's plan says (the secagg part of shared/protocol/floors.ts). */
export interface SessionFloors {
  /** Lowest Shamir threshold accepted (never below SECAGG_MIN_THRESHOLD). */
  minThreshold: number;
  /** Fewest clients in a round accepted (never below SECAGG_MIN_COHORT). */
  minCohort: number;
}

export const MIN_SESSION_FLOORS: SessionFloors = {
  minThreshold: SECAGG_MIN_THRESHOLD,
  minCohort: SECAGG_MIN_COHORT,
};

/** Offsets in a box's plaintext: u32 from || u32 to || share of s_u^SK || share of b_u || sig on s || sig on b. */
const AT_S = 8;
const AT_B = AT_S + SHARE_BYTES;
const AT_SIG_S = AT_B + SHARE_BYTES;
const AT_SIG_B = AT_SIG_S + SIGNATURE_BYTES;

/** The two shares a neighbour dealt us, each with its signature (revealed with it). */
interface Held {
  s: SignedShare;
  b: SignedShare;
}

/**
 * The masking itself (privacy.md C, R2), what SecAggClientSession.mask runs once its checks pass:
 * y = x + PRG(self seed) + sum over peers v < me of PRG(s_uv) - sum over v > me (mod 2^32), the k
 * agreements batched (WebCrypto X25519), the masks expanded by AES-CTR and added in bulk. x is not changed.
 */
export async function maskInput(
  x: Uint32Array,
  selfSeed: Uint8Array,
  sSecret: Uint8Array,
  peers: readonly { index: number; sPk: Uint8Array }[],
  tag: string,
  me: number,
): Promise<Uint32Array> {
  const seeds = await maskSeeds(sSecret, peers, tag, me);
  const terms: MaskTerm[] = [{ seed: selfSeed, domain: 'self', sign: 1 }];
  peers.forEach((p, i) => terms.push({ seed: seeds[i], domain: 'pair', sign: me > p.index ? 1 : -1 }));
  const y = x.slice();
  await addMasks(y, terms);
  return y;
}

/**
 * One client's side of one secure-aggregation round, as a pure state machine: each method takes the
 * server's message and returns the reply. It keeps the only copies of its secret keys and self-mask seed,
 * and it reveals, per neighbour, either that neighbour's self-mask share or its key share, never both.
 *
 * It also refuses (ProtocolError) what would let a server isolate one client's input without t colluders:
 * a threshold or cohort below its floors, a roster of fewer than t peers, an inbox with fewer than t boxes
 * that open (masked with the self-mask alone, the input falls to the self-mask shares honest neighbours
 * reveal), and an unmask request naming fewer than t surviving neighbours. A refused message changes
 * nothing: each step commits its state only once it is accepted, and each is accepted at most once.
 */
export class SecAggClientSession {
  private readonly c: KeyPair;
  private readonly s: KeyPair;
  /** Signs the shares we deal, this round only. */
  private readonly g: SigningKeyPair;
  private readonly seed = randomBytes(32);
  /** X25519(c, peer's cPk) per neighbour: agreed sealing our boxes (R1), reused opening theirs (R3). */
  private readonly channels = new Map<number, { cPk: Uint8Array; shared: Uint8Array }>();
  private roster = new Map<number, PeerKeys>();
  private held = new Map<number, Held>();
  /** Neighbours in U2: the peers this client masks with. */
  private maskPeers: number[] | null = null;
  private revealed = false;
  /** R3: neighbour -> its attested identity key (from the roster). */
  private ids = new Map<number, Uint8Array>();
  /** R3: the survivor set this client signed (it signs one, once). */
  private signedSet: number[] | null = null;
  /** Boxes from the inbox that did not open or were not meant for us (counted, reported). */
  readonly badBoxes: { from: number; reason: string }[] = [];
  /**
   * On the complete graph this client sees every member, so it checks the page's cohort floor against
   * what it sees (roster, survivors), not only against the n the server claims. On a sparse graph it can
   * see only its neighbourhood; there the floor holds for the claimed n (see the threat model).
   */
  private readonly complete: boolean;
  private readonly minCohort: number;

  constructor(private readonly cfg: ClientSessionConfig) {
    if (cfg.index < 1 || cfg.index > cfg.n) throw new RangeError(`index ${cfg.index} is outside 1..${cfg.n}`);
    if (cfg.cohort !== undefined && !(Number.isInteger(cfg.cohort) && cfg.cohort >= 1 && cfg.cohort <= cfg.n))
      throw new ProtocolError('malformed', `cohort ${cfg.cohort} must be an integer in 1..${cfg.n}`);
    // The size every check reads: the cohort that takes part, not the invited count (over-selection).
    const n = cfg.cohort ?? cfg.n;
    const floors = cfg.floors ?? MIN_SESSION_FLOORS;
    const minCohort = Math.max(SECAGG_MIN_COHORT, floors.minCohort);
    const minThreshold = Math.max(SECAGG_MIN_THRESHOLD, floors.minThreshold);
    if (!(n >= minCohort))
      throw new ProtocolError(
        'below_floor',
        `round has ${n} clients, this client needs at least ${minCohort}`,
      );
    if (!Number.isInteger(cfg.t) || !(cfg.t >= minThreshold))
      throw new ProtocolError(
        'below_floor',
        `threshold ${cfg.t} is below this client's floor of ${minThreshold}`,
      );
    if (cfg.t > n - 1)
      throw new ProtocolError('malformed', `threshold ${cfg.t} exceeds the ${n - 1} possible share holders`);
    if (cfg.k !== undefined) {
      if (!Number.isInteger(cfg.k) || cfg.k < cfg.t || cfg.k > n - 1)
        throw new ProtocolError('malformed', `degree ${cfg.k} must be an integer in ${cfg.t}..${n - 1}`);
      const why = unsafeThreshold(n, cfg.k, cfg.t);
      if (why) throw new ProtocolError('below_floor', why);
      // A sparse graph must be one a client can trust for the claimed n: the SecAgg+ security bound at
      // the default assumptions (a smaller k than that, e.g. k = 2 at n = 50, hides a tiny real cohort).
      if (cfg.k < n - 1) {
        const b = degreeBounds(n, cfg.k, cfg.t, DEFAULT_NEIGHBOURHOOD);
        if (!(b.securityBits > DEFAULT_NEIGHBOURHOOD.sigma))
          throw new ProtocolError(
            'below_floor',
            `${cfg.k} neighbours of ${n} clients give 2^-${Math.floor(b.securityBits)} security, below 2^-${DEFAULT_NEIGHBOURHOOD.sigma}`,
          );
      }
    }
    this.complete = cfg.k === undefined || cfg.k >= n - 1;
    this.minCohort = minCohort;
    if (cfg.attestation) {
      checkClientAttestation(cfg.attestation);
      if (!cfg.consistency)
        throw new ProtocolError(
          'below_floor',
          'this client runs only rounds with authenticated keys and the consistency round',
        );
    } else if (cfg.consistency)
      throw new ProtocolError('unattested', 'the round needs an attested identity, and this client has none');
    this.c = generateKeyPair();
    this.s = generateKeyPair();
    this.g = generateSigningKeyPair();
  }

  advertise(): AdvertiseKeys {
    const keys: AdvertiseKeys = { cPk: this.c.publicKey, sPk: this.s.publicKey, gPk: this.g.publicKey };
    const a = this.cfg.attestation;
    if (this.cfg.consistency && a) {
      const { tag, index } = this.cfg;
      keys.auth = {
        idPk: a.identity.publicKey,
        attestation: a.signature,
        keysSig: signRoundKeys(a.identity.secretKey, tag, index, keys.cPk, keys.sPk, keys.gPk),
      };
    }
    return keys;
  }

  /**
   * R1: shares of s_u^SK and b_u for each neighbour, each signed (so the server can later tell a holder
   * that altered a share from a dealer that dealt a bad one) and sealed for that neighbour only.
   */
  receiveRoster(raw: unknown): ShareKeys {
    if (this.roster.size) throw new ProtocolError('duplicate', 'roster already received');
    const peers = list(record(raw, 'roster').peers, 'roster.peers', this.cfg.n);
    const roster = new Map<number, PeerKeys>();
    const ids = new Map<number, Uint8Array>();
    for (const p of peers) {
      const r = record(p, 'peer');
      const idx = index(r.index, 'peer.index', this.cfg.n);
      if (idx === this.cfg.index)
        throw new ProtocolError('malformed', 'roster lists this client as its own neighbour');
      if (roster.has(idx)) throw new ProtocolError('duplicate', `roster lists client ${idx} twice`);
      const cPk = bytes(r.cPk, 'cPk', KEY_BYTES);
      const sPk = bytes(r.sPk, 'sPk', KEY_BYTES);
      const gPk = bytes(r.gPk, 'gPk', SIGN_PUBLIC_BYTES);
      // A low-order key would make every agreement with it predictable (or fail), and no share signed
      // under an unusable gPk would ever verify: the server should have refused it, so refuse the roster.
      const bad = checkPublicKey(cPk) ?? checkPublicKey(sPk) ?? checkSigningKey(gPk);
      if (bad) throw new ProtocolError('bad_key', `roster key of client ${idx} is unusable (${bad})`);
      roster.set(idx, { index: idx, cPk, sPk, gPk });
      if (this.cfg.consistency) ids.set(idx, this.checkPeerAuth(idx, { cPk, sPk, gPk }, r.auth));
    }
    // One identity at two indices (ours included) is one visitor counted twice, a Sybil the site did not
    // mint: refused, so R3's "t neighbours signed" means t distinct attested visitors.
    if (this.cfg.consistency) {
      const mine = this.cfg.attestation!.identity.publicKey;
      if (new Set([mine, ...ids.values()].map(bytesToHex)).size !== ids.size + 1)
        throw new ProtocolError('unattested', 'roster lists one identity at two indices');
    }
    // Fewer than t holders: our secrets could never be rebuilt, and the round could not include us honestly.
    if (roster.size < this.cfg.t)
      throw new ProtocolError(
        'too_few_peers',
        `roster has ${roster.size} neighbours, threshold is ${this.cfg.t}`,
      );
    if (this.complete && roster.size + 1 < this.minCohort)
      throw new ProtocolError(
        'below_floor',
        `the roster shows ${roster.size + 1} clients; this client needs at least ${this.minCohort}`,
      );
    // 2t > holders: two disjoint groups of t honest holders (one asked for our self-mask share, the other
    // for our key share, neither for both) cannot exist, so a split request needs a colluding holder.
    if (2 * this.cfg.t <= roster.size)
      throw new ProtocolError(
        'below_floor',
        `threshold ${this.cfg.t} is not above half of our ${roster.size} share holders`,
      );
    if (this.cfg.k !== undefined && roster.size > this.cfg.k)
      throw new ProtocolError(
        'malformed',
        `roster has ${roster.size} neighbours, the round's degree is ${this.cfg.k}`,
      );
    const xs = [...roster.keys()];
    const sShares = split(this.s.secretKey, this.cfg.t, xs);
    const bShares = split(this.seed, this.cfg.t, xs);
    const aad = utf8ToBytes(this.cfg.tag);
    const { tag, index: me } = this.cfg;
    const shares = xs.map((to, i) => {
      const plain = new Uint8Array(BOX_PLAIN_BYTES);
      const dv = new DataView(plain.buffer);
      dv.setUint32(0, me);
      dv.setUint32(4, to);
      plain.set(sShares[i].y, AT_S);
      plain.set(bShares[i].y, AT_B);
      plain.set(signShare(this.g.secretKey, tag, 's', me, to, sShares[i].y), AT_SIG_S);
      plain.set(signShare(this.g.secretKey, tag, 'b', me, to, bShares[i].y), AT_SIG_B);
      let key: Uint8Array;
      try {
        key = channelKeyFrom(this.channel(to, roster.get(to)!.cPk), this.cfg.tag, this.cfg.index, to);
      } catch {
        throw new ProtocolError('bad_key', `client ${to}'s channel key is not a usable X25519 key`);
      }
      return { to, ct: seal(key, plain, aad) };
    });
    this.roster = roster;
    this.ids = ids;
    return { shares, commit: commitSeed(this.seed, this.cfg.tag, this.cfg.index) };
  }

  /** The agreed channel secret with peer `v` under `cPk` (a refused roster may have named another cPk). */
  private channel(v: number, cPk: Uint8Array): Uint8Array {
    const hit = this.channels.get(v);
    if (hit && bytesEqual(hit.cPk, cPk)) return hit.shared;
    const shared = agree(this.c.secretKey, cPk);
    this.channels.set(v, { cPk: cPk.slice(), shared });
    return shared;
  }

  /** R3 roster check: the peer's keys carry the site's attestation and its identity's signature. */
  private checkPeerAuth(
    idx: number,
    keys: { cPk: Uint8Array; sPk: Uint8Array; gPk: Uint8Array },
    raw: unknown,
  ): Uint8Array {
    if (raw === undefined)
      throw new ProtocolError('unattested', `roster keys of client ${idx} carry no attestation`);
    const r = record(raw, 'peer.auth');
    const auth: KeyAuth = {
      idPk: bytes(r.idPk, 'idPk', SIGN_PUBLIC_BYTES),
      attestation: bytes(r.attestation, 'attestation', SIGNATURE_BYTES),
      keysSig: bytes(r.keysSig, 'keysSig', SIGNATURE_BYTES),
    };
    const why = checkKeyAuth(this.cfg.attestation!.sitePublicKey, this.cfg.tag, idx, keys, auth);
    if (why)
      throw new ProtocolError('unattested', `roster keys of client ${idx} are not vouched for (${why})`);
    return auth.idPk;
  }

  /**
   * R3 ConsistencyCheck: signs the survivor set U3 the server announces, once. Refused when it cannot be
   * right from where we stand: it leaves us out (we are asked, so we survived), names a neighbour that
   * never reached our inbox (U3 is within U2), or names fewer than t of our neighbours.
   */
  receiveSurvivors(raw: unknown): SurvivorSignature {
    if (!this.cfg.consistency) throw new ProtocolError('wrong_phase', 'this round has no consistency round');
    if (!this.maskPeers) throw new ProtocolError('wrong_phase', 'survivor set before inbox');
    if (this.signedSet) throw new ProtocolError('duplicate', 'a survivor set was already signed');
    const survivors = indexList(record(raw, 'survivor set').survivors, 'survivors', this.cfg.n);
    for (let i = 1; i < survivors.length; i++)
      if (survivors[i] < survivors[i - 1])
        throw new ProtocolError('malformed', 'survivors must be ascending');
    if (!survivors.includes(this.cfg.index))
      throw new ProtocolError(
        'inconsistent_view',
        'survivor set leaves out this client, which is asked to sign it',
      );
    const inInbox = new Set(this.maskPeers);
    const outside = survivors.find((v) => this.roster.has(v) && !inInbox.has(v));
    if (outside !== undefined)
      throw new ProtocolError(
        'inconsistent_view',
        `survivor set names ${outside}, which never shared keys with us`,
      );
    const surviving = survivors.filter((v) => inInbox.has(v)).length;
    if (surviving < this.cfg.t)
      throw new ProtocolError(
        'too_few_peers',
        `survivor set names ${surviving} neighbours, threshold is ${this.cfg.t}`,
      );
    // Signed with this attempt's share-signing key (bound to our attested identity by keysSig): a
    // signature from an earlier attempt under the same tag then never verifies here, so a server cannot
    // collect survivor signatures across aborted attempts and replay them.
    const sig = signSurvivors(this.g.secretKey, this.cfg.tag, survivors);
    this.signedSet = survivors;
    return { sig };
  }

  /**
   * R4 under R3: the request must follow from the set we signed (survivors = our inbox peers in it,
   * dropped = the others), and carry valid signatures of at least t neighbours over exactly that set.
   * A server that told some of us another story cannot bring t of our neighbours to sign ours.
   */
  private checkConsistent(survivors: number[], dropped: number[], rawSigs: unknown): void {
    const set = this.signedSet;
    if (!set) throw new ProtocolError('wrong_phase', 'unmask request before the survivor set was signed');
    const inSet = new Set(set);
    const want = (alive: boolean) => this.maskPeers!.filter((v) => inSet.has(v) === alive).join();
    const got = (l: number[]) =>
      l
        .filter((v) => v !== this.cfg.index)
        .sort((a, b) => a - b)
        .join();
    if (got(survivors) !== want(true) || got(dropped) !== want(false))
      throw new ProtocolError(
        'inconsistent_view',
        'unmask request does not follow from the survivor set this client signed',
      );
    const sigs: SignedBy[] = list(rawSigs ?? [], 'signatures', this.cfg.n).map((e) => {
      const r = record(e, 'signature');
      return {
        index: index(r.index, 'signature.index', this.cfg.n),
        sig: bytes(r.sig, 'signature.sig', SIGNATURE_BYTES),
      };
    });
    const attemptKeys = new Map([...this.ids.keys()].map((v) => [v, this.roster.get(v)!.gPk]));
    const { valid } = countSurvivorSignatures(this.cfg.tag, set, sigs, attemptKeys);
    if (valid.length < this.cfg.t)
      throw new ProtocolError(
        'inconsistent_view',
        `${valid.length} neighbours signed the survivor set this client signed, threshold is ${this.cfg.t}`,
      );
  }

  /**
   * R2 input: boxes from neighbours in U2. A box that fails to open, that opens to a share meant for
   * someone else, or whose shares do not carry their dealer's valid signatures, is set aside (we still mask with that peer: the server counts it in U2). Fewer than t
   * boxes that open is refused: with an empty inbox we would mask with the self-mask alone, and the
   * honest neighbours' self-mask shares would then hand the server our input.
   */
  receiveInbox(raw: unknown): number[] {
    if (this.maskPeers) throw new ProtocolError('duplicate', 'inbox already received');
    if (!this.roster.size) throw new ProtocolError('wrong_phase', 'inbox before roster');
    const entries = list(record(raw, 'inbox').shares, 'inbox.shares', this.cfg.n);
    const aad = utf8ToBytes(this.cfg.tag);
    const peers: number[] = [];
    const held = new Map<number, Held>();
    const bad: { from: number; reason: string }[] = [];
    for (const e of entries) {
      const r = record(e, 'inbox entry');
      const from = index(r.from, 'inbox.from', this.cfg.n);
      const peer = this.roster.get(from);
      if (!peer) throw new ProtocolError('not_neighbour', `inbox has a box from ${from}, not a neighbour`);
      if (peers.includes(from)) throw new ProtocolError('duplicate', `inbox has two boxes from ${from}`);
      peers.push(from);
      const ct = bytes(r.ct, 'inbox.ct', undefined, 512);
      try {
        const key = channelKeyFrom(this.channel(from, peer.cPk), this.cfg.tag, from, this.cfg.index);
        const plain = open(key, ct, aad);
        const dv = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
        if (plain.length !== BOX_PLAIN_BYTES) throw new Error('wrong size');
        if (dv.getUint32(0) !== from || dv.getUint32(4) !== this.cfg.index) {
          bad.push({ from, reason: 'misaddressed' });
          continue;
        }
        const sY = plain.slice(AT_S, AT_B);
        const bY = plain.slice(AT_B, AT_SIG_S);
        const sSig = plain.slice(AT_SIG_S, AT_SIG_B);
        const bSig = plain.slice(AT_SIG_B);
        // A share outside the field would be refused at the server with us named for it: never pass it on.
        if (!isFieldElement(sY) || !isFieldElement(bY)) {
          bad.push({ from, reason: 'share outside the field' });
          continue;
        }
        // Revealed without its dealer's signature, a share would get us named as having altered it.
        const me = this.cfg.index;
        const { tag } = this.cfg;
        if (
          !verifyShare(peer.gPk, tag, 's', from, me, sY, sSig) ||
          !verifyShare(peer.gPk, tag, 'b', from, me, bY, bSig)
        ) {
          bad.push({ from, reason: 'bad signature' });
          continue;
        }
        held.set(from, { s: { x: me, y: sY, sig: sSig }, b: { x: me, y: bY, sig: bSig } });
      } catch {
        bad.push({ from, reason: 'does not open' });
      }
    }
    this.badBoxes.push(...bad);
    if (held.size < this.cfg.t)
      throw new ProtocolError(
        'too_few_shares',
        `inbox has ${held.size} boxes that open (of ${entries.length}), threshold is ${this.cfg.t}`,
      );
    this.held = held;
    this.maskPeers = peers.sort((a, b) => a - b);
    return this.maskPeers;
  }

  /**
   * R2: y = x + PRG(b_u, self) + sum_{v < u} PRG(s_uv, pair) - sum_{v > u} PRG(s_uv, pair) (mod 2^32).
   * Throws at once when called out of phase or with the wrong length; the masks are expanded through
   * WebCrypto, hence the promise.
   */
  mask(x: Uint32Array): Promise<Uint32Array> {
    if (!this.maskPeers) throw new ProtocolError('wrong_phase', 'mask before inbox');
    if (x.length !== this.cfg.vectorLength)
      throw new RangeError(`input has ${x.length} values, round expects ${this.cfg.vectorLength}`);
    const peers = this.maskPeers.map((v) => ({ index: v, sPk: this.roster.get(v)!.sPk }));
    return maskInput(x, this.seed, this.s.secretKey, peers, this.cfg.tag, this.cfg.index);
  }

  /**
   * R4: refuses (throws) a request that names a peer as both survivor and dropout, names a peer we hold
   * nothing for in a role it cannot have, or comes twice: answering could unmask that peer's input.
   *
   * It also refuses a request naming fewer than t of OUR neighbours as survivors. We are a survivor too
   * (we are being asked), but we do not count: the server rebuilds our own self-mask from t surviving
   * neighbours, so an honest request always names at least t of them besides us (the server aborts
   * otherwise). A request naming fewer is the server calling our neighbours dropped so that their key
   * shares strip their pairwise masks from a "sum" of very few inputs.
   */
  receiveUnmask(raw: unknown): Reveal {
    if (!this.maskPeers) throw new ProtocolError('wrong_phase', 'unmask request before inbox');
    if (this.revealed) throw new ProtocolError('duplicate', 'unmask already answered');
    const r = record(raw, 'unmask request');
    const survivors = indexList(r.survivors, 'survivors', this.cfg.n);
    const dropped = indexList(r.dropped, 'dropped', this.cfg.n);
    const both = survivors.find((v) => dropped.includes(v));
    if (both !== undefined)
      throw new ProtocolError('both_shares', `server asked for both shares of client ${both}`);
    for (const v of [...survivors, ...dropped]) {
      if (v !== this.cfg.index && !this.maskPeers.includes(v))
        throw new ProtocolError('not_neighbour', `client ${v} is not a neighbour in this round`);
    }
    if (dropped.includes(this.cfg.index))
      throw new ProtocolError('both_shares', 'server calls this client dropped while asking it to unmask');
    if (this.cfg.consistency) this.checkConsistent(survivors, dropped, r.signatures);
    const surviving = survivors.filter((v) => v !== this.cfg.index).length;
    if (surviving < this.cfg.t)
      throw new ProtocolError(
        'too_few_peers',
        `unmask request names ${surviving} surviving neighbours, threshold is ${this.cfg.t}`,
      );
    // The released sum would hold fewer inputs than the page allows.
    if (this.complete && surviving + 1 < this.minCohort)
      throw new ProtocolError(
        'below_floor',
        `the sum would hold ${surviving + 1} inputs; this client needs at least ${this.minCohort}`,
      );
    this.revealed = true;
    const pick = (ids: number[], k: 'b' | 's') =>
      ids
        .filter((v) => this.held.has(v))
        .map((v) => ({ of: v, share: this.held.get(v)![k].y, sig: this.held.get(v)![k].sig }));
    return { b: pick(survivors, 'b'), s: pick(dropped, 's') };
  }
}
