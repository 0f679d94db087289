// The protocol client: one WebSocket to `/ws` that stays connected (backoff with jitter,
// heartbeats, the server's `reconnect` hint), rejoins every room with `since` after a
// drop, and keeps each channel's messages gapless and free of duplicates (ChannelLog),
// reloading history over HTTP when the server says it could not recover. No React here:
// the UI subscribes to snapshots.

import { Api, type Fetch } from './api';
import { DEFAULT_BACKOFF, backoffDelay, type BackoffOptions } from './backoff';
import { ChannelLog } from './channel';
import {
  ROOM_NAME,
  SUBPROTOCOL,
  USER_ID,
  decodeFrame,
  encodeFrame,
  type ClientFrame,
  type Message,
  type ServerFrame,
} from './frames';
import { TypingThrottle, TypingUsers } from './typing';

/** The little of a browser WebSocket the client uses (tests pass a fake). */
export interface SocketLike {
  binaryType: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type SocketFactory = (url: string, protocols: string[]) => SocketLike;

/** The browser's idea of the network (`navigator.onLine` and its events). */
export interface NetworkSignals {
  online(): boolean;
  subscribe(listener: (online: boolean) => void): () => void;
}

export interface ChatClientOptions {
  /** `ws://host/ws` or `wss://host/ws`. */
  url: string;
  token: string;
  /** Base of the HTTP API; '' is the page's own origin. */
  apiBase?: string;
  /** Rooms to join once connected. */
  rooms?: string[];
  /** Called when the server rejects the token; a new token to retry with, or null. */
  refreshToken?: () => Promise<string | null>;
  socket?: SocketFactory;
  fetch?: Fetch;
  network?: NetworkSignals | null;
  random?: () => number;
  now?: () => number;
  backoff?: BackoffOptions;
  /** A `ping` goes out after this long without any frame from the server. */
  pingEveryMs?: number;
  /** … and the connection counts as dead when nothing arrives this long after it. */
  pongTimeoutMs?: number;
  /** The WebSocket must open and `connected` arrive within this. */
  connectTimeoutMs?: number;
  /** Messages per history page. */
  pageSize?: number;
  typingEveryMs?: number;
  typingShowMs?: number;
}

export type ConnectionStatus = 'connecting' | 'online' | 'reconnecting' | 'stopped';

export interface ConnectionView {
  status: ConnectionStatus;
  /** Failed attempts in a row. */
  attempt: number;
  /** While reconnecting: when the next attempt starts (ms, the client's clock). */
  retryAt: number | null;
  /** Why the last connection ended, or why the client stopped. */
  reason: string | null;
  /** Stopped because the server refused the credentials: sign in again. */
  authFailed: boolean;
  /** What the browser says about the network. */
  networkOnline: boolean;
}

/** A visible notice that history could not be recovered and was reloaded. */
export interface Notice {
  id: number;
  text: string;
}

export interface ChannelView {
  /** A room name, or `@user` for the personal channel (direct messages). */
  name: string;
  epoch: string | null;
  messages: readonly Message[];
  /** Every message up to this seq has arrived (history before `messages` may load). */
  head: number;
  hasOlder: boolean;
  loadingOlder: boolean;
  notice: Notice | null;
  error: string | null;
}

export type RoomStatus = 'joining' | 'joined' | 'offline' | 'error';

export interface RoomView extends ChannelView {
  status: RoomStatus;
  /** Users online in the room, sorted. */
  presence: readonly string[];
  /** Other users typing in the room, sorted. */
  typing: readonly string[];
}

export type Target = { room: string } | { to: string };

export interface OutboxItem {
  cid: string;
  target: Target;
  text: string;
  /** `sending` until the message comes back; `failed` when it is known not to have. */
  status: 'sending' | 'failed';
  error: string | null;
}

export interface ChatSnapshot {
  user: string | null;
  connection: ConnectionView;
  rooms: readonly RoomView[];
  personal: ChannelView | null;
  outbox: readonly OutboxItem[];
  /** Errors not tied to a room or a message, newest last. */
  errors: readonly { id: number; text: string }[];
}

const NOTICE_RECOVERY =
  'Some messages could not be recovered after the connection dropped: the history below was reloaded from the server.';
const NOTICE_EPOCH =
  "The server lost this channel's history: what is shown below was reloaded from the server.";

class Channel {
  log = new ChannelLog();
  notice: Notice | null = null;
  loadingOlder = false;
  repairing = false;
  error: string | null = null;
  /** Joined with `since` and waiting for the recovered messages up to this seq. */
  recoveringTo: number | null = null;
  version = 0;
  view: ChannelView | RoomView | null = null;
  viewVersion = -1;
  constructor(readonly name: string) {}
}

class Room extends Channel {
  status: RoomStatus = 'offline';
  presence = new Set<string>();
  /** Presence events seen while the presence list loads, replayed on top of it. */
  presenceEvents: { user: string; event: 'join' | 'leave' }[] | null = null;
  typing: TypingUsers;
  sentSince = false;
  constructor(name: string, typingShowMs: number | undefined) {
    super(name);
    this.typing = new TypingUsers(typingShowMs);
  }
}

type Timer = ReturnType<typeof setTimeout>;

function browserNetwork(): NetworkSignals | null {
  if (typeof window === 'undefined' || typeof navigator === 'undefined') return null;
  return {
    online: () => navigator.onLine !== false,
    subscribe(listener) {
      const on = () => listener(true);
      const off = () => listener(false);
      // A tab coming back to the foreground (a phone waking up) may hold a dead socket.
      const visible = () => {
        if (document.visibilityState === 'visible') listener(navigator.onLine !== false);
      };
      window.addEventListener('online', on);
      window.addEventListener('offline', off);
      document.addEventListener('visibilitychange', visible);
      return () => {
        window.removeEventListener('online', on);
        window.removeEventListener('offline', off);
        document.removeEventListener('visibilitychange', visible);
      };
    },
  };
}

export class ChatClient {
  private token: string;
  private readonly api: Api;
  private readonly newSocket: SocketFactory;
  private readonly network: NetworkSignals | null;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly backoff: BackoffOptions;
  private readonly pingEveryMs: number;
  private readonly pongTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly pageSize: number;
  private readonly typingShowMs: number | undefined;
  private readonly typingThrottle: TypingThrottle;

