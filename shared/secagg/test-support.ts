import { ProtocolError } from '../base/errors.ts';

/** For tests: the ProtocolError reason `f` throws, or 'accepted'; any other exception is rethrown. */
export function reason(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof ProtocolError) return e.reason;
    throw e;
  }
  return 'accepted';
}
