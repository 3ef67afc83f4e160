import type { RejectReason } from '../protocol/messages.ts';

/** A protocol message that breaks the rules; the transport rejects it with this reason and counts it. */
export class SecAggError extends Error {
  constructor(
    readonly reason: RejectReason,
    message: string,
  ) {
    super(message);
  }
}

/** The round cannot complete (too few survivors or shares); no partial result is released. */
export class SecAggAbort extends Error {}
