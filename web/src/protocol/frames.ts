// The WebSocket frames of PROTOCOL.md §3 and their MessagePack encoding
// (subprotocol `chat.v1.msgpack`: every server frame is one binary MessagePack map).

import { Encoder, decode } from '@msgpack/msgpack';

export const SUBPROTOCOL = 'chat.v1.msgpack';

/** Where a client stopped in a channel: it has every message up to `seq` of `epoch`. */
export interface Since {
  epoch: string;
  seq: number;
}

/** A stored message: the `message` frame, and an item of history. */
export interface Message {
  /** The channel: a room name, or `@user` for a personal channel. */
  room: string;
  seq: number;
  epoch: string;
  from: string;
  text: string;
  /** Milliseconds since the Unix epoch, set by the server. */
  ts: number;
  /** The receiver of a direct message. */
  to?: string;
  cid?: string;
}

export type ClientFrame =
  | { type: 'connect'; token?: string; user?: string; since?: Since }
  | { type: 'join'; room: string; since?: Since }
  | { type: 'leave'; room: string }
  | { type: 'send'; room?: string; to?: string; text: string; cid?: string }
  | { type: 'typing'; room: string }
  | { type: 'ping' };

export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'too_large'
  | 'rate_limited'
  | 'unavailable'
  | 'internal';

export type ServerFrame =
  | {
      type: 'connected';
      user: string;
      conn: string;
      channel: string;
      epoch: string;
      seq: number;
      missed?: number;
      recovered?: boolean;
    }
  | { type: 'joined'; room: string; epoch: string; seq: number; missed: number; recovered?: boolean }
  | { type: 'left'; room: string }
  | ({ type: 'message' } & Message)
  | { type: 'ack'; cid?: string; room: string; seq: number }
  | { type: 'presence'; room: string; user: string; event: 'join' | 'leave' }
  | { type: 'typing'; room: string; user: string }
  | { type: 'reconnect'; after_ms: number }
  | { type: 'pong' }
  | { type: 'error'; code: ErrorCode | string; message: string; cid?: string };

// Absent optional fields are left out rather than sent as nil.
const encoder = new Encoder({ ignoreUndefined: true });

export function encodeFrame(frame: ClientFrame): Uint8Array {
  return encoder.encode(frame);
}

const SERVER_TYPES = new Set([
  'connected',
  'joined',
  'left',
  'message',
  'ack',
  'presence',
  'typing',
  'reconnect',
  'pong',
  'error',
]);

/**
 * Decodes one server frame: binary frames are MessagePack, text frames JSON (what the
 * server sends when the subprotocol was not agreed). Returns null for anything that is
 * not a map with a known string `type`: newer servers may add frame types.
 */
export function decodeFrame(data: ArrayBuffer | ArrayBufferView | string): ServerFrame | null {
  let value: unknown;
  try {
    if (typeof data === 'string') {
      value = JSON.parse(data);
    } else if (data instanceof ArrayBuffer) {
      value = decode(new Uint8Array(data));
    } else {
      value = decode(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string' || !SERVER_TYPES.has(type)) return null;
  return value as ServerFrame;
}

export const ROOM_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
export const USER_ID = /^[A-Za-z0-9_.-]{1,64}$/;
