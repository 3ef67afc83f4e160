import type { Redis } from 'ioredis';

export interface StreamReadOptions {
  /** A connection of its own: XREAD BLOCK holds it. */
  reader: Redis;
  stream: string;
  /** Read the entries after this id. */
  from: string;
  /** Entries per read. */
  count: number;
  stopped: () => boolean;
  /** A read failed (Redis unreachable): it is retried after a short pause. */
  onError: (e: Error) => void;
  /** One entry's frame (its field `f`), or null for an entry without one. Awaited, in order. */
  onEntry: (frame: Buffer | null) => void | Promise<void>;
  /** After each batch, with the last id read. */
  afterBatch: (lastId: string) => void | Promise<void>;
}

/**
 * Reads a stream from `from` on, entry by entry in order, until stopped: the one loop both ends of the
 * cluster bus run (the coordinator over the up stream, each gateway over its own).
 */
export async function readStream(o: StreamReadOptions): Promise<void> {
  let lastId = o.from;
  while (!o.stopped()) {
    let res: [Buffer, [Buffer, Buffer[]][]][] | null;
    try {
      res = await o.reader.xreadBuffer('COUNT', o.count, 'BLOCK', 1000, 'STREAMS', o.stream, lastId);
    } catch (e) {
      if (o.stopped()) return;
      o.onError(e as Error);
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    if (!res) continue;
    for (const [id, fields] of res[0][1]) {
      lastId = id.toString();
      await o.onEntry(frameField(fields));
    }
    await o.afterBatch(lastId);
  }
}

/** The value of field `f` of an entry's [field, value, ...] list. */
function frameField(fields: Buffer[]): Buffer | null {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i].toString() === 'f') return fields[i + 1];
  return null;
}
