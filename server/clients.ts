import { ProtocolError } from '../shared/base/errors.ts';
import type { BackendName, ClientSource, ServerToClientEvents } from '../shared/protocol/messages.ts';
import { checkHello, checkReady } from '../shared/protocol/validate.ts';
import type { Metrics } from './metrics.ts';

/** How the server talks to one connected client; socket.io in production, anything in tests. */
export interface ClientLink {
  send<E extends keyof ServerToClientEvents>(event: E, ...args: Parameters<ServerToClientEvents[E]>): void;
}

/** One client identity: its data shard index, its current link (null while offline) and readiness. */
export interface ClientRecord {
  readonly id: string;
  /** Order of first hello; picks the client's data shard. */
  readonly index: number;
  readonly source: ClientSource;
  readonly link: ClientLink | null;
  readonly backend: BackendName | null;
  readonly numExamples: number;
}

interface MutableRecord {
  id: string;
  index: number;
  source: ClientSource;
  link: ClientLink | null;
  backend: BackendName | null;
  numExamples: number;
}

export interface ClientCounts {
  connected: number;
  ready: number;
  byBackend: Record<string, number>;
}

export interface RegistryOptions {
  /** Largest numExamples a client may claim. */
  maxExamples: number;
  /** Gauges of connected and ready clients, kept current (optional in tests). */
  metrics?: Metrics;
  /** Sending to one link threw: that client misses the message, nobody else is affected. */
  onSendError?: (e: unknown) => void;
}

/**
 * Who is known to the server: identities, their links and readiness. Counts (connected, ready, ready by
 * backend) are kept as records change, so reading them costs the same with ten clients or a million.
 */
export class ClientRegistry {
  private readonly records = new Map<string, MutableRecord>();
  private readonly readySet = new Set<MutableRecord>();
  private readonly backendCounts = new Map<BackendName, number>();
  private connected = 0;
  private nextIndex = 0;

  constructor(private readonly o: RegistryOptions) {}

  /** A `hello` message on `link`: validated; the client's record now reaches it through that link. */
  hello(link: ClientLink, raw: unknown): ClientRecord {
    const h = checkHello(raw);
    if (!h.ok) throw new ProtocolError(h.reason, h.message);
    return this.connect(h.value.clientId, h.value.source, link);
  }

  /** A `ready` message from the client with this id: validated and recorded. */
  ready(id: string | null, raw: unknown): ClientRecord {
    const r = this.records.get(id ?? '');
    if (!r?.link) throw new ProtocolError('unknown_client', 'say hello before ready');
    const m = checkReady(raw, this.o.maxExamples);
    if (!m.ok) throw new ProtocolError(m.reason, m.message);
    this.setReady(r, m.value.backend, m.value.numExamples);
    return r;
  }

  get(id: string | null): ClientRecord | undefined {
    return id === null ? undefined : this.records.get(id);
  }

  get size(): number {
    return this.records.size;
  }

  /** A hello: the record for this id (created on first sight) now reaches the client through `link`. */
  connect(id: string, source: ClientSource, link: ClientLink): ClientRecord {
    let r = this.records.get(id);
    if (!r) {
      r = { id, index: this.nextIndex++, source, link: null, backend: null, numExamples: 0 };
      this.records.set(id, r);
    }
    this.change(r, () => (r.link = link));
    return r;
  }

  /** The client said what it trains with and how many examples it holds. */
  setReady(rec: ClientRecord, backend: BackendName, numExamples: number): void {
    const r = this.own(rec);
    this.change(r, () => {
      r.backend = backend;
      r.numExamples = numExamples;
    });
  }

  /** The link closed. Returns the record, or null when a newer link already took over (nothing changes). */
  disconnect(id: string, link: ClientLink): ClientRecord | null {
    const r = this.records.get(id);
    if (!r || r.link !== link) return null;
    this.change(r, () => (r.link = null));
    return r;
  }

  counts(): ClientCounts {
    const byBackend: Record<string, number> = {};
    for (const [b, n] of this.backendCounts) if (n > 0) byBackend[b] = n;
    return { connected: this.connected, ready: this.readySet.size, byBackend };
  }

  get readyCount(): number {
    return this.readySet.size;
  }

  /** Ready clients (online, backend reported), in order of first hello. */
  readyClients(): ClientRecord[] {
    return [...this.readySet].sort((a, b) => a.index - b.index);
  }

  /** Sends to one client if it is online; false if it is not (or the send failed). */
  send<E extends keyof ServerToClientEvents>(
    rec: ClientRecord,
    event: E,
    ...args: Parameters<ServerToClientEvents[E]>
  ): boolean {
    const link = rec.link;
    if (!link) return false;
    try {
      link.send(event, ...args);
      return true;
    } catch (e) {
      this.o.onSendError?.(e);
      return false;
    }
  }

  /** Sends to every online client. */
  broadcast<E extends keyof ServerToClientEvents>(
    event: E,
    ...args: Parameters<ServerToClientEvents[E]>
  ): void {
    for (const r of this.records.values()) if (r.link) this.send(r, event, ...args);
  }

  private own(rec: ClientRecord): MutableRecord {
    const r = this.records.get(rec.id);
    if (r !== rec) throw new Error(`client ${rec.id} is not in this registry`);
    return r;
  }

  /** Applies a mutation to one record with its contribution to the counts taken out and put back. */
  private change(r: MutableRecord, mutate: () => void): void {
    this.count(r, -1);
    mutate();
    this.count(r, +1);
    this.refreshGauges();
  }

  private refreshGauges(): void {
    const m = this.o.metrics;
    if (!m) return;
    m.clientsConnected.set(this.connected);
    m.clientsByBackend.reset();
    for (const [b, n] of this.backendCounts) if (n > 0) m.clientsByBackend.set({ backend: b }, n);
  }

  private count(r: MutableRecord, sign: 1 | -1): void {
    if (!r.link) return;
    this.connected += sign;
    if (!r.backend) return;
    if (sign > 0) this.readySet.add(r);
    else this.readySet.delete(r);
    this.backendCounts.set(r.backend, (this.backendCounts.get(r.backend) ?? 0) + sign);
  }
}
