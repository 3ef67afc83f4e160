import { createHash, randomBytes } from 'node:crypto';
import type { RoundRef, RoundSummary } from '../shared/protocol/messages.ts';
import type { StateStore, StoreKey } from './store.ts';

/**
 * The formats of what the server persists, and the checks made when they are read back. Every value is
 * versioned and names its run: a file of another format version, another run or a damaged one is refused
 * with one line saying which file and why (never silently ignored, never half-read).
 *
 * - run: which run this state directory belongs to, and how many times it has been started.
 * - ledger: one entry per attempt whose aggregate could be unmasked, written before unmasking starts.
 *   An entry is `charged` until the attempt ends without releasing anything, when it becomes `void`
 *   (the same policy as the in-memory ledger). A crash leaves it charged: a restart can over-count
 *   epsilon, never under-count it.
 * - checkpoint: the state after the last completed round: weights (float32) and optimizer moments
 *   (float64) as binary sections, everything else as JSON, with a SHA-256 of the binary part.
 */
export const FORMAT_VERSION = 1;

export class StateError extends Error {}

export interface RunRecord {
  runId: string;
  /** Starts before this one (0 on the first). */
  boots: number;
}

export interface LedgerEntry {
  round: number;
  attempt: number;
  /** Sampling rate and noise multiplier the attempt was charged at (so a changed config cannot rewrite history). */
  q: number;
  z: number;
  status: 'charged' | 'void';
}

/** The global model's state after a completed round. */
export interface Checkpoint {
  /** The last completed round (the next one is round + 1). */
  round: number;
  model: string;
  optimizer: string;
  weights: Float32Array;
  moments: { m: Float64Array | null; v: Float64Array | null };
  /** The clip norm the next round uses (moves with adaptive clipping); null without DP. */
  clipNorm: number | null;
  /** Test scores of the current model (the loss guard compares with them); null until known. */
  current: { accuracy: number; loss: number } | null;
  modelsRejected: number;
  history: RoundSummary[];
}

const MAGIC = Buffer.from('AEGISCK\n', 'ascii');

/** JSON with the non-finite numbers a history can hold (a failed evaluation scores NaN) kept as such. */
function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    typeof x === 'number' && !Number.isFinite(x) ? { nonFinite: String(x) } : x,
  );
}

function fromJson(s: string): unknown {
  return JSON.parse(s, (_k, x: unknown) => {
    if (x && typeof x === 'object' && !Array.isArray(x)) {
      const keys = Object.keys(x);
      const nf = (x as { nonFinite?: unknown }).nonFinite;
      if (keys.length === 1 && (nf === 'NaN' || nf === 'Infinity' || nf === '-Infinity')) return Number(nf);
    }
    return x;
  });
}

/** Checks the envelope every value shares: format name, version, run. */
function envelope(key: StoreKey, raw: unknown, runId: string | null): Record<string, unknown> {
  const bad = (why: string): never => {
    throw new StateError(`state file "${key}" refused: ${why}`);
  };
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) bad('not a JSON object');
  const r = raw as Record<string, unknown>;
  if (r.format !== `aegisfl-${key}`) bad(`format is ${JSON.stringify(r.format)}, expected "aegisfl-${key}"`);
  if (r.version !== FORMAT_VERSION)
    bad(`format version ${String(r.version)}, this server reads ${FORMAT_VERSION}`);
  if (typeof r.runId !== 'string' || !/^[0-9a-f]{16}$/.test(r.runId)) bad('no valid run id');
  if (runId !== null && r.runId !== runId) bad(`it belongs to run ${String(r.runId)}, not run ${runId}`);
  return r;
}

