import { checkSigningKey, SIGN_PUBLIC_BYTES } from '../shared/secagg/consistency.ts';
import { checkPublicKey, KEY_BYTES } from '../shared/secagg/keys.ts';
import { serveJobs } from './job-thread.ts';

/** cPk ‖ sPk ‖ gPk, as key-check.ts packs them. */
const STRIDE = 2 * KEY_BYTES + SIGN_PUBLIC_BYTES;

/** Worker-thread entry (key-check.ts): for each cPk ‖ sPk ‖ gPk, 1 when all three keys are fine. */
serveJobs(
  async (keys: Uint8Array) => {
    const n = keys.length / STRIDE;
    const ok = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const k = (j: number): Uint8Array =>
        keys.subarray(i * STRIDE + j * KEY_BYTES, i * STRIDE + (j + 1) * KEY_BYTES);
      ok[i] =
        checkPublicKey(k(0)) === null && checkPublicKey(k(1)) === null && checkSigningKey(k(2)) === null
          ? 1
          : 0;
    }
    return ok;
  },
  (ok) => [ok.buffer as ArrayBuffer],
);
