import { Redis } from 'ioredis';

/** Every key AegisFL writes lives under this prefix, so a shared Redis can hold other things beside it. */
export const KEY_PREFIX = 'aegisfl:';

/** `aegisfl:<part>:<part>…`; parts are our own names (never text a client sends). */
export function key(...parts: string[]): string {
  if (parts.length === 0) throw new RangeError('key() needs at least one part');
  for (const p of parts)
    if (typeof p !== 'string' || p === '' || /\s/.test(p))
      throw new RangeError(`key part ${JSON.stringify(p)} must be non-empty, without spaces`);
  return KEY_PREFIX + parts.join(':');
}

/** A URL fit for a log line: scheme, host, port and database, never the user name or password. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(unparsable redis URL)';
  }
}

/** Reconnect backoff: 100 ms doubling, capped at 2 s, and never giving up (a server outlives outages). */
export function reconnectDelay(attempt: number): number {
  return Math.min(100 * 2 ** Math.max(0, attempt - 1), 2000);
}

/**
 * A command issued while Redis is unreachable waits in ioredis' offline queue; after this many reconnect
 * attempts in a row fail, the queue is rejected (MaxRetriesPerRequestError). With the backoff above that
 * is under a second at the start of an outage and at most ~8 s once the delay is capped (plus the connect
 * timeout when the host black-holes packets): a ledger write or a bus publish fails after a bound, and its
 * caller decides (the coordinator's lease watchdog stops it leading in the meantime), instead of hanging
 * for as long as the outage lasts (ioredis' null) or ~40 s (its default of 20).
 */
export const MAX_RETRIES_PER_REQUEST = 3;

/** A TCP connect that neither succeeds nor fails (a black-holed host) is abandoned after this long. */
export const CONNECT_TIMEOUT_MS = 3000;

export interface ConnectOptions {
  /**
   * Rejects any single command not answered within this many ms once sent. Unset by default: it would also
   * cut blocking reads (XREAD BLOCK) of a bus client; set it on clients that never block.
   */
  commandTimeoutMs?: number;
}

/** The redacted URL each client was made with, for error messages. */
const urls = new WeakMap<Redis, string>();

/**
 * An ioredis client for a long-running server process: named (CLIENT LIST shows which process and role),
 * connecting at once, reconnecting forever with a capped backoff, failing commands after a bounded outage
 * (MAX_RETRIES_PER_REQUEST), and reconnecting when a failed-over primary answers READONLY. Its error events
 * are logged, once per distinct message until the next successful connection, and never thrown: an
 * 'error' event without a listener would otherwise be printed by ioredis on every retry.
 * Await `ready(client, ms)` before relying on it.
 */
export function connectRedis(
  url: string,
  name: string,
  log: (msg: string) => void = console.error,
  opts: ConnectOptions = {},
): Redis {
  if (typeof url !== 'string' || !/^rediss?:\/\/\S+$/.test(url))
    throw new TypeError(`redis URL must be redis:// or rediss://, got ${redactUrl(String(url))}`);
  // CLIENT SETNAME accepts no spaces; keep it short.
  if (typeof name !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(name))
    throw new TypeError('redis connection name must be 1-64 characters of [A-Za-z0-9._-]');
  const where = redactUrl(url);
  const client = new Redis(url, {
    connectionName: name,
    lazyConnect: false,
    retryStrategy: reconnectDelay,
    maxRetriesPerRequest: MAX_RETRIES_PER_REQUEST,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: opts.commandTimeoutMs,
    // After a failover the old primary answers writes with READONLY: reconnect (DNS may now name the new one).
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
  });
  urls.set(client, where);
  const seen = new Set<string>();
  let troubled = false;
  client.on('error', (err: Error) => {
    const msg = err.message.split('\n')[0].slice(0, 200);
    troubled = true;
    if (seen.has(msg)) return;
    if (seen.size >= 16) seen.clear(); // bounded, whatever the driver reports
    seen.add(msg);
    log(`redis ${where} (${name}): ${msg}`);
  });
  client.on('ready', () => {
    if (troubled) log(`redis ${where} (${name}): connected again`);
    troubled = false;
    seen.clear();
  });
  return client;
}

/**
 * Resolves once `client` is connected and ready for commands; rejects after `timeoutMs` with one line that
 * names the URL (without credentials) and the last connection error, or at once when the client was closed.
 */
export function ready(client: Redis, timeoutMs: number): Promise<void> {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError('timeoutMs must be > 0');
  if (client.status === 'ready') return Promise.resolve();
  const where = urls.get(client) ?? `redis://${client.options.host}:${client.options.port}`;
  return new Promise((resolve, reject) => {
    let lastError = '';
    const onError = (e: Error): void => void (lastError = e.message.split('\n')[0].slice(0, 200));
    const finish = (err: Error | null): void => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('error', onError);
      client.off('end', onEnd);
      if (err) reject(err);
      else resolve();
    };
    const onReady = (): void => finish(null);
    const onEnd = (): void => finish(new Error(`redis ${where} is closed (the client was disconnected)`));
    const timer = setTimeout(
      () =>
        finish(
          new Error(
            `redis ${where} not ready after ${timeoutMs} ms${lastError ? ` (last error: ${lastError})` : ''}`,
          ),
        ),
      timeoutMs,
    );
    client.on('ready', onReady);
    client.on('error', onError);
    client.on('end', onEnd);
    if (client.status === 'end') onEnd();
  });
}
