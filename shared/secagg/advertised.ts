import { checkSigningKey, SIGN_PUBLIC_BYTES, type SigningKeyProblem } from './consistency.ts';
import { checkPublicKey, KEY_BYTES, type KeyProblem } from './keys.ts';

/** cPk ‖ sPk ‖ gPk of one key advertisement, as the server's key-check worker packs them. */
export const ADVERTISED_KEY_BYTES = 2 * KEY_BYTES + SIGN_PUBLIC_BYTES;

/**
 * What is wrong with an advertisement's three public keys, or null: the check the server session runs at
 * R0 (or, for the same bytes, its key-check worker). The cheap checks (lengths, cPk != sPk) stay in the
 * session.
 */
export function advertisedKeyProblem(
  cPk: Uint8Array,
  sPk: Uint8Array,
  gPk: Uint8Array,
): KeyProblem | SigningKeyProblem | null {
  return checkPublicKey(cPk) ?? checkPublicKey(sPk) ?? checkSigningKey(gPk);
}
