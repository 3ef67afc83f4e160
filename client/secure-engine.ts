import { ProtocolError, isRejectReason } from '../shared/base/errors.ts';
import { createSecureRandom, type SecureRandom } from '../shared/dp/secure-random.ts';
import { encodeContribution, type EncodingPlan } from '../shared/fl/encoding.ts';
import { SecAggClientSession, type ClientSessionConfig } from '../shared/secagg/client-session.ts';
import type { AdvertiseKeys, SurvivorSignature } from '../shared/secagg/types.ts';
import {
  packReveal,
  packShares,
  unpackInbox,
  unpackRoster,
  unpackUnmask,
  type WireReveal,
  type WireShares,
} from '../shared/secagg/wire.ts';

/** A value now (inline) or later (from a worker). */
export type Awaitable<T> = T | Promise<T>;

/** Applies f to v as soon as it is there: synchronously when v is, so the inline engine keeps its timing. */
export function andThen<T, U>(v: Awaitable<T>, f: (t: T) => U): Awaitable<U> {
  return v instanceof Promise ? v.then(f) : f(v);
}

/** An encoded contribution: the ring vector, and the clipping it took. */
export interface EncodedRing {
  ring: Uint32Array;
  norm: number;
  clamped: number;
}

/**
 * Everything costly a client does for privacy: the DP encoding (clip, noise, fixed point) and the
 * secure-aggregation session (key agreement, Shamir shares, boxes, masks), fed wire messages as they come
 * from the server and answering in wire form, so unpacking runs on its side too. Browsers run it in a
 * worker, off the host page's main thread; Node and tests inline. Sessions are named by the caller (one per
 * round attempt). A ProtocolError keeps its reason across the worker boundary.
 */
export interface SecureEngine {
  open(id: string, cfg: ClientSessionConfig): Awaitable<AdvertiseKeys>;
  roster(id: string, raw: unknown, maxPeers: number): Awaitable<WireShares>;
  inbox(id: string, raw: unknown, maxPeers: number): Awaitable<{ peers: number; bad: number }>;
  survivors(id: string, raw: unknown): Awaitable<SurvivorSignature>;
  /** The reveal, and how many self-mask (b) and key (s) shares it holds. */
  unmask(id: string, raw: unknown, maxPeers: number): Awaitable<{ reveal: WireReveal; b: number; s: number }>;
  mask(id: string, ring: Uint32Array): Awaitable<Uint32Array>;
  encode(delta: Float32Array, numExamples: number, plan: EncodingPlan, loss: number): Awaitable<EncodedRing>;
  close(id: string): void;
  /** Ends the engine (a worker is terminated). */
  terminate(): void;
}

/** The engine on the calling thread; `random` is opened at the first encoding. */
export function inlineSecureEngine(random: () => SecureRandom = lazySecureRandom()): SecureEngine {
  const sessions = new Map<string, SecAggClientSession>();
  const get = (id: string): SecAggClientSession => {
    const s = sessions.get(id);
    if (!s) throw new Error(`no secure session ${id}`);
    return s;
  };
  return {
    open: (id, cfg) => {
      const s = new SecAggClientSession(cfg);
      sessions.set(id, s);
      return s.advertise();
    },
    roster: (id, raw, maxPeers) => packShares(get(id).receiveRoster(unpackRoster(raw, maxPeers))),
    inbox: (id, raw, maxPeers) => {
      const s = get(id);
      const peers = s.receiveInbox(unpackInbox(raw, maxPeers));
      return { peers: peers.length, bad: s.badBoxes.length };
    },
    survivors: (id, raw) => get(id).receiveSurvivors(raw),
    unmask: (id, raw, maxPeers) => {
      const r = get(id).receiveUnmask(unpackUnmask(raw, maxPeers));
      return { reveal: packReveal(r), b: r.b.length, s: r.s.length };
    },
    mask: (id, ring) => get(id).mask(ring),
    encode: (delta, numExamples, plan, loss) => {
      const c = encodeContribution(delta, numExamples, plan, random(), loss);
      return { ring: c.ring, norm: c.norm, clamped: c.clamped };
    },
    close: (id) => void sessions.delete(id),
    terminate: () => sessions.clear(),
  };
}

