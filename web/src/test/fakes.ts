// Stand-ins for the server in unit tests: a WebSocket whose other end the test plays,
// and the HTTP routes the client calls (history and presence).

import { decode, encode } from '@msgpack/msgpack';
import type { SocketLike } from '../protocol/client';
import type { ClientFrame, Message, ServerFrame } from '../protocol/frames';

/** A WebSocket stand-in: records what the client sends, lets the test play the server. */
export class FakeSocket implements SocketLike {
  binaryType = 'blob';
  onopen: SocketLike['onopen'] = null;
  onmessage: SocketLike['onmessage'] = null;
  onclose: SocketLike['onclose'] = null;
  onerror: SocketLike['onerror'] = null;
  sent: ClientFrame[] = [];
  closedWith: number | null = null;
  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {}
  send(data: Uint8Array) {
    this.sent.push(decode(data) as ClientFrame);
  }
  close(code?: number) {
    this.closedWith = code ?? 1000;
  }
  // ---- the server's side ----
  open() {
    this.onopen?.({});
  }
  receive(frame: ServerFrame) {
    const bytes = encode(frame);
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
  drop(code = 1006, reason = '') {
    this.onclose?.({ code, reason });
  }
  types() {
    return this.sent.map((f) => f.type);
  }
}

export const msg = (room: string, seq: number, extra: Partial<Message> = {}): Message => ({
  room,
  seq,
  epoch: 'e1',
  from: 'bob',
  text: `${room} ${seq}`,
  ts: 1_700_000_000_000 + seq,
  ...extra,
});

/** A tiny HTTP server: history per channel, presence per room. */
export class FakeApi {
  history = new Map<string, { epoch: string; messages: Message[] }>();
  presence = new Map<string, string[]>();
  calls: string[] = [];
  fetch = async (input: string): Promise<Response> => {
    this.calls.push(input);
    const url = new URL(input, 'http://chat.test');
    const parts = url.pathname.split('/').map(decodeURIComponent);
    const room = parts[3];
    if (parts[4] === 'presence') {
      return Response.json({ room, users: this.presence.get(room) ?? [] });
    }
    const h = this.history.get(room) ?? { epoch: 'e1', messages: [] };
    const limit = Number(url.searchParams.get('limit') ?? 100);
    const head = h.messages.at(-1)?.seq ?? 0;
    let messages: Message[];
    if (url.searchParams.has('since')) {
      const since = Number(url.searchParams.get('since'));
      messages = h.messages.filter((m) => m.seq > since).slice(0, limit);
    } else {
      const before = Number(url.searchParams.get('before') ?? Infinity);
      messages = h.messages
        .filter((m) => m.seq < before)
        .reverse()
        .slice(0, limit);
    }
    return Response.json({ room, epoch: h.epoch, seq: head, messages });
  };
  set(room: string, epoch: string, seqs: number[]) {
    this.history.set(room, { epoch, messages: seqs.map((s) => msg(room, s, { epoch })) });
  }
}

