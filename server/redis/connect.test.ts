import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedis, type RedisProcess } from '../../e2e/redis-server.ts';
import { connectRedis, key, KEY_PREFIX, ready, reconnectDelay, redactUrl } from './connect.ts';

describe('key', () => {
  it('puts every key under the one prefix', () => {
    expect(KEY_PREFIX).toBe('aegisfl:');
    expect(key('state', 'ledger')).toBe('aegisfl:state:ledger');
    expect(() => key()).toThrow(/at least one/);
    expect(() => key('a', '')).toThrow(/non-empty/);
    expect(() => key('a b')).toThrow(/without spaces/);
  });
});

describe('redactUrl and reconnectDelay', () => {
  it('drops user and password', () => {
    expect(redactUrl('redis://user:s3cret@db.example:6380/2')).toBe('redis://db.example:6380/2');
    expect(redactUrl('rediss://:s3cret@db.example:6380')).toBe('rediss://db.example:6380');
    expect(redactUrl('not a url')).not.toContain('not a url');
  });

  it('backs off, capped at 2 s, and never gives up', () => {
    const d = [1, 2, 3, 4, 5, 6, 50, 10_000].map(reconnectDelay);
    expect(d).toEqual([100, 200, 400, 800, 1600, 2000, 2000, 2000]);
  });
});

describe('connectRedis', () => {
  let server: RedisProcess;
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('connects, names the connection, and passes Buffers through', async () => {
    const c = connectRedis(server.url, 'gateway-1', () => undefined);
    try {
      await ready(c, 10_000);
      expect(await c.client('GETNAME')).toBe('gateway-1');
      const bytes = Buffer.from([0, 255, 128, 10, 13, 0xc3]);
      await c.set(key('t'), bytes);
      expect((await c.getBuffer(key('t')))!.equals(bytes)).toBe(true);
    } finally {
      c.disconnect();
    }
  });

  it('rejects readiness after the timeout with one line naming the URL, never the password', async () => {
    const port = await freePort(); // nothing listens there
    const logs: string[] = [];
    const c = connectRedis(`redis://:hunter2@127.0.0.1:${port}`, 'coord', (m) => logs.push(m));
    try {
      const err = (await ready(c, 700).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(Error);
      expect(err.message).toMatch(
        new RegExp(`^redis redis://127\\.0\\.0\\.1:${port} not ready after 700 ms`),
      );
      expect(err.message).toMatch(/ECONNREFUSED/);
      expect(err.message).not.toContain('hunter2');
      expect(err.message).not.toContain('\n');
      // Several failed attempts, one log line for their one distinct message.
      expect(logs).toHaveLength(1);
      expect(logs[0]).toMatch(/ECONNREFUSED/);
      expect(logs[0]).not.toContain('hunter2');
    } finally {
      c.disconnect();
    }
  });

  it('fails a command during an outage after a bound instead of hanging', async () => {
    const port = await freePort();
    const c = connectRedis(`redis://127.0.0.1:${port}`, 'coord', () => undefined);
    try {
      await expect(c.get(key('x'))).rejects.toThrow(/max retries per request/i);
    } finally {
      c.disconnect();
    }
  });

  it('checks its inputs', () => {
    expect(() => connectRedis('http://x', 'a')).toThrow(/redis:\/\//);
    expect(() => connectRedis('redis://127.0.0.1:1', 'has space')).toThrow(/connection name/);
  });
});