  private socket: SocketLike | null = null;
  private status: ConnectionStatus = 'stopped';
  private attempt = 0;
  private retryAt: number | null = null;
  private reason: string | null = null;
  private authFailed = false;
  private authRefreshed = false;
  /** Set by a `reconnect` frame: the server asked us to come back after this long. */
  private drainAfterMs: number | null = null;
  private lastFrameAt = 0;
  private timers = { retry: null as Timer | null, connect: null as Timer | null };
  private heartbeat: Timer | null = null;
  private deadline: Timer | null = null;
  private typingTimer: Timer | null = null;
  private unsubscribeNetwork: (() => void) | null = null;

  private user: string | null = null;
  private personal: Channel | null = null;
  private personalSentSince = false;
  private rooms = new Map<string, Room>();
  private outbox: OutboxItem[] = [];
  private errors: { id: number; text: string }[] = [];
  private nextId = 1;
  private cidPrefix: string;

  private listeners = new Set<() => void>();
  private snapshot: ChatSnapshot | null = null;

  constructor(private readonly options: ChatClientOptions) {
    this.token = options.token;
    this.api = new Api(options.apiBase ?? '', options.fetch);
    this.newSocket = options.socket ?? ((url, protocols) => new WebSocket(url, protocols) as SocketLike);
    this.network = options.network === undefined ? browserNetwork() : options.network;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.pingEveryMs = options.pingEveryMs ?? 20_000;
    this.pongTimeoutMs = options.pongTimeoutMs ?? 8_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.pageSize = options.pageSize ?? 50;
    this.typingShowMs = options.typingShowMs;
    this.typingThrottle = new TypingThrottle(options.typingEveryMs, this.now);
    this.cidPrefix = Math.floor(this.random() * 36 ** 6).toString(36);
    for (const room of options.rooms ?? []) this.addRoom(room);
  }

  // ---- lifecycle ------------------------------------------------------------------

