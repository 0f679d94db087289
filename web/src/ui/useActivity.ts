import { useEffect, useRef, useState } from 'react';
import type { ChatSnapshot } from '../protocol';
import { peerOf } from './format';

interface Activity {
  /** Unread counts by conversation key (`room:general`, `dm:bob`). */
  unread: Record<string, number>;
  /** The latest thing worth announcing to a screen reader. */
  announcement: string;
}

/**
 * Watches live messages from others: counts the ones in conversations not on screen and
 * announces the ones in the open conversation (and direct messages anywhere). History
 * loads and reloads are neither counted nor announced.
 */
export function useActivity(snapshot: ChatSnapshot, activeKey: string | null): Activity {
  const seen = useRef(new Map<string, { epoch: string | null; head: number }>());
  const [activity, setActivity] = useState<Activity>({ unread: {}, announcement: '' });
  const me = snapshot.user;

  useEffect(() => {
    if (!me) return;
    const unread = { ...activity.unread };
    let announcement = activity.announcement;
    let changed = false;
    const channels = [
      ...snapshot.rooms.map((r) => ({ view: r, room: true })),
      ...(snapshot.personal ? [{ view: snapshot.personal, room: false }] : []),
    ];
    for (const { view, room } of channels) {
      // `head` only moves for live (or recovered) messages, never for history pages.
      const prev = seen.current.get(view.name);
      seen.current.set(view.name, { epoch: view.epoch, head: view.head });
      if (!prev || prev.epoch !== view.epoch || view.head <= prev.head) continue;
      const fresh = view.messages.filter((m) => m.seq > prev.head && m.from !== me);
      for (const m of fresh) {
        const key = room ? `room:${view.name}` : `dm:${peerOf(m, me)}`;
        if (key !== activeKey) unread[key] = (unread[key] ?? 0) + 1;
        if (key === activeKey || !room) {
          announcement = room
            ? `${m.from} in #${view.name}: ${m.text}`
            : `Direct message from ${m.from}: ${m.text}`;
        }
        changed = true;
      }
    }
    if (activeKey && unread[activeKey]) {
      delete unread[activeKey];
      changed = true;
    }
    if (changed) setActivity({ unread, announcement });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [snapshot, activeKey, me]);

  return activity;
}
