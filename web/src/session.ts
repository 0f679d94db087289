// Who is signed in, kept in localStorage so a reload stays signed in, and the rooms
// each user had open.

export interface Session {
  /** The user id (from the dev sign-in, or the token's `sub`). */
  user: string;
  token: string;
  /** `dev`: the token came from /v1/auth/dev-token and can be renewed the same way. */
  mode: 'dev' | 'jwt';
}

const SESSION_KEY = 'chat.session';
const roomsKey = (user: string) => `chat.rooms.${user}`;
export const DEFAULT_ROOMS = ['general'];

function storage(): Storage | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage;
  } catch {
    return null;
  }
}

export function loadSession(): Session | null {
  try {
    const s = JSON.parse(storage()?.getItem(SESSION_KEY) ?? 'null') as Session | null;
    return s && typeof s.user === 'string' && typeof s.token === 'string' ? s : null;
  } catch {
    return null;
  }
}

export function saveSession(session: Session | null): void {
  if (session) storage()?.setItem(SESSION_KEY, JSON.stringify(session));
  else storage()?.removeItem(SESSION_KEY);
}

export function loadRooms(user: string): string[] {
  try {
    const rooms = JSON.parse(storage()?.getItem(roomsKey(user)) ?? 'null') as unknown;
    return Array.isArray(rooms) ? rooms.filter((r): r is string => typeof r === 'string') : DEFAULT_ROOMS;
  } catch {
    return DEFAULT_ROOMS;
  }
}

export function saveRooms(user: string, rooms: readonly string[]): void {
  storage()?.setItem(roomsKey(user), JSON.stringify(rooms));
}

/** The `sub` claim of a JWT, without verifying it (the server does that). */
export function tokenSubject(token: string): string | null {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    return typeof sub === 'string' ? sub : null;
  } catch {
    return null;
  }
}

/** The WebSocket URL of the server that served this page. */
export function socketUrl(loc: Location = location): string {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}