/** A secure random source opened on first use (and then reused). */
export function lazySecureRandom(): () => SecureRandom {
  let random: SecureRandom | null = null;
  return () => (random ??= createSecureRandom());
}

// ---- over a message channel (a Web Worker) -------------------------------------------------------------

type Op = Exclude<keyof SecureEngine, 'terminate'>;
export interface EngineCall {
  call: number;
  op: Op;
  args: unknown[];
}
export type EngineReply =
  { call: number; ok: unknown } | { call: number; error: { message: string; reason?: string } };

/** Vectors move, not copy: the ring and delta buffers are handed over (the sender does not reuse them). */
function transferables(v: unknown): Transferable[] {
  if (v instanceof Uint32Array || v instanceof Float32Array) return [v.buffer as ArrayBuffer];
  if (v && typeof v === 'object' && 'ring' in v && v.ring instanceof Uint32Array)
    return [v.ring.buffer as ArrayBuffer];
  return [];
}

/**
 * The worker's side: runs each call on an inline engine and answers it. Calls run one at a time in arrival
 * order, an asynchronous one (masking goes through WebCrypto) finishing before the next starts.
 */
export function serveSecureEngine(
  post: (r: EngineReply, transfer: Transferable[]) => void,
  engine: SecureEngine = inlineSecureEngine(),
): (c: EngineCall) => void {
  let queue: Promise<void> = Promise.resolve();
  const fail = (call: number, e: unknown): void => {
    const reason = e instanceof ProtocolError ? e.reason : undefined;
    post({ call, error: { message: (e as Error)?.message ?? String(e), reason } }, []);
  };
  return ({ call, op, args }) => {
    queue = queue.then(async () => {
      try {
        const ok = await (engine[op] as (...a: unknown[]) => unknown)(...args);
        post({ call, ok }, transferables(ok));
      } catch (e) {
        fail(call, e);
      }
    });
  };
}

/** A channel to an engine elsewhere (a worker): send calls, hear replies. */
export interface EngineChannel {
  send(c: EngineCall, transfer: Transferable[]): void;
  onReply(fn: (r: EngineReply) => void): void;
  close(): void;
}

/** The page's side: every call is a promise of the worker's answer. */
export function remoteSecureEngine(ch: EngineChannel): SecureEngine {
  let next = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  ch.onReply((r) => {
    const p = pending.get(r.call);
    if (!p) return;
    pending.delete(r.call);
    if ('ok' in r) p.resolve(r.ok);
    else
      p.reject(
        isRejectReason(r.error.reason)
          ? new ProtocolError(r.error.reason, r.error.message)
          : new Error(r.error.message),
      );
  });
  const call = <T>(op: Op, ...args: unknown[]): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      ch.send({ call: id, op, args }, args.flatMap(transferables));
    });
  return {
    open: (id, cfg) => call('open', id, cfg),
    roster: (id, raw, maxPeers) => call('roster', id, raw, maxPeers),
    inbox: (id, raw, maxPeers) => call('inbox', id, raw, maxPeers),
    survivors: (id, raw) => call('survivors', id, raw),
    unmask: (id, raw, maxPeers) => call('unmask', id, raw, maxPeers),
    mask: (id, ring) => call('mask', id, ring),
    encode: (delta, numExamples, plan, loss) => call('encode', delta, numExamples, plan, loss),
    close: (id) => void call('close', id).catch(() => {}),
    terminate: () => {
      for (const p of pending.values()) p.reject(new Error('secure engine terminated'));
      pending.clear();
      ch.close();
    },
  };
}
