import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { Api, ChatClient, type ChannelView, type RoomView } from '../protocol';
import { loadRooms, saveRooms, saveSession, socketUrl, type Session } from '../session';
import { Composer } from './Composer';
import { ConnectionStatus } from './ConnectionStatus';
import { MessageList } from './MessageList';
import { PeopleList } from './PeopleList';
import { Sidebar } from './Sidebar';
import {
  conversationKey,
  conversationTitle,
  peerOf,
  typingText,
  type Conversation,
} from './format';
import { useActivity } from './useActivity';

interface Props {
  session: Session;
  /** `error` says why, when the server refused the session. */
  onSignOut(error?: string): void;
}

export function ChatApp({ session, onSignOut }: Props) {
  const [client] = useState(() => {
    const api = new Api('');
    return new ChatClient({
      url: socketUrl(),
      token: session.token,
      rooms: loadRooms(session.user),
      refreshToken:
        session.mode === 'dev'
          ? async () => {
              const token = await api.devToken(session.user);
              saveSession({ ...session, token });
              return token;
            }
          : undefined,
    });
  });
  useEffect(() => {
    client.start();
    return () => client.stop();
  }, [client]);
  const snap = useSyncExternalStore(client.subscribe, client.getSnapshot);
  const me = snap.user ?? session.user;

  useEffect(() => {
    if (snap.connection.authFailed) {
      onSignOut(`The server refused the sign-in (${snap.connection.reason ?? 'no reason given'}). Sign in again.`);
    }
  }, [snap.connection.authFailed, snap.connection.reason, onSignOut]);

  const roomNames = snap.rooms.map((r) => r.name).join(' ');
  useEffect(() => {
    saveRooms(session.user, roomNames ? roomNames.split(' ') : []);
  }, [session.user, roomNames]);

  const [active, setActive] = useState<Conversation | null>(() => {
    const first = snap.rooms[0];
    return first ? { kind: 'room', name: first.name } : null;
  });
  const [openedPeers, setOpenedPeers] = useState<string[]>([]);
  const [navOpen, setNavOpen] = useState(false);
  const composer = useRef<HTMLTextAreaElement>(null);
  const navToggle = useRef<HTMLButtonElement>(null);
  // Focus the composer when a conversation opens; at start only with a real keyboard
  // around (on a phone, focusing would pop the on-screen keyboard over the page).
  const focusComposer = useRef(typeof matchMedia === 'function' && matchMedia('(pointer: fine)').matches);

  const personal = snap.personal;
  const peers = useMemo(() => {
    const byRecent: string[] = [];
    const msgs = personal?.messages ?? [];
    for (let i = msgs.length - 1; i >= 0; i--) {
      const p = peerOf(msgs[i], me);
      if (!byRecent.includes(p)) byRecent.push(p);
    }
    return [...openedPeers.filter((p) => !byRecent.includes(p)), ...byRecent];
  }, [personal, openedPeers, me]);

  // A room that was left (or failed and was removed) is no longer on screen.
  const activeRoom = active?.kind === 'room' ? snap.rooms.find((r) => r.name === active.name) : undefined;
  useEffect(() => {
    if (active?.kind === 'room' && !activeRoom) {
      const next = snap.rooms[0];
      setActive(next ? { kind: 'room', name: next.name } : null);
    }
  }, [active, activeRoom, snap.rooms]);

  const activeKey = active ? conversationKey(active) : null;
  const { unread, announcement } = useActivity(snap, activeKey);

  useEffect(() => {
    if (focusComposer.current) {
      focusComposer.current = false;
      composer.current?.focus();
    }
  }, [activeKey]);

  // The drawer of conversations on small screens takes the focus while open.
  useEffect(() => {
    if (navOpen) document.querySelector<HTMLElement>('#sidebar button, #sidebar input')?.focus();
  }, [navOpen]);

  function select(c: Conversation) {
    focusComposer.current = true;
    setActive(c);
    setNavOpen(false);
    if (activeKey === conversationKey(c)) composer.current?.focus();
  }

  function openDirect(user: string) {
    setOpenedPeers((p) => (p.includes(user) ? p : [user, ...p]));
    select({ kind: 'dm', peer: user });
  }

  const channel: ChannelView | null = active?.kind === 'room' ? (activeRoom ?? null) : personal;
  const messages = useMemo(() => {
    if (!channel) return [];
    if (active?.kind !== 'dm') return channel.messages;
    return channel.messages.filter((m) => peerOf(m, me) === active.peer);
  }, [channel, active, me]);
  const pending = snap.outbox.filter((o) =>
    active?.kind === 'room'
      ? 'room' in o.target && o.target.room === active.name
      : active?.kind === 'dm' && 'to' in o.target && o.target.to === active.peer,
  );
  const online = snap.connection.status === 'online';
  const canSend = online && (active?.kind === 'dm' || activeRoom?.status === 'joined');
  const title = active ? conversationTitle(active) : 'chat';

  return (
    <div
      className={`app${navOpen ? ' nav-open' : ''}${activeRoom ? ' has-people' : ''}`}
      onKeyDown={(e) => {
        if (e.key === 'Escape' && navOpen) {
          setNavOpen(false);
          navToggle.current?.focus();
        }
      }}
    >
      <header className="topbar">
        <button
          ref={navToggle}
          type="button"
          className="nav-toggle"
          aria-expanded={navOpen}
          aria-controls="sidebar"
          onClick={() => setNavOpen(!navOpen)}
        >
          <span aria-hidden="true">☰</span>
          <span className="sr-only">Conversations</span>
          {Object.keys(unread).length > 0 && <span className="nav-dot" aria-hidden="true" />}
        </button>
        <h1 className="brand">chat</h1>
        <ConnectionStatus connection={snap.connection} onRetry={() => client.reconnectNow()} />
        <div className="me">
          <span className="me-name" title="Signed in as">
            {me}
          </span>
          <button
            type="button"
            className="small"
            onClick={() => {
              client.stop();
              onSignOut();
            }}
          >
            Sign out
          </button>
        </div>
      </header>

      <Sidebar
        id="sidebar"
        rooms={snap.rooms}
        peers={peers}
        active={active}
        unread={unread}
        onSelect={select}
        onJoin={(room) => {
          client.join(room);
          select({ kind: 'room', name: room });
        }}
        onOpenDirect={openDirect}
      />

      <main className="conversation" aria-labelledby="conversation-title">
        <div className="conv-header">
          <h2 id="conversation-title">{title}</h2>
          {activeRoom && (
            <>
              <RoomState room={activeRoom} onRetry={() => client.join(activeRoom.name)} />
              <details className="people-inline">
                <summary>{activeRoom.presence.length} online</summary>
                <PeopleList users={activeRoom.presence} me={me} onMessage={openDirect} />
              </details>
              <button
                type="button"
                className="small"
                onClick={() => {
                  focusComposer.current = true;
                  client.leave(activeRoom.name);
                }}
                aria-label={`Leave #${activeRoom.name}`}
              >
                Leave
              </button>
            </>
          )}
        </div>

        {channel?.notice && (
          <div className="notice" role="alert">
            <p>{channel.notice.text}</p>
            <button
              type="button"
              className="small"
              onClick={() => {
                client.dismissNotice(channel.name);
                composer.current?.focus();
              }}
            >
              Dismiss
            </button>
          </div>
        )}
        {channel?.error && (
          <p className="form-error" role="alert">
            {channel.error}
          </p>
        )}
        {snap.errors.map((e) => (
          <div key={e.id} className="notice notice-error" role="alert">
            <p>{e.text}</p>
            <button type="button" className="small" onClick={() => client.dismissError(e.id)}>
              Dismiss
            </button>
          </div>
        ))}

        {active && channel ? (
          <MessageList
            key={activeKey}
            label={`Messages in ${title}`}
            messages={messages}
            pending={pending}
            me={me}
            hasOlder={channel.hasOlder}
            loadingOlder={channel.loadingOlder}
            onLoadOlder={() => void client.loadOlder(channel.name)}
            onRetry={(cid) => client.retry(cid)}
            onDiscard={(cid) => client.discard(cid)}
          />
        ) : (
          <div className="messages">
            <p className="empty">{active ? 'Connecting…' : 'Join a room or open a direct conversation.'}</p>
          </div>
        )}

        <p className="typing" aria-live="polite">
          {activeRoom ? typingText(activeRoom.typing) : ''}
        </p>
        {active && (
          <Composer
            ref={composer}
            label={`Message ${title}`}
            canSend={canSend}
            onSend={(text) =>
              client.send(active.kind === 'room' ? { room: active.name } : { to: active.peer }, text) !== null
            }
            onTyping={() => active.kind === 'room' && client.typing(active.name)}
          />
        )}
        <div className="sr-only" aria-live="polite" aria-atomic="true">
          {announcement}
        </div>
      </main>

      {activeRoom && (
        <aside className="people" aria-labelledby="people-heading">
          <h2 id="people-heading">Online · {activeRoom.presence.length}</h2>
          <PeopleList users={activeRoom.presence} me={me} onMessage={openDirect} />
        </aside>
      )}
    </div>
  );
}

function RoomState({ room, onRetry }: { room: RoomView; onRetry(): void }) {
  if (room.status === 'joined') return null;
  if (room.status === 'error') {
    return (
      <span className="room-state room-error">
        Could not join: {room.error}{' '}
        <button type="button" className="small" onClick={onRetry}>
          Retry
        </button>
      </span>
    );
  }
  return <span className="room-state">{room.status === 'joining' ? 'joining…' : 'offline'}</span>;
}
