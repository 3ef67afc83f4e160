import { deserialize, serialize } from 'node:v8';
import { KEY_PREFIX } from '../redis/connect.ts';
import type { Ack, ServerToClientEvents } from '../../shared/protocol/messages.ts';
import type { ClientEvent } from '../reject-events.ts';
import { isClientEvent, type ConnectionMeta } from '../dispatch.ts';
import type { PartialSum, UpdateClaim } from '../intake.ts';

/**
 * What gateways and the coordinator say to each other over Redis streams. Gateways write to one stream
 * the coordinator reads (UP_STREAM); the coordinator writes to one stream per gateway (downStream). Each
 * entry is one frame, serialized with v8's structured clone, which keeps the binary fields of client
 * messages (socket.io attachments: Buffers) and typed arrays intact without a schema of their own. Both
 * ends are our own processes: a frame is never built from, or parsed for, anyone else.
 */
export type ConnMeta = ConnectionMeta & { observe: boolean };

/** Gateway -> coordinator. `g` is the gateway's id, `c` the connection's id on that gateway. */
export type UpFrame =
  | { t: 'open'; g: string; c: string; m: ConnMeta }
  /** One client message; `a` numbers the answer the gateway waits for. `m` lets a coordinator that missed the open (a new leader) place it. */
  | { t: 'msg'; g: string; c: string; m: ConnMeta; e: ClientEvent; r: unknown; a: number }
  | { t: 'close'; g: string; c: string }
  /** A masked update the gateway checked and keeps (secure rounds): the coordinator checks the rest. */
  | { t: 'claim'; g: string; c: string; m: ConnMeta; r: UpdateClaim; a: number }
  /** The gateway's sum of the claimed inputs the coordinator accepted. */
  | { t: 'partial'; g: string; r: PartialSum }
  /** Claimed vectors the gateway let go before the answer came: never to be summed. */
  | { t: 'void'; g: string; r: { round: number; attempt: number; members: number[] } };

/** Coordinator -> one gateway. */
export type DownFrame =
  /**
   * `blob`: the first argument's `weights` were left out; they are the bytes under blobKey(hash), written
   * once per model (the same for every client of a round) instead of once per client.
   */
  | { t: 'send'; c: string; e: keyof ServerToClientEvents; a: unknown[]; blob?: { weights: string } }
  /** `claim`: the accepted claim's member, for the gateway's partial sum (never sent to the client). */
  | { t: 'ack'; c: string; a: number; r: Ack; claim?: ClaimedMember };

export interface ClaimedMember {
  round: number;
  attempt: number;
  member: number;
}

export function encodeFrame(f: UpFrame | DownFrame): Buffer {
  return serialize(f);
}

/**
 * A frame from a stream entry; null for anything that is not one, field by field (logged and skipped by
 * the reader). Both ends are ours, but a frame a broken or older process wrote must not reach a handler
 * with a field missing or of another type (an event name that is not a client event, a meta without its flags).
 */
export function decodeUp(b: Buffer): UpFrame | null {
  const f = safeDeserialize(b);
  if (!f || !isId(f.g)) return null;
  if (f.t === 'partial') return isPartial(f.r) ? (f as UpFrame) : null;
  if (f.t === 'void') return isMembers(f.r) ? (f as UpFrame) : null;
  if (!isId(f.c)) return null;
  if (f.t === 'close') return f as UpFrame;
  if (!isConnMeta(f.m)) return null;
  if (f.t === 'open') return f as UpFrame;
  if (f.t === 'claim') return isAnswerNo(f.a) && isClaim(f.r) ? (f as UpFrame) : null;
  return f.t === 'msg' && isClientEvent(f.e) && isAnswerNo(f.a) ? (f as UpFrame) : null;
}

export function decodeDown(b: Buffer): DownFrame | null {
  const f = safeDeserialize(b);
  if (!f || !isId(f.c)) return null;
  if (f.t === 'send')
    return typeof f.e === 'string' && Array.isArray(f.a) && (f.blob === undefined || isBlobRef(f.blob))
      ? (f as DownFrame)
      : null;
  if (f.t === 'ack')
    return isAnswerNo(f.a) && isAck(f.r) && (f.claim === undefined || isClaimed(f.claim))
      ? (f as DownFrame)
      : null;
  return null;
}

