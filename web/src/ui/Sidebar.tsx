import { useId, useState, type FormEvent } from 'react';
import { ROOM_NAME, USER_ID, type RoomView } from '../protocol';
import { conversationKey, type Conversation } from './format';

interface Props {
  id: string;
  rooms: readonly RoomView[];
  peers: readonly string[];
  active: Conversation | null;
  unread: Record<string, number>;
  onSelect(c: Conversation): void;
  onJoin(room: string): void;
  onOpenDirect(user: string): void;
}

/** Rooms and direct conversations, each with a small form to add one. */
export function Sidebar({ id, rooms, peers, active, unread, onSelect, onJoin, onOpenDirect }: Props) {
  const activeKey = active ? conversationKey(active) : null;
  return (
    <nav id={id} className="sidebar" aria-label="Conversations">
      <h2 id="rooms-heading">Rooms</h2>
      <ul aria-labelledby="rooms-heading" className="conv-list">
        {rooms.map((r) => (
          <ConvItem
            key={r.name}
            c={{ kind: 'room', name: r.name }}
            label={`#${r.name}`}
            activeKey={activeKey}
            unread={unread}
            extra={r.status === 'error' ? 'error' : r.status === 'joined' ? null : 'joining'}
            onSelect={onSelect}
          />
        ))}
      </ul>
      <AddForm
        label="Join a room"
        button="Join"
        placeholder="room name"
        pattern={ROOM_NAME}
        invalid="Room names are 1 to 64 letters, digits and . _ : -"
        onSubmit={onJoin}
      />
      <h2 id="dm-heading">Direct messages</h2>
      {peers.length > 0 && (
        <ul aria-labelledby="dm-heading" className="conv-list">
          {peers.map((p) => (
            <ConvItem
              key={p}
              c={{ kind: 'dm', peer: p }}
              label={`@${p}`}
              activeKey={activeKey}
              unread={unread}
              extra={null}
              onSelect={onSelect}
            />
          ))}
        </ul>
      )}
      <AddForm
        label="Message a user"
        button="Open"
        placeholder="user name"
        pattern={USER_ID}
        invalid="User names are 1 to 64 letters, digits and . _ -"
        onSubmit={onOpenDirect}
      />
    </nav>
  );
}

function ConvItem({
  c,
  label,
  activeKey,
  unread,
  extra,
  onSelect,
}: {
  c: Conversation;
  label: string;
  activeKey: string | null;
  unread: Record<string, number>;
  extra: string | null;
  onSelect(c: Conversation): void;
}) {
  const key = conversationKey(c);
  const count = unread[key] ?? 0;
  return (
    <li>
      <button
        type="button"
        className="conv"
        aria-current={key === activeKey ? 'page' : undefined}
        onClick={() => onSelect(c)}
      >
        <span className="conv-name">{label}</span>
        {extra && <span className="conv-extra">{extra}</span>}
        {count > 0 && (
          <span className="badge">
            {count}
            <span className="sr-only"> unread</span>
          </span>
        )}
      </button>
    </li>
  );
}

function AddForm({
  label,
  button,
  placeholder,
  pattern,
  invalid,
  onSubmit,
}: {
  label: string;
  button: string;
  placeholder: string;
  pattern: RegExp;
  invalid: string;
  onSubmit(value: string): void;
}) {
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | null>(null);
  const inputId = useId();
  const errorId = useId();

  function submit(e: FormEvent) {
    e.preventDefault();
    const v = value.trim().replace(/^[#@]/, '');
    if (!pattern.test(v)) {
      setError(invalid);
      return;
    }
    setError(null);
    setValue('');
    onSubmit(v);
  }

  return (
    <form className="add-form" onSubmit={submit} noValidate>
      <label htmlFor={inputId}>{label}</label>
      <div className="add-row">
        <input
          id={inputId}
          value={value}
          placeholder={placeholder}
          onChange={(e) => setValue(e.target.value)}
          autoCapitalize="none"
          spellCheck={false}
          maxLength={65}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? errorId : undefined}
        />
        <button type="submit">{button}</button>
      </div>
      {error && (
        <p id={errorId} className="form-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
