import { describe, expect, it } from 'vitest';
import { clientAddress, normalizeAddress, parseTrustedProxy } from './address.ts';

describe('client address', () => {
  it('without a trusted proxy, X-Forwarded-For is ignored: the socket peer is the client', () => {
    const none = parseTrustedProxy(undefined);
    expect(clientAddress('203.0.113.7', '1.1.1.1', none)).toBe('203.0.113.7');
    expect(clientAddress('::ffff:203.0.113.7', undefined, none)).toBe('203.0.113.7');
    expect(clientAddress(undefined, undefined, parseTrustedProxy('none'))).toBe('unknown');
  });

  it('with trusted proxy addresses/CIDRs, walks X-Forwarded-For from the right past trusted hops only', () => {
    const t = parseTrustedProxy('10.0.0.0/8, 127.0.0.1, fd00::/8');
    // Client -> 10.1.1.1 (proxy) -> 127.0.0.1 (proxy) -> server. The client may write anything on the left.
    expect(clientAddress('127.0.0.1', 'spoofed, 198.51.100.9, 10.1.1.1', t)).toBe('198.51.100.9');
    expect(clientAddress('::ffff:127.0.0.1', ['198.51.100.9', '10.1.1.1'], t)).toBe('198.51.100.9');
    // A peer that is not a trusted proxy cannot name an address.
    expect(clientAddress('192.0.2.1', '198.51.100.9', t)).toBe('192.0.2.1');
    // An untrusted hop in the chain stops the walk there.
    expect(clientAddress('127.0.0.1', '198.51.100.9, 192.0.2.50', t)).toBe('192.0.2.50');
    // Garbage stops it at the last address vouched for.
    expect(clientAddress('127.0.0.1', 'not-an-ip', t)).toBe('127.0.0.1');
    expect(clientAddress('fd00::1', '2001:DB8::5', t)).toBe('2001:db8::5');
  });

  it('with a hop count, trusts exactly that many proxies', () => {
    const one = parseTrustedProxy('1');
    expect(clientAddress('10.0.0.1', 'spoofed-by-client, 198.51.100.9', one)).toBe('198.51.100.9');
    expect(clientAddress('10.0.0.1', '1.2.3.4, 198.51.100.9', parseTrustedProxy('2'))).toBe('1.2.3.4');
    expect(clientAddress('10.0.0.1', undefined, one)).toBe('10.0.0.1');
  });

  it('refuses settings that are not addresses', () => {
    expect(() => parseTrustedProxy('10.0.0.0/33')).toThrow(/prefix length/);
    expect(() => parseTrustedProxy('example.com')).toThrow(/not an IP address/);
    expect(() => parseTrustedProxy('0')).toThrow(/1..16/);
    expect(() => parseTrustedProxy('10.0.0.0/8/1')).toThrow(/not an IP address/);
    expect(normalizeAddress(' ::FFFF:1.2.3.4 ')).toBe('1.2.3.4');
  });
});
