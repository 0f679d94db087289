import { useLayoutEffect, useRef } from 'react';
import type { Message, OutboxItem } from '../protocol';
import { formatTime } from './format';

interface Props {
  /** Accessible name of the list, e.g. "Messages in #general". */
  label: string;
  messages: readonly Message[];
  pending: readonly OutboxItem[];
  me: string;
  hasOlder: boolean;
  loadingOlder: boolean;
  onLoadOlder(): void;
  onRetry(cid: string): void;
  onDiscard(cid: string): void;
}

/**
 * The messages of one conversation, oldest first. Stays at the bottom while the reader
 * is there; keeps the reader's place when older history is added above.
 */
export function MessageList({
  label,
  messages,
  pending,
  me,
  hasOlder,
  loadingOlder,
  onLoadOlder,
  onRetry,
  onDiscard,
}: Props) {
  const scroller = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const before = useRef<{ first: number | undefined; height: number }>({ first: undefined, height: 0 });

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const first = messages[0]?.seq;
    const prev = before.current;
    if (prev.first !== undefined && first !== undefined && first < prev.first && !atBottom.current) {
      // History was added above: keep what the reader was looking at in place.
      el.scrollTop += el.scrollHeight - prev.height;
    } else if (atBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
    before.current = { first, height: el.scrollHeight };
  }, [messages, pending]);

  return (
    <div
      className="messages"
      ref={scroller}
      onScroll={(e) => {
        const el = e.currentTarget;
        atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
        before.current.height = el.scrollHeight;
      }}
    >
      {hasOlder ? (
        <button type="button" className="load-older" onClick={onLoadOlder} disabled={loadingOlder}>
          {loadingOlder ? 'Loading older messages…' : 'Load older messages'}
        </button>
      ) : (
        messages.length > 0 && <p className="history-start">Beginning of the history</p>
      )}
      {messages.length === 0 && pending.length === 0 && !hasOlder && !loadingOlder && (
        <p className="empty">No messages yet. Say hello!</p>
      )}
      <ol aria-label={label} className="message-list">
        {messages.map((m) => (
          <li key={m.seq} className={m.from === me ? 'msg own' : 'msg'} data-seq={m.seq}>
            <div className="msg-meta">
              <span className="msg-from">{m.from === me ? 'you' : m.from}</span>
              <time dateTime={new Date(m.ts).toISOString()}>{formatTime(m.ts)}</time>
            </div>
            <p className="msg-text">{m.text}</p>
          </li>
        ))}
        {pending.map((p) => (
          <li key={p.cid} className={`msg own pending ${p.status}`}>
            <div className="msg-meta">
              <span className="msg-from">you</span>
              <span className="msg-state">{p.status === 'sending' ? 'sending…' : 'not sent'}</span>
            </div>
            <p className="msg-text pending-text">{p.text}</p>
            {p.status === 'failed' && (
              <p className="msg-error">
                {p.error}{' '}
                <button type="button" className="small" onClick={() => onRetry(p.cid)}>
                  Retry
                </button>{' '}
                <button type="button" className="small" onClick={() => onDiscard(p.cid)}>
                  Discard
                </button>
              </p>
            )}
          </li>
        ))}
      </ol>
    </div>
  );
}
