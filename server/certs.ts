/**
 * A local certificate authority and one server certificate it signs, for HTTPS/WSS in development and
 * tests (`npm run certs`). Node's crypto makes keys but cannot issue X.509 certificates, and no openssl
 * binary is assumed, so the certificates are built with @peculiar/x509 over WebCrypto: ECDSA P-256,
 * short validity, the server certificate limited to serverAuth for its SAN names.
 */
import { webcrypto, X509Certificate as NodeX509, createHash } from 'node:crypto';
import { isIP } from 'node:net';
// @peculiar/x509's dependency injection (tsyringe) needs Reflect metadata before it loads.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG: EcKeyGenParams & EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY_MS = 24 * 3600_000;
/** The names every local certificate carries; the operator adds others (--name). */
export const DEFAULT_NAMES: readonly string[] = ['localhost', '127.0.0.1', '::1'];

export interface CertOptions {
  /** DNS names and IP addresses of the server (its subjectAltName). */
  names?: readonly string[];
  /** Days the server certificate is valid (the CA lasts one day longer). */
  days?: number;
  /** Issue time; tests pin it. */
  now?: Date;
}

/** PEM texts: the CA certificate to trust, the server's certificate and its PKCS#8 private key. */
export interface LocalCerts {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** One SAN name: an IP address or a DNS name (letters, digits, hyphens, dots, an optional leading "*."). */
function checkName(n: string): x509.JsonGeneralName {
  if (isIP(n)) return { type: 'ip', value: n };
  if (
    /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(n) &&
    n.length <= 253
  )
    return { type: 'dns', value: n.toLowerCase() };
  throw new Error(`not a DNS name or IP address: "${n}"`);
}

const toPem = (der: ArrayBuffer, label: string): string =>
  `-----BEGIN ${label}-----\n${Buffer.from(der)
    .toString('base64')
    .replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;

/** A fresh CA (its key is discarded once it has signed) and a server certificate for `names`. */
export async function makeLocalCerts(opts: CertOptions = {}): Promise<LocalCerts> {
  const days = opts.days ?? 7;
  if (!(Number.isInteger(days) && days >= 1 && days <= 398))
    throw new Error(`days must be an integer in 1..398, got ${days}`);
  const names = [...new Set([...DEFAULT_NAMES, ...(opts.names ?? [])])].map(checkName);
  const now = opts.now ?? new Date();
  // Backdated a minute: a client whose clock is slightly behind still accepts it.
  const notBefore = new Date(now.getTime() - 60_000);
  const subtle = webcrypto.subtle;
  const caKeys = (await subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const serverKeys = (await subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;

  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=AegisFL local CA',
    keys: caKeys,
    notBefore,
    notAfter: new Date(now.getTime() + (days + 1) * DAY_MS),
    signingAlgorithm: ALG,
    extensions: [
      // pathLength 0: this CA signs server certificates only, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${names[0].value}`,
    issuer: ca.subject,
    notBefore,
    notAfter: new Date(now.getTime() + days * DAY_MS),
    signingAlgorithm: ALG,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(serverKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  return {
    caPem: ca.toString('pem') + '\n',
    certPem: cert.toString('pem') + '\n',
    keyPem: toPem(await subtle.exportKey('pkcs8', serverKeys.privateKey), 'PRIVATE KEY'),
  };
}

/**
 * base64 SHA-256 of a certificate's SubjectPublicKeyInfo: what chromium's
 * --ignore-certificate-errors-spki-list takes, so a browser trusts exactly this key and no other.
 */
export function spkiSha256(certPem: string): string {
  const spki = new NodeX509(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}
