import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeApi, FakeSocket, msg } from '../test/fakes';
import { ChatClient, type ChatClientOptions } from './client';
import type { ServerFrame } from './frames';

let sockets: FakeSocket[];
let api: FakeApi;
let clients: ChatClient[];

function client(options: Partial<ChatClientOptions> = {}) {
  const c = new ChatClient({
    url: 'ws://chat.test/ws',
    token: 'tok',
    rooms: ['general'],
    socket: (url, protocols) => {
      const s = new FakeSocket(url, protocols);
      sockets.push(s);
      return s;
    },
    fetch: api.fetch,
    network: null,
    random: () => 1,
    backoff: { baseMs: 500, maxMs: 8000 },
    pageSize: 3,
    ...options,
  });
  clients.push(c);
  c.start();
  return c;
}

const last = () => sockets[sockets.length - 1];
const texts = (c: ChatClient, room = 'general') =>
  c.getSnapshot().rooms.find((r) => r.name === room)!.messages.map((m) => m.seq);
const room = (c: ChatClient, name = 'general') => c.getSnapshot().rooms.find((r) => r.name === name)!;
/** Lets pending promises (fake fetches) settle. */
const settle = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
  await vi.advanceTimersByTimeAsync(0);
};

/** Opens the socket and plays the server's answers to connect and joins. */
async function connectAndJoin(
  s: FakeSocket,
  joined: Partial<Extract<ServerFrame, { type: 'joined' }>> = {},
  connected: Partial<Extract<ServerFrame, { type: 'connected' }>> = {},
) {
  s.open();
  s.receive({ type: 'connected', user: 'alice', conn: 'c1', channel: '@alice', epoch: 'p1', seq: 0, ...connected });
  s.receive({ type: 'joined', room: 'general', epoch: 'e1', seq: 0, missed: 0, ...joined });
  await settle();
}

/** Opens the socket and answers connect, for a client with no rooms. */
function connectOnly(s: FakeSocket) {
  s.open();
  s.receive({ type: 'connected', user: 'alice', conn: 'c1', channel: '@alice', epoch: 'p1', seq: 0 });
}

beforeEach(() => {
  vi.useFakeTimers();
  sockets = [];
  api = new FakeApi();
  clients = [];
});

afterEach(() => {
  for (const c of clients) c.stop();
  vi.useRealTimers();
});

describe('connecting', () => {
  it('offers chat.v1.msgpack, sends connect first, joins once connected', async () => {
    const c = client();
    expect(sockets).toHaveLength(1);
    const s = last();
    expect(s.protocols).toEqual(['chat.v1.msgpack']);
    expect(s.binaryType).toBe('arraybuffer');
    s.open();
    expect(s.sent).toEqual([{ type: 'connect', token: 'tok' }]);
    expect(c.getSnapshot().connection.status).toBe('connecting');
    s.receive({ type: 'connected', user: 'alice', conn: 'c1', channel: '@alice', epoch: 'p1', seq: 0 });
    expect(s.sent[1]).toEqual({ type: 'join', room: 'general' });
    expect(c.getSnapshot().connection.status).toBe('online');
    expect(c.getSnapshot().user).toBe('alice');
  });

  it('joins and leaves rooms on request', async () => {
    const c = client({ rooms: [] });
    connectOnly(last());
    c.join('random');
    expect(last().sent.at(-1)).toEqual({ type: 'join', room: 'random' });
    expect(room(c, 'random').status).toBe('joining');
    c.leave('random');
    expect(last().sent.at(-1)).toEqual({ type: 'leave', room: 'random' });
    expect(c.getSnapshot().rooms).toHaveLength(0);
    expect(() => c.join('not a room')).toThrow();
  });

  it('follows server-side joins and leaves', async () => {
    const c = client({ rooms: [] });
    connectOnly(last());
    last().receive({ type: 'joined', room: 'announcements', epoch: 'e1', seq: 0, missed: 0 });
    expect(room(c, 'announcements').status).toBe('joined');
    last().receive({ type: 'left', room: 'announcements' });
    expect(c.getSnapshot().rooms).toEqual([]);
  });

  it('shows a join the server refused, and retries it on request', async () => {
    const c = client({ rooms: [] });
    connectOnly(last());
    c.join('private-x');
    last().receive({ type: 'error', code: 'forbidden', message: 'not allowed in room private-x' });
    expect(room(c, 'private-x').status).toBe('error');
    expect(room(c, 'private-x').error).toMatch(/not allowed/);
    c.join('private-x');
    expect(last().sent.at(-1)).toEqual({ type: 'join', room: 'private-x' });
  });
});

