import { describe, expect, it } from 'vitest';
import { Decoder } from 'socket.io-parser';
import { boundedParser, MAX_ATTACHMENTS, PendingAttachments } from './socket-parser.ts';

describe('PendingAttachments', () => {
  it('lets complete packets through and frees the count when the last attachment arrives', () => {
    const p = new PendingAttachments(1000);
    expect(p.add('51-["update",{"delta":{"_placeholder":true,"num":0}}]')).toBe(true);
    expect(p.add(new Uint8Array(900))).toBe(true); // one attachment: complete
    expect(p.add('52-["secagg:shares",{}]')).toBe(true);
    expect(p.add(new Uint8Array(32))).toBe(true);
    expect(p.add(new Uint8Array(990))).toBe(true); // completes the packet: pending is 0 again
    expect(p.add('2["hello",{}]')).toBe(true);
  });

  it('cuts off a socket whose announced-but-incomplete attachments exceed one message', () => {
    const p = new PendingAttachments(1000);
    expect(p.add('56-["update",{}]')).toBe(true);
    expect(p.add(new Uint8Array(600))).toBe(true);
    expect(p.add(new Uint8Array(600))).toBe(false); // 1200 bytes held for a packet not yet complete (6 announced)
  });
});

describe('boundedParser', () => {
  it(`refuses packets announcing more than ${MAX_ATTACHMENTS} attachments (stock socket.io allows 10)`, () => {
    const bounded = new boundedParser.Decoder();
    expect(() => bounded.add(`5${MAX_ATTACHMENTS + 1}-["update",{}]`)).toThrow(/too many attachments/);
    expect(() => new Decoder().add(`5${MAX_ATTACHMENTS + 1}-["update",{}]`)).not.toThrow();
    expect(() => new boundedParser.Decoder().add(`5${MAX_ATTACHMENTS}-["update",{}]`)).not.toThrow();
  });
});