function parseJson(key: StoreKey, bytes: Uint8Array): unknown {
  try {
    return fromJson(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new StateError(`state file "${key}" refused: not valid JSON (damaged?)`);
  }
}

export function encodeRun(r: RunRecord): Uint8Array {
  return Buffer.from(toJson({ format: 'aegisfl-run', version: FORMAT_VERSION, ...r }));
}

export function decodeRun(bytes: Uint8Array): RunRecord {
  const r = envelope('run', parseJson('run', bytes), null);
  if (!Number.isInteger(r.boots) || (r.boots as number) < 0)
    throw new StateError('state file "run" refused: boots is not a count');
  return { runId: r.runId as string, boots: r.boots as number };
}

export function encodeLedger(runId: string, entries: readonly LedgerEntry[]): Uint8Array {
  return Buffer.from(toJson({ format: 'aegisfl-ledger', version: FORMAT_VERSION, runId, entries }));
}

export function decodeLedger(bytes: Uint8Array, runId: string): LedgerEntry[] {
  const r = envelope('ledger', parseJson('ledger', bytes), runId);
  if (!Array.isArray(r.entries)) throw new StateError('state file "ledger" refused: no entries list');
  return r.entries.map((e: unknown, i: number) => {
    const x = e as Partial<LedgerEntry> | null;
    const ok =
      x &&
      Number.isInteger(x.round) &&
      x.round! >= 1 &&
      Number.isInteger(x.attempt) &&
      x.attempt! >= 1 &&
      typeof x.q === 'number' &&
      x.q > 0 &&
      x.q <= 1 &&
      typeof x.z === 'number' &&
      x.z > 0 &&
      (x.status === 'charged' || x.status === 'void');
    if (!ok) throw new StateError(`state file "ledger" refused: entry ${i} is malformed`);
    return { round: x.round!, attempt: x.attempt!, q: x.q!, z: x.z!, status: x.status! };
  });
}

/** Layout: magic, uint32 LE header length, header JSON, then the binary sections the header lists. */
export function encodeCheckpoint(runId: string, c: Checkpoint): Uint8Array {
  const sections: { name: string; type: 'f32' | 'f64'; bytes: Buffer }[] = [
    { name: 'weights', type: 'f32', bytes: bytesOf(c.weights) },
  ];
  if (c.moments.m) sections.push({ name: 'm', type: 'f64', bytes: bytesOf(c.moments.m) });
  if (c.moments.v) sections.push({ name: 'v', type: 'f64', bytes: bytesOf(c.moments.v) });
  const body = Buffer.concat(sections.map((s) => s.bytes));
  const header = Buffer.from(
    toJson({
      format: 'aegisfl-checkpoint',
      version: FORMAT_VERSION,
      runId,
      round: c.round,
      model: c.model,
      optimizer: c.optimizer,
      clipNorm: c.clipNorm,
      current: c.current,
      modelsRejected: c.modelsRejected,
      history: c.history,
      sections: sections.map((s) => ({ name: s.name, type: s.type, length: s.bytes.length })),
      sha256: createHash('sha256').update(body).digest('hex'),
    }),
  );
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  return Buffer.concat([MAGIC, len, header, body]);
}

export function decodeCheckpoint(bytes: Uint8Array, runId: string): Checkpoint {
  const bad = (why: string): never => {
    throw new StateError(`state file "checkpoint" refused: ${why}`);
  };
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < MAGIC.length + 4 || !b.subarray(0, MAGIC.length).equals(MAGIC))
    bad('not an AegisFL checkpoint');
  const hLen = b.readUInt32LE(MAGIC.length);
  const hEnd = MAGIC.length + 4 + hLen;
  if (hEnd > b.length) bad('truncated header');
  const h = envelope('checkpoint', parseJson('checkpoint', b.subarray(MAGIC.length + 4, hEnd)), runId);
  const body = b.subarray(hEnd);
  if (createHash('sha256').update(body).digest('hex') !== h.sha256)
    bad('checksum mismatch (damaged or truncated)');
  if (!Number.isInteger(h.round) || (h.round as number) < 0) bad('round is not a count');
  if (typeof h.model !== 'string' || typeof h.optimizer !== 'string') bad('no model or optimizer name');
  if (!Array.isArray(h.history)) bad('no history');
  const out: Record<string, Float32Array | Float64Array> = {};
  let at = 0;
  for (const s of h.sections as { name: string; type: string; length: number }[]) {
    if (!['weights', 'm', 'v'].includes(s.name) || !Number.isInteger(s.length) || at + s.length > body.length)
      bad('malformed section table');
    const size = s.type === 'f32' ? 4 : s.type === 'f64' ? 8 : bad(`section type ${s.type}`);
    if (s.length % size) bad(`section ${s.name} is not whole ${s.type} values`);
    // Copied out: the typed arrays must be aligned and must not alias the file's buffer.
    const copy = new Uint8Array(body.subarray(at, at + s.length)).buffer;
    out[s.name] = size === 4 ? new Float32Array(copy) : new Float64Array(copy);
    at += s.length;
  }
  if (!(out.weights instanceof Float32Array)) bad('no weights');
  return {
    round: h.round as number,
    model: h.model as string,
    optimizer: h.optimizer as string,
    weights: out.weights as Float32Array,
    moments: { m: (out.m as Float64Array) ?? null, v: (out.v as Float64Array) ?? null },
    clipNorm: typeof h.clipNorm === 'number' ? h.clipNorm : null,
    current: (h.current as Checkpoint['current']) ?? null,
    modelsRejected: Number.isInteger(h.modelsRejected) ? (h.modelsRejected as number) : 0,
    history: h.history as RoundSummary[],
  };
}