describe('reconnect', () => {
  it('backs off exponentially with jitter, and resets after a good connection', async () => {
    const c = client({ random: () => 1 });
    await connectAndJoin(last());
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      const before = sockets.length;
      last().drop(1006);
      const snap = c.getSnapshot().connection;
      expect(snap.status).toBe('reconnecting');
      const delay = snap.retryAt! - Date.now();
      delays.push(delay);
      await vi.advanceTimersByTimeAsync(delay - 1);
      expect(sockets.length).toBe(before);
      await vi.advanceTimersByTimeAsync(1);
      expect(sockets.length).toBe(before + 1);
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 8000]);
    await connectAndJoin(last());
    last().drop(1006);
    expect(c.getSnapshot().connection.retryAt! - Date.now()).toBe(500);
  });

  it('spreads clients out: the delay is random between half the ceiling and the ceiling', async () => {
    const c = client({ random: () => 0 });
    await connectAndJoin(last());
    last().drop(1006);
    expect(c.getSnapshot().connection.retryAt! - Date.now()).toBe(250);
  });

  it('retries at once when the browser comes back online', async () => {
    let listener: (online: boolean) => void = () => {};
    const c = client({ network: { online: () => true, subscribe: (l) => ((listener = l), () => {}) } });
    await connectAndJoin(last());
    last().drop(1006);
    expect(sockets).toHaveLength(1);
    listener(true);
    expect(sockets).toHaveLength(2);
    expect(c.getSnapshot().connection.status).toBe('connecting');
  });

  it('follows the server draining: reconnect after the delay it names', async () => {
    const c = client({ random: () => 0 });
    await connectAndJoin(last());
    last().receive({ type: 'reconnect', after_ms: 3000 });
    expect(last().closedWith).toBe(1000);
    expect(c.getSnapshot().connection.status).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(2999);
    expect(sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sockets).toHaveLength(2);
  });

  it('gives up when the connection does not come up in time, and tries again', async () => {
    client({ connectTimeoutMs: 5000 });
    last().open();
    await vi.advanceTimersByTimeAsync(5000);
    expect(sockets[0].closedWith).not.toBeNull();
    await vi.advanceTimersByTimeAsync(500);
    expect(sockets).toHaveLength(2);
  });

  it('notices a dead connection by its silence: ping, then reconnect', async () => {
    const c = client({ pingEveryMs: 10_000, pongTimeoutMs: 4000 });
    await connectAndJoin(last());
    await vi.advanceTimersByTimeAsync(10_000);
    expect(last().sent.at(-1)).toEqual({ type: 'ping' });
    last().receive({ type: 'pong' });
    await vi.advanceTimersByTimeAsync(4000);
    expect(c.getSnapshot().connection.status).toBe('online');
    // Silence: the next ping goes unanswered and the client moves to a new socket.
    await vi.advanceTimersByTimeAsync(20_000);
    expect(sockets).toHaveLength(2);
    expect(sockets[0].closedWith).not.toBeNull();
  });

  it('renews a refused dev token once, then asks to sign in again', async () => {
    const refreshToken = vi.fn(async () => 'tok2');
    const c = client({ refreshToken });
    last().open();
    last().receive({ type: 'error', code: 'unauthorized', message: 'token expired' });
    last().drop(1008);
    await settle();
    expect(refreshToken).toHaveBeenCalledTimes(1);
    expect(sockets).toHaveLength(2);
    last().open();
    expect(last().sent[0]).toEqual({ type: 'connect', token: 'tok2' });
    last().receive({ type: 'error', code: 'unauthorized', message: 'still bad' });
    last().drop(1008);
    await settle();
    expect(refreshToken).toHaveBeenCalledTimes(1);
    const conn = c.getSnapshot().connection;
    expect(conn.status).toBe('stopped');
    expect(conn.authFailed).toBe(true);
    expect(conn.reason).toBe('still bad');
  });
});

