import { X509Certificate, createPrivateKey } from 'node:crypto';
import { connect, createServer, type Server } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { makeLocalCerts, spkiSha256, type LocalCerts } from './certs.ts';

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A TLS server with `c`'s certificate; resolves with what a client trusting `ca` sees for `servername`. */
async function handshake(c: LocalCerts, ca: string, host: string, servername?: string): Promise<string> {
  const srv = createServer({ cert: c.certPem, key: c.keyPem }, (s) => s.end());
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  return new Promise((resolve) => {
    const s = connect({ host, port, ca, servername }, () => {
      resolve('ok');
      s.end();
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

describe('local CA', () => {
  it('issues an ECDSA P-256 server certificate, signed by the CA, for the default and given names', async () => {
    const now = new Date('2026-01-01T00:00:00Z');
    const c = await makeLocalCerts({ names: ['fl.example.org', '10.0.0.7'], days: 3, now });
    const ca = new X509Certificate(c.caPem);
    const cert = new X509Certificate(c.certPem);
    expect(ca.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails).toMatchObject({ namedCurve: 'prime256v1' });
    expect(cert.subjectAltName).toBe(
      'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:fl.example.org, IP Address:10.0.0.7',
    );
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // serverAuth only
    expect(new Date(cert.validTo).getTime() - now.getTime()).toBe(3 * 24 * 3600_000);
    expect(new Date(cert.validFrom).getTime()).toBeLessThanOrEqual(now.getTime());
    // The key file is the certificate's key.
    expect(cert.checkPrivateKey(createPrivateKey(c.keyPem))).toBe(true);
  });

  it('a client trusting the CA accepts the server by IP and by name; another CA, or another name, is refused', async () => {
    const c = await makeLocalCerts({ names: ['fl.example.org'] });
    const other = await makeLocalCerts();
    expect(await handshake(c, c.caPem, '127.0.0.1')).toBe('ok');
    expect(await handshake(c, c.caPem, '127.0.0.1', 'fl.example.org')).toBe('ok');
    expect(await handshake(c, other.caPem, '127.0.0.1')).toMatch(/UNABLE_TO_VERIFY|SELF_SIGNED|CERT/);
    expect(await handshake(c, c.caPem, '127.0.0.1', 'evil.example.org')).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('each run makes new keys: the SPKI pins differ', async () => {
    const [a, b] = await Promise.all([makeLocalCerts(), makeLocalCerts()]);
    expect(spkiSha256(a.certPem)).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(spkiSha256(a.certPem)).not.toBe(spkiSha256(b.certPem));
    expect(a.caPem).not.toBe(b.caPem);
  });

  it('refuses names that are not DNS names or IPs, and out-of-range validity', async () => {
    await expect(makeLocalCerts({ names: ['bad name'] })).rejects.toThrow(/not a DNS name/);
    await expect(makeLocalCerts({ names: ['a..b'] })).rejects.toThrow(/not a DNS name/);
    await expect(makeLocalCerts({ days: 0 })).rejects.toThrow(/days/);
    await expect(makeLocalCerts({ days: 1000 })).rejects.toThrow(/days/);
  });
});
