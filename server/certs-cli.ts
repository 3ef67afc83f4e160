/**
 * npm run certs -- [--out certs] [--name fl.example.org ...] [--days 7]
 * Writes a fresh local CA (ca.pem) and a server certificate it signs (server.pem, server-key.pem) for
 * localhost, 127.0.0.1, ::1 and every --name. Start the server with
 *   npm start -- --tls-cert certs/server.pem --tls-key certs/server-key.pem
 * and have clients trust ca.pem (Node: NODE_EXTRA_CA_CERTS=certs/ca.pem; chromium: the SPKI hash printed).
 * For local use and tests only: a public deployment uses a certificate from a public CA.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { makeLocalCerts, spkiSha256 } from './certs.ts';

const USAGE = 'usage: npm run certs -- [--out DIR] [--name HOST ...] [--days N]';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: 'certs' },
      name: { type: 'string', multiple: true, default: [] },
      days: { type: 'string', default: '7' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) return void console.log(USAGE);
  const days = Number(values.days);
  const certs = await makeLocalCerts({ names: values.name, days });
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, 'ca.pem'), certs.caPem);
  writeFileSync(join(values.out, 'server.pem'), certs.certPem);
  writeFileSync(join(values.out, 'server-key.pem'), certs.keyPem, { mode: 0o600 });
  console.log(`wrote ${values.out}/ca.pem, server.pem, server-key.pem (valid ${days} days)`);
  console.log(`chromium: --ignore-certificate-errors-spki-list=${spkiSha256(certs.certPem)}`);
}

main().catch((e: Error) => {
  console.error(`error: ${e.message} (${USAGE})`);
  process.exit(2);
});
