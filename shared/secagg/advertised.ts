import { checkSigningKey, SIGN_PUBLIC_BYTES, type SigningKeyProblem } from './consistency.ts';
import { checkPublicKey, KEY_BYTES, type KeyProblem } from './keys.ts';

/** cPk ‖ sPk ‖ gPk of one key advertisement, as the server's key-check worker packs them. */
export const ADVERTISED_KEY_BYTES = 2 * KEY_BYTES + SIGN_PUBLIC_BYTES;

/** An advertisement's three public keys. */
export type AdvertisedKeys = readonly [cPk: Uint8Array, sPk: Uint8Array, gPk: Uint8Array];

/** cPk ‖ sPk ‖ gPk in one new buffer of ADVERTISED_KEY_BYTES (lengths checked by the caller). */
export function packAdvertised([cPk, sPk, gPk]: AdvertisedKeys): Uint8Array {
  const b = new Uint8Array(ADVERTISED_KEY_BYTES);
  b.set(cPk, 0);
  b.set(sPk, KEY_BYTES);
  b.set(gPk, 2 * KEY_BYTES);
  return b;
}

/** The three keys of one packed advertisement, as views into it. */
export function unpackAdvertised(b: Uint8Array): AdvertisedKeys {
  return [
    b.subarray(0, KEY_BYTES),
    b.subarray(KEY_BYTES, 2 * KEY_BYTES),
    b.subarray(2 * KEY_BYTES, 2 * KEY_BYTES + SIGN_PUBLIC_BYTES),
  ];
}

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
