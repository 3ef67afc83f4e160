/** The embed's client, loaded by the loader (embed.ts) on join(): reads the script tag's data-* attributes. */
import { hexToBytes } from '@noble/hashes/utils.js';
import { join, parseBackends, parseFloors } from './index.ts';
import type { AegisClient } from './client.ts';
import type { ClientAttestation } from '../shared/secagg/client-session.ts';

/** The site's attestation key from the script tag: 64 hex digits, else an error (never silently off). */
function siteKey(hex: string | undefined): Uint8Array | null {
  if (hex === undefined) return null;
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error('data-attestation-key must be 64 hex digits');
  return hexToBytes(hex.toLowerCase());
}

/** data-cpu-share: a number in (0, 1]; absent = 1. */
function cpuShare(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!(v.trim() !== '' && n > 0 && n <= 1)) throw new Error(`data-cpu-share must be in (0, 1], got "${v}"`);
  return n;
}

/** Joins with the tag's floors, backends, CPU share and (when the site attests) the visitor's identity. */
export function joinFromTag(
  dataset: Record<string, string | undefined>,
  serverUrl: string,
  attested?: Omit<ClientAttestation, 'sitePublicKey'>,
): AegisClient {
  const floors = parseFloors(dataset);
  const sitePublicKey = siteKey(dataset.attestationKey);
  if (sitePublicKey && !attested)
    throw new Error('data-attestation-key is set: join({ identity, signature }) with the attested identity');
  if (attested && !sitePublicKey)
    throw new Error('an attested identity needs the site key in data-attestation-key on the script tag');
  const attestation = sitePublicKey && attested ? { ...attested, sitePublicKey } : undefined;
  return join({
    serverUrl,
    source: 'embed',
    backends: parseBackends(dataset.backends),
    floors,
    attestation,
    cpuShare: cpuShare(dataset.cpuShare),
    token: dataset.token || undefined,
    taskHash: dataset.taskHash,
  });
}
