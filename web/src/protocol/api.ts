// The HTTP routes the client uses (PROTOCOL.md §4), as JSON.

import type { Message } from './frames';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface HistoryPage {
  room: string;
  epoch: string;
  /** The channel's head when the page was read. */
  seq: number;
  messages: Message[];
}

export type HistoryRange = { before?: number; limit: number } | { since: number; limit: number };

export type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

export class Api {
  constructor(
    private readonly base: string,
    private readonly fetchImpl: Fetch = (input, init) => fetch(input, init),
  ) {}

  private async call<T>(path: string, init: RequestInit): Promise<T> {
    let res: Response;
    try {
      res = await this.fetchImpl(this.base + path, init);
    } catch (e) {
      throw new ApiError(0, 'unavailable', `cannot reach the server (${(e as Error).message})`);
    }
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      const err = (body as { error?: { code?: string; message?: string } } | null)?.error;
      throw new ApiError(res.status, err?.code ?? 'internal', err?.message ?? `HTTP ${res.status}`);
    }
    return body as T;
  }

  /** Dev mode only: a token for any user name. ApiError 404 when dev mode is off. */
  async devToken(user: string): Promise<string> {
    const body = await this.call<{ token: string }>('/v1/auth/dev-token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user }),
    });
    return body.token;
  }

  /** A page of a channel's history: `before` newest first, `since` ascending. */
  history(token: string, channel: string, range: HistoryRange): Promise<HistoryPage> {
    const q = new URLSearchParams();
    if ('since' in range) q.set('since', String(range.since));
    else if (range.before !== undefined) q.set('before', String(range.before));
    q.set('limit', String(range.limit));
    return this.call(`/v1/rooms/${encodeURIComponent(channel)}/messages?${q}`, {
      headers: { authorization: `Bearer ${token}` },
    });
  }

  /** Users with at least one live connection in the room. */
  async presence(token: string, room: string): Promise<string[]> {
    const body = await this.call<{ users: string[] }>(
      `/v1/rooms/${encodeURIComponent(room)}/presence`,
      { headers: { authorization: `Bearer ${token}` } },
    );
    return body.users;
  }
}