  /** Connects, and keeps reconnecting until `stop`. */
  start(): void {
    if (this.status !== 'stopped') return;
    this.authFailed = false;
    this.unsubscribeNetwork = this.network?.subscribe((online) => this.onNetwork(online)) ?? null;
    this.open();
  }

  /** Closes the connection for good (sign-out). */
  stop(reason = 'signed out'): void {
    this.unsubscribeNetwork?.();
    this.unsubscribeNetwork = null;
    this.clearTimers();
    this.dropSocket(1000);
    this.status = 'stopped';
    this.reason = reason;
    this.retryAt = null;
    for (const room of this.rooms.values()) this.setOffline(room);
    this.changed();
  }

  /** Retries at once instead of waiting for the backoff delay. */
  reconnectNow(): void {
    if (this.status !== 'reconnecting') return;
    this.open();
  }

  private open(): void {
    this.clearTimers();
    this.dropSocket(1000);
    this.status = 'connecting';
    this.retryAt = null;
    this.drainAfterMs = null;
    this.changed();
    let socket: SocketLike;
    try {
      socket = this.newSocket(this.options.url, [SUBPROTOCOL]);
    } catch (e) {
      this.disconnected(`cannot open a WebSocket: ${(e as Error).message}`);
      return;
    }
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    socket.onopen = () => {
      const since = this.personal?.log.since();
      this.personalSentSince = since !== undefined;
      this.write({ type: 'connect', token: this.token, since });
    };
    socket.onmessage = (ev) => {
      const frame = decodeFrame(ev.data as ArrayBuffer | string);
      this.lastFrameAt = this.now();
      if (this.deadline) {
        clearTimeout(this.deadline);
        this.deadline = null;
      }
      if (frame) this.handle(frame);
    };
    socket.onclose = (ev) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.closed(ev.code, ev.reason);
    };
    socket.onerror = () => {
      // A close event always follows; it carries what can be known.
    };
    this.timers.connect = setTimeout(() => {
      this.timers.connect = null;
      this.dropSocket(4000);
      this.disconnected('the server did not answer in time');
    }, this.connectTimeoutMs);
  }

