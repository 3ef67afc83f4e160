import * as parser from 'socket.io-parser';

/**
 * Binary attachments of one socket.io packet wait in the decoder until the last one arrives. The most any
 * message of ours carries is six (secagg:keys with an attestation: cPk, sPk, gPk, idPk, attestation,
 * keysSig); socket.io's default allows ten, each up to --max-message-bytes. Six is the cap here, and
 * socket.ts bounds the bytes a socket may leave pending to one message.
 */
export const MAX_ATTACHMENTS = 6;

class BoundedDecoder extends parser.Decoder {
  constructor() {
    super({ maxAttachments: MAX_ATTACHMENTS });
  }
}

/** The `parser` option of socket.io's Server: the stock encoder, a decoder with the attachment cap. */
export const boundedParser = { ...parser, Decoder: BoundedDecoder };

/**
 * Tracks the attachments a connection has announced but not yet completed, so a socket that announces a
 * packet and streams large binary frames at it (held by the decoder, unseen by event rate limits) is cut
 * off once they exceed one message. Feed it every engine.io message packet; it answers whether the
 * connection is still within budget.
 */
export class PendingAttachments {
  private frames = 0;
  private bytes = 0;

  constructor(private readonly budget: number) {}

  add(data: unknown): boolean {
    if (typeof data === 'string') {
      // A binary event or ack ("5" / "6") announces its attachment count before the "-".
      const m = /^[56](\d+)-/.exec(data);
      this.frames = m ? Number(m[1]) : 0;
      this.bytes = 0;
      return true;
    }
    if (this.frames === 0) return true; // a stray binary frame: the decoder refuses it
    const size = data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data.byteLength : 0;
    this.frames--;
    this.bytes += size;
    if (this.frames === 0) {
      this.bytes = 0; // the packet is complete: the decoder hands it on and lets go of the frames
      return true;
    }
    return this.bytes <= this.budget;
  }
}
