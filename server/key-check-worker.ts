import { ADVERTISED_KEY_BYTES, advertisedKeyProblem } from '../shared/secagg/advertised.ts';
import { SIGN_PUBLIC_BYTES } from '../shared/secagg/consistency.ts';
import { KEY_BYTES } from '../shared/secagg/keys.ts';
import { serveJobs } from './job-thread.ts';

/** Worker-thread entry (key-check.ts): for each cPk ‖ sPk ‖ gPk, 1 when the session's check passes. */
serveJobs(
  async (keys: Uint8Array) => {
    const n = keys.length / ADVERTISED_KEY_BYTES;
    const ok = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const at = i * ADVERTISED_KEY_BYTES;
      const cPk = keys.subarray(at, at + KEY_BYTES);
      const sPk = keys.subarray(at + KEY_BYTES, at + 2 * KEY_BYTES);
      const gPk = keys.subarray(at + 2 * KEY_BYTES, at + 2 * KEY_BYTES + SIGN_PUBLIC_BYTES);
      ok[i] = advertisedKeyProblem(cPk, sPk, gPk) === null ? 1 : 0;
    }
    return ok;
  },
  (ok) => [ok.buffer as ArrayBuffer],
);
