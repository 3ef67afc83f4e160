import { ADVERTISED_KEY_BYTES, advertisedKeyProblem, unpackAdvertised } from '../shared/secagg/advertised.ts';
import { serveJobs } from './job-thread.ts';

/** Worker-thread entry (key-check.ts): for each packed cPk ‖ sPk ‖ gPk, 1 when the session's check passes. */
serveJobs(
  async (keys: Uint8Array) => {
    const n = keys.length / ADVERTISED_KEY_BYTES;
    const ok = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const one = keys.subarray(i * ADVERTISED_KEY_BYTES, (i + 1) * ADVERTISED_KEY_BYTES);
      ok[i] = advertisedKeyProblem(...unpackAdvertised(one)) === null ? 1 : 0;
    }
    return ok;
  },
  (ok) => [ok.buffer as ArrayBuffer],
);
