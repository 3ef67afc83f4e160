import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Where the server keeps what it must never forget (checkpoint, privacy ledger, run record): opaque
 * values under a few fixed keys. Small and async so that a shared store can implement it later; such a
 * store is built holding its lease, and checks the fencing token on every put itself (a stale leader's
 * write fails and throws), so the interface does not change. The formats, their versions and the checks
 * made on load live in one place above it (run-state.ts), the same for every backend.
 */
export interface StateStore {
  /** The value under `key`, or null when there is none. */
  get(key: StoreKey): Promise<Uint8Array | null>;
  /** Replaces the value under `key`; when it resolves the value is durable, and a crash leaves old or new. */
  put(key: StoreKey, value: Uint8Array): Promise<void>;
  /** Where the store is, for log lines. */
  readonly where: string;
}

/** The keys in use (a closed set: file names are never built from anything a client sends). */
export const STORE_KEYS = ['run', 'checkpoint', 'ledger'] as const;
export type StoreKey = (typeof STORE_KEYS)[number];

/** The file-system calls an atomic write makes; tests inject failing or recording versions. */
export interface FileOps {
  /** Writes `data` to a new file at `path` and fsyncs it before resolving. */
  writeSynced(path: string, data: Uint8Array): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** fsyncs a directory, so a rename in it survives a power cut. */
  syncDir(dir: string): Promise<void>;
  readFile(path: string): Promise<Uint8Array | null>;
  unlink(path: string): Promise<void>;
}

export const nodeFileOps: FileOps = {
  async writeSynced(path, data) {
    const fh = await open(path, 'w', 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  rename,
  async syncDir(dir) {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  async readFile(path) {
    try {
      return await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  },
  async unlink(path) {
    await unlink(path).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  },
};

/**
 * One file per key under --state-dir, each replaced atomically: written to `<key>.tmp`, fsynced, renamed
 * over `<key>`, and the directory fsynced. A crash at any point leaves either the old file or the new
 * one (a stale `.tmp` is ignored and overwritten by the next put). Writes to one key are serialized.
 */
export class FileStore implements StateStore {
  private readonly queues = new Map<StoreKey, Promise<void>>();

  private constructor(
    readonly dir: string,
    private readonly fs: FileOps,
  ) {}

  /** Opens (and creates, if need be) the directory. */
  static async open(dir: string, fs: FileOps = nodeFileOps): Promise<FileStore> {
    if (typeof dir !== 'string' || dir === '')
      throw new TypeError('state directory must be a non-empty path');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new FileStore(dir, fs);
  }

  get where(): string {
    return this.dir;
  }

  private path(key: StoreKey): string {
    if (!STORE_KEYS.includes(key)) throw new RangeError(`unknown store key "${String(key)}"`);
    return join(this.dir, key);
  }

  async get(key: StoreKey): Promise<Uint8Array | null> {
    return this.fs.readFile(this.path(key));
  }

  async put(key: StoreKey, value: Uint8Array): Promise<void> {
    const file = this.path(key);
    const prev = this.queues.get(key) ?? Promise.resolve();
    const next = prev
      .catch(() => undefined) // an earlier failed put does not fail this one
      .then(async () => {
        const tmp = `${file}.tmp`;
        await this.fs.writeSynced(tmp, value);
        await this.fs.rename(tmp, file);
        await this.fs.syncDir(this.dir);
      });
    this.queues.set(key, next);
    await next;
  }
}

/** A store in memory (tests, and runs without --state-dir that still want the code path). */
export class MemoryStore implements StateStore {
  readonly where = 'memory';
  readonly values = new Map<StoreKey, Uint8Array>();

  async get(key: StoreKey): Promise<Uint8Array | null> {
    const v = this.values.get(key);
    return v ? v.slice() : null;
  }

  async put(key: StoreKey, value: Uint8Array): Promise<void> {
    this.values.set(key, value.slice());
  }
}
