import { ProtocolError, type RejectReason } from '../base/errors.ts';
import { SecAggClientSession, type ClientAttestation } from './client-session.ts';
import { attest, generateSigningKeyPair, type SigningKeyPair } from './consistency.ts';
import { SecAggServerSession } from './server-session.ts';
import { addInto } from './ring.ts';
import type {
  AdvertiseKeys,
  Inbox,
  Reveal,
  Roster,
  SecAggActivePhase,
  ShareKeys,
  SurvivorSet,
  UnmaskRequest,
} from './types.ts';

// performance.now is in browsers, workers and Node alike, but not in the ES2022 lib shared/ compiles against.
const perf = (globalThis as { performance?: { now(): number } }).performance;
const now = (): number => (perf ? perf.now() : Date.now());

/** The last phase a client takes part in before vanishing. */
export type DropPoint = 'before-keys' | 'after-keys' | 'after-shares' | 'after-masked' | 'after-signature';

export interface InMemoryRoundInput {
  tag: string;
  neighbours: number[][];
  t: number;
  minSurvivors: number;
  inputs: Uint32Array[];
  /** index -> where it vanishes ('after-signature': signs U3 in R3, then vanishes before revealing). */
  drops?: ReadonlyMap<number, DropPoint>;
  /** Runs the consistency round: every client gets a fresh identity that this site key attests. */
  consistency?: { site: SigningKeyPair };
  /** Lets a test alter what a client sends or receives. */
  tamper?: {
    keys?: (from: number, m: AdvertiseKeys) => AdvertiseKeys;
    shares?: (from: number, m: ShareKeys) => ShareKeys;
    inbox?: (to: number, m: Inbox) => Inbox;
    survivors?: (to: number, m: SurvivorSet) => SurvivorSet;
    unmask?: (to: number, m: UnmaskRequest) => UnmaskRequest;
    reveal?: (from: number, m: Reveal) => Reveal;
  };
  /**
   * Delivers the masked inputs as partial sums (as scale-out gateways do): the senders, ascending, are
   * split into groups, and each group's sum mod 2^32 goes to receiveMaskedSum. Absent: one by one.
   */
  groups?: (senders: number[], masked: ReadonlyMap<number, Uint32Array>) => number[][];
  /** Called with the server session once it exists, so a test can inspect it after a SecAggAbort. */
  onServer?: (server: SecAggServerSession) => void;
}

export interface Transcript {
  keys: Map<number, unknown>;
  shares: Map<number, ShareKeys>;
  masked: Map<number, Uint32Array>;
  reveals: Map<number, Reveal>;
}

export interface InMemoryRoundResult {
  sum: Uint32Array;
  /** Plaintext sum of the survivors' inputs (what sum must equal). */
  expected: Uint32Array;
  survivors: number[];
  transcript: Transcript;
  /** Messages the server refused, in order; as over the socket, the round went on without them. */
  rejected: { from: number; phase: SecAggActivePhase; reason: RejectReason }[];
  clients: SecAggClientSession[];
  server: SecAggServerSession;
  /** Milliseconds spent in client code (total) and server code, per phase. */
  ms: { clientMask: number; clientOther: number; server: number };
}

/**
 * Runs one secure-aggregation round in memory, through the same session objects the socket transport
 * uses, and records everything the server receives. For tests and benchmarks.
 */
