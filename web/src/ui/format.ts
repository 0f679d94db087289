import type { Message } from '../protocol';

const time = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayTime = new Intl.DateTimeFormat(undefined, {
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
});

/** "14:05" today, "Mar 3, 14:05" on other days. */
export function formatTime(ts: number, now = Date.now()): string {
  const d = new Date(ts);
  return d.toDateString() === new Date(now).toDateString() ? time.format(d) : dayTime.format(d);
}

/** The other side of a direct message on `me`'s personal channel. */
export function peerOf(m: Message, me: string): string {
  return m.from === me ? (m.to ?? me) : m.from;
}

export type Conversation = { kind: 'room'; name: string } | { kind: 'dm'; peer: string };

export function conversationKey(c: Conversation): string {
  return c.kind === 'room' ? `room:${c.name}` : `dm:${c.peer}`;
}

export function conversationTitle(c: Conversation): string {
  return c.kind === 'room' ? `#${c.name}` : `@${c.peer}`;
}

/** "bob is typing…", "bob and carol are typing…", "4 people are typing…". */
export function typingText(users: readonly string[]): string {
  if (users.length === 0) return '';
  if (users.length === 1) return `${users[0]} is typing…`;
  if (users.length === 2) return `${users[0]} and ${users[1]} are typing…`;
  return `${users.length} people are typing…`;
}