  private write(frame: ClientFrame): boolean {
    if (!this.socket) return false;
    try {
      this.socket.send(encodeFrame(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** Forgets the current socket without waiting for its close handshake. */
  private dropSocket(code: number): void {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      socket.close(code === 1000 || (code >= 3000 && code < 5000) ? code : 1000);
    } catch {
      // Already closed.
    }
  }

  private closed(code: number, reason: string): void {
    if (this.status === 'stopped') return;
    if (code === 1008) {
      // Bad or expired credentials. A dev-mode session can fetch a new token once (a
      // restarted dev server forgets the tokens it issued); otherwise: sign in again.
      const why = this.reason || reason || 'the server refused the sign-in';
      const refresh = this.options.refreshToken;
      if (!refresh || this.authRefreshed) return this.giveUp(why);
      this.authRefreshed = true;
      this.clearTimers();
      this.status = 'reconnecting';
      this.reason = `${why}: renewing the sign-in`;
      this.changed();
      refresh().then(
        (token) => {
          if (this.status === 'stopped') return;
          if (token) {
            this.token = token;
            this.open();
          } else this.giveUp(why);
        },
        () => this.disconnected('cannot renew the sign-in'),
      );
      return;
    }
    const why =
      code === 1012
        ? 'the server is restarting'
        : code === 1013
          ? 'the connection fell behind'
          : reason || 'the connection was lost';
    this.disconnected(why);
  }

  private giveUp(reason: string): void {
    this.stop(reason);
    this.authFailed = true;
    this.changed();
  }

  /** The connection is gone: wait (backoff with jitter, or as the server asked), retry. */
  private disconnected(reason: string): void {
    if (this.status === 'stopped') return;
    this.clearTimers();
    this.dropSocket(1000);
    for (const room of this.rooms.values()) this.setOffline(room);
    // Sent but not seen back: the recovery that follows tells whether they were stored.
    for (const item of this.outbox) if (item.status === 'sending') this.unconfirmed.add(item.cid);
    const delay =
      this.drainAfterMs !== null
        ? this.drainAfterMs + Math.round(this.random() * Math.min(1000, this.drainAfterMs / 4 + 100))
        : backoffDelay(this.attempt, this.backoff, this.random);
    this.drainAfterMs = null;
    this.attempt += 1;
    this.status = 'reconnecting';
    this.reason = reason;
    this.retryAt = this.now() + delay;
    this.timers.retry = setTimeout(() => {
      this.timers.retry = null;
      this.open();
    }, delay);
    this.changed();
  }

  private clearTimers(): void {
    for (const key of ['retry', 'connect'] as const) {
      const t = this.timers[key];
      if (t) clearTimeout(t);
      this.timers[key] = null;
    }
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.deadline) clearTimeout(this.deadline);
    if (this.typingTimer) clearTimeout(this.typingTimer);
    this.heartbeat = this.deadline = this.typingTimer = null;
  }

  private onNetwork(online: boolean): void {
    if (online && this.status === 'reconnecting' && !this.authFailed) {
      this.open();
      return;
    }
    // The network changed under an open connection: it may be dead without a close.
    if (this.status === 'online') this.probe(3000);
    this.changed();
  }

  /** Sends a `ping`; no frame at all within `timeoutMs` means the connection is dead. */
  private probe(timeoutMs: number): void {
    if (this.deadline || !this.write({ type: 'ping' })) return;
    this.deadline = setTimeout(() => {
      this.deadline = null;
      this.disconnected('the server stopped answering');
    }, timeoutMs);
  }

  // ---- frames ---------------------------------------------------------------------

  private handle(frame: ServerFrame): void {
    switch (frame.type) {
      case 'connected':
        return this.onConnected(frame);
      case 'joined':
        return this.onJoined(frame);
      case 'message':
        return this.onMessage(frame);
      case 'ack':
        return;
      case 'presence': {
        const room = this.rooms.get(frame.room);
        if (!room) return;
        room.presenceEvents?.push({ user: frame.user, event: frame.event });
        if (frame.event === 'join') room.presence.add(frame.user);
        else room.presence.delete(frame.user);
        return this.touch(room);
      }
      case 'typing': {
        const room = this.rooms.get(frame.room);
        if (!room || frame.user === this.user) return;
        room.typing.notice(frame.user, this.now());
        this.scheduleTypingExpiry();
        return this.touch(room);
      }
      case 'reconnect':
        // The server is draining: it closes us shortly; come back after the delay.
        this.drainAfterMs = Math.max(0, frame.after_ms);
        this.dropSocket(1000);
        this.disconnected('the server is restarting');
        return;
      case 'error':
        return this.onError(frame);
      case 'left':
        // Our own leave removed the room already; this is a server-side leave.
        if (this.rooms.delete(frame.room)) this.changed();
        return;
      case 'pong':
        return;
    }
  }

  private onConnected(f: Extract<ServerFrame, { type: 'connected' }>): void {
    if (this.timers.connect) clearTimeout(this.timers.connect);
    this.timers.connect = null;
    this.status = 'online';
    this.attempt = 0;
    this.reason = null;
    this.authRefreshed = false;
    if (this.user !== f.user || !this.personal || this.personal.name !== f.channel) {
      this.user = f.user;
      this.personal = new Channel(f.channel);
      this.personalSentSince = false;
    }
    this.resume(this.personal, this.personalSentSince, f);
    for (const room of this.rooms.values()) this.sendJoin(room);
    this.startHeartbeat();
    this.changed();
  }

  private onJoined(f: Extract<ServerFrame, { type: 'joined' }>): void {
    let room = this.rooms.get(f.room);
    if (!room) {
      // A server-side join (`POST /chat/send` with event join, or the members route).
      room = this.addRoom(f.room);
      room.status = 'joining';
      room.sentSince = false;
    }
    if (room.status !== 'joining') return;
    room.status = 'joined';
    room.error = null;
    this.resume(room, room.sentSince, f);
    void this.loadPresence(room);
    this.touch(room);
  }

  /**
   * After `connected`/`joined`: recovered messages follow when the server honoured our
   * `since`; otherwise start over at the head and reload history, with a notice when
   * something we held could not be recovered.
   */
  private resume(
    channel: Channel,
    sentSince: boolean,
    f: { epoch: string; seq: number; missed?: number; recovered?: boolean },
  ): void {
    const log = channel.log;
    if (sentSince && f.recovered === true && f.epoch === log.epoch) {
      if (log.head < f.seq) channel.recoveringTo = f.seq;
      else this.settleOutbox(channel);
      return;
    }
    if (sentSince) {
      channel.notice = {
        id: this.nextId++,
        text: f.epoch !== log.epoch ? NOTICE_EPOCH : NOTICE_RECOVERY,
      };
    }
    this.reload(channel, f.epoch, f.seq);
  }

  /** Drops what the channel held and loads the newest page of its history. */
  private reload(channel: Channel, epoch: string, head: number): void {
    channel.log.resetTo(epoch, head);
    channel.recoveringTo = null;
    channel.repairing = false;
    channel.loadingOlder = false;
    this.touch(channel);
    void this.loadOlder(channel.name).then(() => this.settleOutbox(channel));
  }

  private onMessage(m: Message): void {
    const channel = this.channel(m.room);
    if (!channel || channel.log.epoch === null) return;
    const result = channel.log.add(m);
    if (result === 'epoch') {
      channel.notice = { id: this.nextId++, text: NOTICE_EPOCH };
      this.reload(channel, m.epoch, m.seq - 1);
      channel.log.add(m);
    } else if (result === 'gap') {
      void this.repair(channel);
    }
    if (channel instanceof Room && (result === 'added' || result === 'epoch')) {
      channel.typing.stopped(m.from);
    }
    if (m.cid && m.from === this.user) {
      this.outbox = this.outbox.filter((o) => o.cid !== m.cid);
      this.unconfirmed.delete(m.cid);
    }
    if (channel.recoveringTo !== null && channel.log.head >= channel.recoveringTo) {
      channel.recoveringTo = null;
      this.settleOutbox(channel);
    }
    this.touch(channel);
  }

  private onError(f: Extract<ServerFrame, { type: 'error' }>): void {
    if (f.cid) {
      const item = this.outbox.find((o) => o.cid === f.cid);
      if (item) {
        item.status = 'failed';
        item.error = f.message;
        this.outbox = [...this.outbox];
        this.changed();
        return;
      }
    }
    if (this.status !== 'online') {
      // The answer to `connect`: the close that follows decides what happens.
      this.reason = f.message;
      this.changed();
      return;
    }
    // Frames are answered in order and only `join` fails without a cid.
    const joining = [...this.rooms.values()].find((r) => r.status === 'joining');
    if (joining) {
      joining.status = 'error';
      joining.error = f.message;
      this.touch(joining);
      return;
    }
    this.errors = [...this.errors.slice(-4), { id: this.nextId++, text: f.message }];
    this.changed();
  }

  private startHeartbeat(): void {
    this.lastFrameAt = this.now();
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = setInterval(
      () => {
        if (this.now() - this.lastFrameAt >= this.pingEveryMs) this.probe(this.pongTimeoutMs);
      },
      Math.max(1000, this.pingEveryMs / 2),
    );
  }

  private scheduleTypingExpiry(): void {
    if (this.typingTimer) clearTimeout(this.typingTimer);
    this.typingTimer = null;
    let next: number | undefined;
    for (const room of this.rooms.values()) {
      const t = room.typing.nextExpiry();
      if (t !== undefined && (next === undefined || t < next)) next = t;
    }
    if (next === undefined) return;
    this.typingTimer = setTimeout(
      () => {
        this.typingTimer = null;
        const now = this.now();
        for (const room of this.rooms.values()) if (room.typing.expire(now)) this.touch(room);
        this.scheduleTypingExpiry();
      },
      Math.max(0, next - this.now()),
    );
  }

  // ---- HTTP: history and presence --------------------------------------------------

  /** Loads the page of history before the oldest message held. */
  async loadOlder(name: string): Promise<void> {
    const channel = this.channel(name);
    if (!channel || channel.loadingOlder || !channel.log.hasOlder || channel.log.epoch === null) return;
    const log = channel.log;
    const generation = log.generation;
    channel.loadingOlder = true;
    channel.error = null;
    this.touch(channel);
    try {
      const page = await this.api.history(this.token, channel.name, {
        before: log.first,
        limit: this.pageSize,
      });
      if (log.generation !== generation) return;
      channel.loadingOlder = false;
      if (log.prependOlder(page.messages, page.epoch, page.messages.length >= this.pageSize) === 'epoch') {
        channel.notice = { id: this.nextId++, text: NOTICE_EPOCH };
        this.reload(channel, page.epoch, page.seq);
        return;
      }
    } catch (e) {
      if (log.generation !== generation) return;
      channel.loadingOlder = false;
      channel.error = `Could not load history: ${(e as Error).message}`;
    }
    this.touch(channel);
  }

  /** Messages wait behind a hole: fetch what is missing from history. */
  private async repair(channel: Channel): Promise<void> {
    if (channel.repairing) return;
    const log = channel.log;
    const generation = log.generation;
    channel.repairing = true;
    try {
      while (log.hasGap() && log.generation === generation) {
        const from = log.head;
        const page = await this.api.history(this.token, channel.name, { since: from, limit: 1000 });
        if (log.generation !== generation) return;
        if (page.epoch !== log.epoch || page.messages[0]?.seq !== from + 1) {
          // Gone from history (or history was lost): start over, visibly.
          channel.notice = {
            id: this.nextId++,
            text: page.epoch !== log.epoch ? NOTICE_EPOCH : NOTICE_RECOVERY,
          };
          this.reload(channel, page.epoch, page.seq);
          return;
        }
        for (const m of page.messages) log.add(m);
        this.touch(channel);
      }
    } catch {
      // The next reconnect recovers with `since` from the same place.
    } finally {
      if (log.generation === generation) channel.repairing = false;
    }
  }

  private async loadPresence(room: Room): Promise<void> {
    room.presenceEvents = [];
    try {
      const users = await this.api.presence(this.token, room.name);
      if (this.rooms.get(room.name) !== room || room.presenceEvents === null) return;
      const presence = new Set(users);
      for (const e of room.presenceEvents) {
        if (e.event === 'join') presence.add(e.user);
        else presence.delete(e.user);
      }
      room.presence = presence;
    } catch {
      // Presence is a hint; the frames keep coming.
    } finally {
      room.presenceEvents = null;
    }
    this.touch(room);
  }

  // ---- commands -------------------------------------------------------------------

  /** Adds a room and joins it (now, or once connected). */
  join(name: string): void {
    if (!ROOM_NAME.test(name)) throw new Error(`not a room name: ${name}`);
    const existing = this.rooms.get(name);
    if (existing) {
      if (existing.status === 'error') {
        existing.status = 'offline';
        if (this.status === 'online') this.sendJoin(existing);
        this.touch(existing);
      }
      return;
    }
    const room = this.addRoom(name);
    if (this.status === 'online') this.sendJoin(room);
    this.changed();
  }

  leave(name: string): void {
    const room = this.rooms.get(name);
    if (!room) return;
    this.rooms.delete(name);
    if (this.status === 'online' && room.status !== 'error') this.write({ type: 'leave', room: name });
    this.outbox = this.outbox.filter((o) => !('room' in o.target && o.target.room === name));
    this.changed();
  }

  /** Sends a message; returns its cid, or null when not connected. */
  send(target: Target, text: string): string | null {
    if (this.status !== 'online' || text.trim() === '') return null;
    if ('to' in target && !USER_ID.test(target.to)) throw new Error(`not a user name: ${target.to}`);
    const cid = `${this.cidPrefix}-${this.nextId++}`;
    const frame: ClientFrame =
      'room' in target
        ? { type: 'send', room: target.room, text, cid }
        : { type: 'send', to: target.to, text, cid };
    if (!this.write(frame)) return null;
    if ('room' in target) this.typingThrottle.reset(target.room);
    this.outbox = [...this.outbox, { cid, target, text, status: 'sending', error: null }];
    this.changed();
    return cid;
  }

  /** Sends a failed message again (with a new cid). */
  retry(cid: string): void {
    const item = this.outbox.find((o) => o.cid === cid);
    if (!item || this.status !== 'online') return;
    this.outbox = this.outbox.filter((o) => o.cid !== cid);
    this.unconfirmed.delete(cid);
    this.send(item.target, item.text);
  }

  discard(cid: string): void {
    this.outbox = this.outbox.filter((o) => o.cid !== cid);
    this.changed();
  }

  /** The user is typing in `room`: tells the others, at most every `typingEveryMs`. */
  typing(room: string): void {
    if (this.status !== 'online' || this.rooms.get(room)?.status !== 'joined') return;
    if (this.typingThrottle.shouldSend(room)) this.write({ type: 'typing', room });
  }

  dismissNotice(name: string): void {
    const channel = this.channel(name);
    if (!channel || !channel.notice) return;
    channel.notice = null;
    this.touch(channel);
  }

  dismissError(id: number): void {
    this.errors = this.errors.filter((e) => e.id !== id);
    this.changed();
  }

  // ---- state ----------------------------------------------------------------------

  private addRoom(name: string): Room {
    const room = new Room(name, this.typingShowMs);
    this.rooms.set(name, room);
    return room;
  }

  private channel(name: string): Channel | undefined {
    if (this.personal && name === this.personal.name) return this.personal;
    return this.rooms.get(name);
  }

  private sendJoin(room: Room): void {
    const since = room.log.since();
    room.sentSince = since !== undefined;
    room.status = 'joining';
    room.error = null;
    this.write({ type: 'join', room: room.name, since });
    this.touch(room);
  }

  private setOffline(room: Room): void {
    if (room.status !== 'error') room.status = 'offline';
    room.typing.clear();
    room.recoveringTo = null;
    this.touch(room);
  }

  /** Sends cut off by a drop that recovery did not bring back are reported failed. */
  private settleOutbox(channel: Channel): void {
    let changed = false;
    for (const item of this.outbox) {
      const name = 'room' in item.target ? item.target.room : this.personal?.name;
      if (name !== channel.name || !this.unconfirmed.has(item.cid)) continue;
      this.unconfirmed.delete(item.cid);
      item.status = 'failed';
      item.error = 'not confirmed: the connection dropped while it was being sent';
      changed = true;
    }
    if (changed) {
      this.outbox = [...this.outbox];
      this.changed();
    }
  }

  /** cids of sends in flight when the connection dropped. */
  private unconfirmed = new Set<string>();

  private touch(channel: Channel): void {
    channel.version += 1;
    this.changed();
  }

  private changed(): void {
    this.snapshot = null;
    for (const listener of this.listeners) listener();
  }

  /** Calls `listener` after every change (a bound function: pass it around freely). */
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  getSnapshot = (): ChatSnapshot => {
    if (this.snapshot) return this.snapshot;
    const now = this.now();
    this.snapshot = {
      user: this.user,
      connection: {
        status: this.status,
        attempt: this.attempt,
        retryAt: this.retryAt,
        reason: this.reason,
        authFailed: this.authFailed,
        networkOnline: this.network ? this.network.online() : true,
      },
      rooms: [...this.rooms.values()].map((room) => this.view(room, now) as RoomView),
      personal: this.personal ? this.view(this.personal, now) : null,
      outbox: this.outbox,
      errors: this.errors,
    };
    return this.snapshot;
  };

  private view(channel: Channel, now: number): ChannelView | RoomView {
    if (channel.view && channel.viewVersion === channel.version) return channel.view;
    const base: ChannelView = {
      name: channel.name,
      epoch: channel.log.epoch,
      messages: channel.log.messages,
      head: channel.log.head,
      hasOlder: channel.log.hasOlder,
      loadingOlder: channel.loadingOlder,
      notice: channel.notice,
      error: channel.error,
    };
    channel.view =
      channel instanceof Room
        ? {
            ...base,
            status: channel.status,
            presence: [...channel.presence].sort(),
            typing: channel.typing.users(now),
          }
        : base;
    channel.viewVersion = channel.version;
    return channel.view;
  }
}
