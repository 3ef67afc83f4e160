import type { RejectReason } from '../shared/protocol/messages.ts';

/** Thrown back to the transport so it can tell the client and count the reason. */
export class Rejected extends Error {
  constructor(
    readonly reason: RejectReason,
    message: string,
  ) {
    super(message);
  }
}
