import { BlockList, isIP } from 'node:net';

/**
 * Which proxies may name the client's address in X-Forwarded-For: none (the socket's peer is the client),
 * a number of hops (that many proxies in front of the server), or a list of proxy addresses / CIDRs.
 */
export type TrustedProxy =
  { kind: 'none' } | { kind: 'hops'; hops: number } | { kind: 'list'; list: BlockList };

/** Parses --trusted-proxy: "" / "none", a hop count ("1"), or a comma-separated list of IPs and CIDRs. */
export function parseTrustedProxy(v: string | undefined): TrustedProxy {
  const s = (v ?? '').trim();
  if (s === '' || s === 'none') return { kind: 'none' };
  if (/^\d+$/.test(s)) {
    const hops = Number(s);
    if (hops < 1 || hops > 16) throw new Error(`--trusted-proxy hop count must be in 1..16, got "${s}"`);
    return { kind: 'hops', hops };
  }
  const list = new BlockList();
  for (const part of s.split(',').map((x) => x.trim())) {
    const [ip, bits, extra] = part.split('/');
    const family = isIP(ip);
    if (!family || extra !== undefined)
      throw new Error(`--trusted-proxy: "${part}" is not an IP address or CIDR (e.g. 10.0.0.0/8, ::1)`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(ip, type);
    else {
      const n = Number(bits);
      if (!Number.isInteger(n) || n < 0 || n > (family === 4 ? 32 : 128) || bits.trim() === '')
        throw new Error(`--trusted-proxy: bad prefix length in "${part}"`);
      list.addSubnet(ip, n, type);
    }
  }
  return { kind: 'list', list };
}

/** ::ffff:1.2.3.4 -> 1.2.3.4, so one IPv4 client has one key whichever way the socket reports it. */
export function normalizeAddress(a: string): string {
  const s = a.trim();
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(s);
  return m ? m[1] : s.toLowerCase();
}

function trusted(addr: string, t: Extract<TrustedProxy, { kind: 'list' }>): boolean {
  const family = isIP(addr);
  return family !== 0 && t.list.check(addr, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The client's address: the socket's peer, unless that peer is a trusted proxy, in which case the
 * X-Forwarded-For entries are walked from the right (the entry the nearest proxy appended) past every
 * trusted proxy. Entries left of the first untrusted one are whatever the client wrote, so never used.
 */
export function clientAddress(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  t: TrustedProxy,
): string {
  let addr = normalizeAddress(peer ?? 'unknown');
  if (t.kind === 'none' || forwardedFor === undefined) return addr;
  const chain = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor)
    .split(',')
    .map((x) => normalizeAddress(x))
    .filter((x) => x !== '');
  let hops = t.kind === 'hops' ? t.hops : Infinity;
  while (chain.length > 0 && hops > 0 && (t.kind === 'hops' || trusted(addr, t))) {
    const next = chain.pop()!;
    if (!isIP(next)) break; // garbage in the header: stop at the last address we could vouch for
    addr = next;
    hops--;
  }
  return addr;
}