export async function runInMemoryRound(sim: InMemoryRoundInput): Promise<InMemoryRoundResult> {
  const n = sim.inputs.length;
  const L = sim.inputs[0].length;
  const drops = sim.drops ?? new Map();
  const ms = { clientMask: 0, clientOther: 0, server: 0 };
  const timed = <T>(k: keyof typeof ms, f: () => T): T => {
    const t0 = now();
    try {
      return f();
    } finally {
      ms[k] += now() - t0;
    }
  };
  const timedAsync = async <T>(k: keyof typeof ms, f: () => Promise<T>): Promise<T> => {
    const t0 = now();
    try {
      return await f();
    } finally {
      ms[k] += now() - t0;
    }
  };
  const server = timed(
    'server',
    () =>
      new SecAggServerSession({
        tag: sim.tag,
        n,
        neighbours: sim.neighbours,
        t: sim.t,
        vectorLength: L,
        minSurvivors: sim.minSurvivors,
        consistency: sim.consistency ? { sitePublicKey: sim.consistency.site.publicKey } : null,
      }),
  );
  sim.onServer?.(server);
  const site = sim.consistency?.site;
  const attestation = (): ClientAttestation | undefined => {
    if (!site) return undefined;
    const identity = generateSigningKeyPair();
    return { sitePublicKey: site.publicKey, identity, signature: attest(site.secretKey, identity.publicKey) };
  };
  const clients = timed('clientOther', () =>
    sim.inputs.map(
      (_, i) =>
        new SecAggClientSession({
          tag: sim.tag,
          index: i + 1,
          n,
          t: sim.t,
          vectorLength: L,
          ...(site ? { consistency: true, attestation: attestation() } : {}),
        }),
    ),
  );
  const transcript: Transcript = {
    keys: new Map(),
    shares: new Map(),
    masked: new Map(),
    reveals: new Map(),
  };
  const ids = clients.map((_, i) => i + 1);
  const rejected: InMemoryRoundResult['rejected'] = [];
  const deliver = (from: number, phase: SecAggActivePhase, receive: () => void): void => {
    try {
      timed('server', receive);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      rejected.push({ from, phase, reason: e.reason });
    }
  };

  for (const u of ids) {
    if (drops.get(u) === 'before-keys') continue;
    let m = timed('clientOther', () => clients[u - 1].advertise());
    if (sim.tamper?.keys) m = sim.tamper.keys(u, m);
    transcript.keys.set(u, m);
    deliver(u, 'keys', () => server.receiveKeys(u, m));
  }
  const rosters = timed('server', () => server.closeKeys());
  for (const [u, roster] of rosters) {
    if (drops.get(u) === 'after-keys') continue;
    let m = timed('clientOther', () => clients[u - 1].receiveRoster(roster as Roster));
    if (sim.tamper?.shares) m = sim.tamper.shares(u, m);
    transcript.shares.set(u, m);
    deliver(u, 'shares', () => server.receiveShares(u, m));
  }
  const inboxes = timed('server', () => server.closeShares());
  for (const [u, inbox0] of inboxes) {
    if (drops.get(u) === 'after-keys' || drops.get(u) === 'after-shares') continue;
    const inbox = sim.tamper?.inbox ? sim.tamper.inbox(u, inbox0) : inbox0;
    timed('clientOther', () => clients[u - 1].receiveInbox(inbox));
    const y = await timedAsync('clientMask', () => clients[u - 1].mask(sim.inputs[u - 1]));
    transcript.masked.set(u, y);
    if (!sim.groups) deliver(u, 'masked', () => server.receiveMasked(u, y));
  }
  if (sim.groups)
    for (const group of sim.groups(
      [...transcript.masked.keys()].sort((a, b) => a - b),
      transcript.masked,
    )) {
      const sum = new Uint32Array(L);
      for (const u of group) addInto(sum, transcript.masked.get(u)!);
      deliver(group[0], 'masked', () => server.receiveMaskedSum(group, sum));
    }
  let requests: Map<number, UnmaskRequest>;
  if (site) {
    const sets = timed('server', () => server.closeMaskedToConsistency());
    for (const [u, set0] of sets) {
      if (drops.get(u) === 'after-masked') continue;
      const set = sim.tamper?.survivors ? sim.tamper.survivors(u, set0) : set0;
      const m = timed('clientOther', () => clients[u - 1].receiveSurvivors(set));
      deliver(u, 'consistency', () => server.receiveSignature(u, m));
    }
    requests = timed('server', () => server.closeConsistency());
  } else requests = timed('server', () => server.closeMasked());
  for (const [u, req0] of requests) {
    if (drops.get(u) === 'after-masked' || drops.get(u) === 'after-signature') continue;
    const req = sim.tamper?.unmask ? sim.tamper.unmask(u, req0) : req0;
    let r = timed('clientOther', () => clients[u - 1].receiveUnmask(req));
    if (sim.tamper?.reveal) r = sim.tamper.reveal(u, r);
    transcript.reveals.set(u, r);
    deliver(u, 'unmask', () => server.receiveReveal(u, r));
  }
  const sum = await timedAsync('server', () => server.closeUnmask());
  const survivors = [...server.survivors];
  const expected = new Uint32Array(L);
  for (const u of survivors) addInto(expected, sim.inputs[u - 1]);
  return { sum, expected, survivors, transcript, rejected, clients, server, ms };
}
