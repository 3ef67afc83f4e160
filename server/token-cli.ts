/**
 * npm run token -- --key FILE --origin https://site.example [--ttl 300] [--site ID]
 *   prints one join token for pages of that origin (the site's backend mints one per visitor; see
 *   POST /api/join-token for minting over HTTP).
 * npm run token -- --new-key FILE
 *   writes a new random key (hex, 32 bytes, mode 0600) for --join-token-key / --operator-key.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { mintJoinToken, newTokenKey, parseTokenKey } from './join-token.ts';

const USAGE =
  'usage: npm run token -- --key FILE --origin https://site.example [--ttl SECONDS] [--site ID]\n' +
  '       npm run token -- --new-key FILE';

function main(): void {
  const { values: v } = parseArgs({
    options: {
      key: { type: 'string' },
      origin: { type: 'string' },
      ttl: { type: 'string', default: '300' },
      site: { type: 'string' },
      'new-key': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (v.help) return void console.log(USAGE);
  if (v['new-key']) {
    // 'wx': never overwrite a key in use.
    writeFileSync(v['new-key'], newTokenKey() + '\n', { mode: 0o600, flag: 'wx' });
    return void console.error(`wrote a new key to ${v['new-key']}`);
  }
  if (!v.key || !v.origin) throw new Error('--key and --origin are required');
  const key = parseTokenKey(readFileSync(v.key, 'utf8'), v.key);
  const { token, payload } = mintJoinToken(key, {
    origin: v.origin,
    ttlSeconds: Number(v.ttl),
    site: v.site,
  });
  console.error(`valid until ${new Date(payload.exp * 1000).toISOString()} for ${payload.o}, once`);
  console.log(token);
}

try {
  main();
} catch (e) {
  console.error(`error: ${(e as Error).message}\n${USAGE}`);
  process.exit(2);
}