describe('recovery', () => {
  it('rejoins with since and shows missed messages once, in order', async () => {
    const c = client();
    await connectAndJoin(last());
    for (const s of [1, 2, 3]) last().receive({ type: 'message', ...msg('general', s) });
    last().drop(1006);
    await vi.advanceTimersByTimeAsync(500);
    const s = last();
    s.open();
    s.receive({ type: 'connected', user: 'alice', conn: 'c2', channel: '@alice', epoch: 'p1', seq: 0, missed: 0, recovered: true });
    expect(s.sent).toContainEqual({ type: 'join', room: 'general', since: { epoch: 'e1', seq: 3 } });
    s.receive({ type: 'joined', room: 'general', epoch: 'e1', seq: 6, missed: 3, recovered: true });
    // The recovered messages, a duplicate of one the client had, and a live one.
    for (const seq of [4, 3, 5, 6, 6, 7]) s.receive({ type: 'message', ...msg('general', seq) });
    await settle();
    expect(texts(c)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(room(c).notice).toBeNull();
    // Nothing was reloaded over HTTP.
    expect(api.calls.filter((u) => u.includes('/general/messages'))).toHaveLength(0);
  });

  it('recovered:false: a visible notice and history reloaded over HTTP', async () => {
    const c = client();
    await connectAndJoin(last());
    for (const s of [1, 2]) last().receive({ type: 'message', ...msg('general', s) });
    last().drop(1006);
    await vi.advanceTimersByTimeAsync(500);
    api.set('general', 'e1', [2000, 2001, 2002, 2003, 2004]);
    await connectAndJoin(last(), { seq: 2004, missed: 0, recovered: false });
    const r = room(c);
    expect(r.notice?.text).toMatch(/could not be recovered/);
    // The newest page (3 messages, pageSize 3) replaces what was held; no hole between.
    expect(texts(c)).toEqual([2002, 2003, 2004]);
    expect(r.hasOlder).toBe(true);
    last().receive({ type: 'message', ...msg('general', 2005) });
    expect(texts(c)).toEqual([2002, 2003, 2004, 2005]);
    await c.loadOlder('general');
    expect(texts(c)).toEqual([2000, 2001, 2002, 2003, 2004, 2005]);
    c.dismissNotice('general');
    expect(room(c).notice).toBeNull();
  });

  it('an epoch change (history lost on the server) reloads, with a notice', async () => {
    const c = client();
    await connectAndJoin(last());
    for (const s of [1, 2, 3]) last().receive({ type: 'message', ...msg('general', s) });
    last().drop(1006);
    await vi.advanceTimersByTimeAsync(500);
    api.set('general', 'e2', [1]);
    // A server may even claim recovered:true; a different epoch still means reload.
    await connectAndJoin(last(), { epoch: 'e2', seq: 1, missed: 0, recovered: true });
    expect(room(c).notice?.text).toMatch(/lost this channel's history/);
    expect(room(c).epoch).toBe('e2');
    expect(room(c).messages.map((m) => [m.epoch, m.seq])).toEqual([['e2', 1]]);
  });

  it('a live message of a new epoch also reloads', async () => {
    const c = client();
    await connectAndJoin(last());
    last().receive({ type: 'message', ...msg('general', 1) });
    api.set('general', 'e9', [1, 2]);
    last().receive({ type: 'message', ...msg('general', 3, { epoch: 'e9' }) });
    await settle();
    expect(room(c).notice).not.toBeNull();
    expect(room(c).messages.map((m) => [m.epoch, m.seq])).toEqual([
      ['e9', 1],
      ['e9', 2],
      ['e9', 3],
    ]);
  });

  it('fills a hole in the live stream from history before showing what follows', async () => {
    const c = client();
    await connectAndJoin(last());
    last().receive({ type: 'message', ...msg('general', 1) });
    api.set('general', 'e1', [1, 2, 3, 4]);
    last().receive({ type: 'message', ...msg('general', 4) });
    expect(texts(c)).toEqual([1]);
    await settle();
    expect(texts(c)).toEqual([1, 2, 3, 4]);
    expect(api.calls.at(-1)).toContain('since=1');
  });

  it('loads the newest page when joining without since, live messages keep coming', async () => {
    api.set('general', 'e1', [1, 2, 3, 4, 5]);
    const c = client();
    await connectAndJoin(last(), { seq: 5 });
    last().receive({ type: 'message', ...msg('general', 6) });
    expect(texts(c)).toEqual([3, 4, 5, 6]);
    await c.loadOlder('general');
    expect(texts(c)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(room(c).hasOlder).toBe(false);
    expect(api.calls.some((u) => u.includes('before=3&limit=3'))).toBe(true);
  });

  it('recovers the personal channel (direct messages) through connect since', async () => {
    const c = client({ rooms: [] });
    const s = last();
    s.open();
    s.receive({ type: 'connected', user: 'alice', conn: 'c1', channel: '@alice', epoch: 'p1', seq: 0 });
    s.receive({ type: 'message', ...msg('@alice', 1, { epoch: 'p1', to: 'alice' }) });
    s.drop(1006);
    await vi.advanceTimersByTimeAsync(500);
    last().open();
    expect(last().sent[0]).toEqual({ type: 'connect', token: 'tok', since: { epoch: 'p1', seq: 1 } });
    last().receive({ type: 'connected', user: 'alice', conn: 'c2', channel: '@alice', epoch: 'p1', seq: 2, missed: 1, recovered: true });
    last().receive({ type: 'message', ...msg('@alice', 2, { epoch: 'p1', to: 'alice' }) });
    expect(c.getSnapshot().personal!.messages.map((m) => m.seq)).toEqual([1, 2]);
  });
});

describe('sending', () => {
  it('keeps a message pending until it comes back, and shows failures', async () => {
    const c = client();
    await connectAndJoin(last());
    const cid = c.send({ room: 'general' }, 'hello')!;
    expect(last().sent.at(-1)).toEqual({ type: 'send', room: 'general', text: 'hello', cid });
    expect(c.getSnapshot().outbox).toEqual([
      { cid, target: { room: 'general' }, text: 'hello', status: 'sending', error: null },
    ]);
    last().receive({ type: 'ack', cid, room: 'general', seq: 1 });
    last().receive({ type: 'message', ...msg('general', 1, { from: 'alice', cid, text: 'hello' }) });
    expect(c.getSnapshot().outbox).toEqual([]);
    const big = c.send({ room: 'general' }, 'x'.repeat(10))!;
    last().receive({ type: 'error', code: 'too_large', message: 'text is too large', cid: big });
    expect(c.getSnapshot().outbox[0]).toMatchObject({ status: 'failed', error: 'text is too large' });
    const dm = c.send({ to: 'bob' }, 'psst');
    expect(last().sent.at(-1)).toEqual({ type: 'send', to: 'bob', text: 'psst', cid: dm });
  });

  it('does not send while disconnected', async () => {
    const c = client();
    expect(c.send({ room: 'general' }, 'hi')).toBeNull();
  });

  it('a send cut off by a drop is failed only if recovery does not bring it back', async () => {
    const c = client();
    await connectAndJoin(last());
    const lost = c.send({ room: 'general' }, 'lost')!;
    const kept = c.send({ room: 'general' }, 'kept')!;
    last().drop(1006);
    await vi.advanceTimersByTimeAsync(500);
    await connectAndJoin(last(), { seq: 1, missed: 1, recovered: true });
    expect(c.getSnapshot().outbox).toHaveLength(2);
    last().receive({ type: 'message', ...msg('general', 1, { from: 'alice', cid: kept, text: 'kept' }) });
    expect(c.getSnapshot().outbox).toEqual([
      expect.objectContaining({ cid: lost, status: 'failed' }),
    ]);
    c.retry(lost);
    expect(last().sent.at(-1)).toMatchObject({ type: 'send', text: 'lost' });
  });
});

describe('typing and presence', () => {
  it('throttles typing notices to one per interval per room', async () => {
    const c = client({ typingEveryMs: 1500 });
    await connectAndJoin(last());
    const typings = () => last().sent.filter((f) => f.type === 'typing').length;
    for (let i = 0; i < 10; i++) {
      c.typing('general');
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(typings()).toBe(1);
    await vi.advanceTimersByTimeAsync(500);
    c.typing('general');
    expect(typings()).toBe(2);
    // After sending a message the next keystroke announces again at once.
    c.send({ room: 'general' }, 'done');
    c.typing('general');
    expect(typings()).toBe(3);
    // Not in a room that is not joined.
    c.typing('elsewhere');
    expect(typings()).toBe(3);
  });

  it('shows who is typing until it expires or their message arrives', async () => {
    const c = client({ typingShowMs: 4000 });
    await connectAndJoin(last());
    last().receive({ type: 'typing', room: 'general', user: 'bob' });
    last().receive({ type: 'typing', room: 'general', user: 'alice' }); // our own: ignored
    expect(room(c).typing).toEqual(['bob']);
    await vi.advanceTimersByTimeAsync(4000);
    expect(room(c).typing).toEqual([]);
    last().receive({ type: 'typing', room: 'general', user: 'bob' });
    last().receive({ type: 'message', ...msg('general', 1) });
    expect(room(c).typing).toEqual([]);
  });

  it('loads presence after joining and applies join/leave frames, also during the load', async () => {
    api.presence.set('general', ['alice', 'carol']);
    const c = client();
    const s = last();
    s.open();
    s.receive({ type: 'connected', user: 'alice', conn: 'c1', channel: '@alice', epoch: 'p1', seq: 0 });
    s.receive({ type: 'joined', room: 'general', epoch: 'e1', seq: 0, missed: 0 });
    // Before the HTTP answer arrives:
    s.receive({ type: 'presence', room: 'general', user: 'bob', event: 'join' });
    s.receive({ type: 'presence', room: 'general', user: 'carol', event: 'leave' });
    await settle();
    expect(room(c).presence).toEqual(['alice', 'bob']);
    s.receive({ type: 'presence', room: 'general', user: 'dave', event: 'join' });
    expect(room(c).presence).toEqual(['alice', 'bob', 'dave']);
  });
});

describe('snapshots', () => {
  it('are stable between changes and notify subscribers', async () => {
    const c = client();
    const listener = vi.fn();
    const unsubscribe = c.subscribe(listener);
    const a = c.getSnapshot();
    expect(c.getSnapshot()).toBe(a);
    await connectAndJoin(last());
    expect(listener).toHaveBeenCalled();
    const b = c.getSnapshot();
    expect(b).not.toBe(a);
    last().receive({ type: 'pong' });
    expect(c.getSnapshot()).toBe(b);
    unsubscribe();
  });
});