function bytesOf(a: Float32Array | Float64Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** What a start finds in the store. */
export interface Loaded {
  runId: string;
  /** Starts before this one; 0 for a new run. */
  boots: number;
  checkpoint: Checkpoint | null;
  ledger: LedgerEntry[];
}

/**
 * The run's durable state: opened once at start (a new run is recorded before anything else happens),
 * then a ledger write before each unmasking and a checkpoint after each completed round. Writes are
 * serialized; `flush` waits for the last one.
 */
export class RunState {
  private entries: LedgerEntry[];
  private last: Promise<void> = Promise.resolve();

  private constructor(
    private readonly store: StateStore,
    readonly loaded: Loaded,
  ) {
    this.entries = [...loaded.ledger];
  }

  /** Reads the store; records a new run (random id) when it is empty, else counts this start. */
  static async open(store: StateStore): Promise<RunState> {
    const runBytes = await store.get('run');
    let run: RunRecord;
    if (runBytes) {
      const old = decodeRun(runBytes);
      run = { runId: old.runId, boots: old.boots + 1 };
    } else {
      // A store with a checkpoint or ledger but no run record is not one this server wrote.
      for (const k of ['checkpoint', 'ledger'] as const)
        if (await store.get(k)) throw new StateError(`state file "${k}" refused: no run record beside it`);
      run = { runId: randomBytes(8).toString('hex'), boots: 0 };
    }
    const cp = await store.get('checkpoint');
    const lg = await store.get('ledger');
    const loaded: Loaded = {
      ...run,
      checkpoint: cp ? decodeCheckpoint(cp, run.runId) : null,
      ledger: lg ? decodeLedger(lg, run.runId) : [],
    };
    await store.put('run', encodeRun(run));
    return new RunState(store, loaded);
  }

  get runId(): string {
    return this.loaded.runId;
  }

  get where(): string {
    return this.store.where;
  }

  /** Ledger entries so far (charged and void). */
  get ledger(): readonly LedgerEntry[] {
    return this.entries;
  }

  /** Records the charge of attempt `ref`; resolves once it is durable (unmasking may start then). */
  charge(ref: RoundRef, q: number, z: number): Promise<void> {
    if (this.entries.some((e) => e.round === ref.round && e.attempt === ref.attempt)) return this.last;
    this.entries.push({ round: ref.round, attempt: ref.attempt, q, z, status: 'charged' });
    return this.write('ledger', encodeLedger(this.runId, this.entries));
  }

  /** Attempt `ref` ended without releasing anything: its charge is void (as in the in-memory ledger). */
  void(ref: RoundRef): Promise<void> {
    const e = this.entries.find((x) => x.round === ref.round && x.attempt === ref.attempt);
    if (!e || e.status === 'void') return this.last;
    e.status = 'void';
    return this.write('ledger', encodeLedger(this.runId, this.entries));
  }

  saveCheckpoint(c: Checkpoint): Promise<void> {
    return this.write('checkpoint', encodeCheckpoint(this.runId, c));
  }

  /** Resolves once every write made so far has finished (failed or not). */
  flush(): Promise<void> {
    return this.last.catch(() => undefined);
  }

  private write(key: StoreKey, bytes: Uint8Array): Promise<void> {
    const p = this.last.catch(() => undefined).then(() => this.store.put(key, bytes));
    this.last = p;
    return p;
  }
}
