import { decode, encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, ROOM_NAME, USER_ID } from './frames';

describe('encodeFrame', () => {
  it('writes one MessagePack map with string keys, as the server reads them', () => {
    const bytes = encodeFrame({ type: 'join', room: 'general', since: { epoch: 'e1', seq: 4 } });
    // fixmap of 3 entries whose first key is "type"
    expect(bytes[0]).toBe(0x83);
    expect(decode(bytes)).toEqual({ type: 'join', room: 'general', since: { epoch: 'e1', seq: 4 } });
  });

  it('leaves absent optional fields out instead of sending nil', () => {
    const bytes = encodeFrame({ type: 'join', room: 'general', since: undefined });
    expect(decode(bytes)).toEqual({ type: 'join', room: 'general' });
    expect(bytes[0]).toBe(0x82);
  });

  it('encodes every client frame type', () => {
    const frames = [
      { type: 'connect', token: 't.o.k' },
      { type: 'leave', room: 'r' },
      { type: 'send', to: 'bob', text: 'hi ✓', cid: 'c1' },
      { type: 'typing', room: 'r' },
      { type: 'ping' },
    ] as const;
    for (const f of frames) expect(decode(encodeFrame(f))).toEqual(f);
  });
});

describe('decodeFrame', () => {
  const message = {
    type: 'message',
    room: 'general',
    seq: 7,
    epoch: 'abc',
    from: 'alice',
    text: 'hello',
    ts: 1_700_000_000_000,
    cid: 'c1',
  };

  it('reads binary MessagePack frames (ArrayBuffer or a view)', () => {
    const bytes = encode(message);
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    expect(decodeFrame(buffer)).toEqual(message);
    const padded = new Uint8Array(bytes.length + 3);
    padded.set(bytes, 3);
    expect(decodeFrame(new Uint8Array(padded.buffer, 3))).toEqual(message);
  });

  it('reads text JSON frames too (a server that did not agree on MessagePack)', () => {
    expect(decodeFrame('{"type":"pong"}')).toEqual({ type: 'pong' });
  });

  it('keeps fields it does not know (newer servers add fields)', () => {
    expect(decodeFrame(encode({ type: 'pong', extra: [1, 2] }))).toEqual({ type: 'pong', extra: [1, 2] });
  });

  it('ignores garbage, non-maps and unknown frame types', () => {
    expect(decodeFrame(new Uint8Array([0xc1, 0xff]))).toBeNull();
    expect(decodeFrame(encode([1, 2, 3]))).toBeNull();
    expect(decodeFrame(encode({ type: 'dance' }))).toBeNull();
    expect(decodeFrame(encode({ room: 'r' }))).toBeNull();
    expect(decodeFrame('{not json')).toBeNull();
  });
});

describe('names', () => {
  it('match the contract', () => {
    expect(ROOM_NAME.test('team:eng-1.x_y')).toBe(true);
    expect(ROOM_NAME.test('no spaces')).toBe(false);
    expect(ROOM_NAME.test('x'.repeat(65))).toBe(false);
    expect(USER_ID.test('alice.b-c_d')).toBe(true);
    expect(USER_ID.test('a:b')).toBe(false);
  });
});