const isId = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 200;
const isAnswerNo = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) > 0;

function isConnMeta(v: unknown): v is ConnMeta {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return (
    (m.resumes === null || typeof m.resumes === 'string') &&
    typeof m.observerOnly === 'boolean' &&
    typeof m.observe === 'boolean'
  );
}

function isBlobRef(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const w = (v as Record<string, unknown>).weights;
  return typeof w === 'string' && /^[0-9a-f]{64}$/.test(w);
}

const isRef = (r: Record<string, unknown>): boolean =>
  Number.isSafeInteger(r.round) && Number.isSafeInteger(r.attempt);

function isClaim(v: unknown): v is UpdateClaim {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return isRef(r) && r.digest instanceof Uint8Array && r.digest.length === 32;
}

function isMembers(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    isRef(r) &&
    Array.isArray(r.members) &&
    r.members.length > 0 &&
    r.members.every((m) => Number.isSafeInteger(m) && m > 0)
  );
}

function isPartial(v: unknown): v is PartialSum {
  return isMembers(v) && (v as Record<string, unknown>).sum instanceof Uint32Array;
}

function isClaimed(v: unknown): v is ClaimedMember {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return isRef(r) && Number.isSafeInteger(r.member) && (r.member as number) > 0;
}

function isAck(v: unknown): v is Ack {
  if (typeof v !== 'object' || v === null) return false;
  const a = v as Record<string, unknown>;
  return a.ok === true || (a.ok === false && typeof a.reason === 'string');
}

function safeDeserialize(b: Buffer): Record<string, unknown> | null {
  try {
    const v: unknown = deserialize(b);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** Stream and key names, all under the project's one prefix (server/redis/connect.ts). */
export const UP_STREAM = `${KEY_PREFIX}up`;
export const downStream = (gateway: string): string => `${KEY_PREFIX}down:${gateway}`;
/** A gateway's heartbeat: present while it lives (renewed every HEARTBEAT_MS, expires after GATEWAY_TTL_MS). */
export const gatewayKey = (gateway: string): string => `${KEY_PREFIX}gateway:${gateway}`;
/** The coordinator's latest status (JSON) and model (weights; round), for the gateways' HTTP routes. */
export const STATUS_KEY = `${KEY_PREFIX}status`;
export const MODEL_KEY = `${KEY_PREFIX}model`;
/** The shared key resume tokens are signed with (created by the first process that needs it). */
export const RESUME_KEY = `${KEY_PREFIX}resume-key`;
/** Bytes sent to many clients (a round's model), stored once by their SHA-256 (hex). */
export const blobKey = (hash: string): string => `${KEY_PREFIX}blob:${hash}`;
/** Blobs outlive any round that could still send them. */
export const BLOB_TTL_MS = 6 * 3600_000;
/** Weights at least this big travel as a blob (smaller ones are not worth a lookup). */
export const BLOB_MIN_BYTES = 4096;

export const HEARTBEAT_MS = 1000;
export const GATEWAY_TTL_MS = 4000;
/**
 * Streams are trimmed to about this many entries: a stream whose reader died (a gateway gone) must not
 * grow without bound. A live reader is never that far behind (each side reads as fast as it handles).
 */
export const STREAM_MAXLEN = 50_000;

/**
 * Nesting a client message may have to be forwarded. Protocol messages nest a few levels; v8's serializer
 * recurses and throws past a few thousand (a 20 KB string of brackets), and the coordinator's deserializer
 * may give up at a different depth than the gateway's serializer: a deeper message is refused at the
 * gateway, before it becomes a frame.
 */
export const MAX_MESSAGE_DEPTH = 64;

/** True when `v` nests at most `max` objects/arrays deep (binary values are leaves); iterative, never throws. */
export function withinDepth(v: unknown, max: number = MAX_MESSAGE_DEPTH): boolean {
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (typeof x !== 'object' || x === null || ArrayBuffer.isView(x) || x instanceof ArrayBuffer) continue;
    if (d >= max) return false;
    for (const k of Object.keys(x)) stack.push([(x as Record<string, unknown>)[k], d + 1]);
  }
  return true;
}
