import { forwardRef, useState, type FormEvent, type KeyboardEvent } from 'react';

interface Props {
  /** Read by screen readers as the field's name, e.g. "Message #general". */
  label: string;
  /** False while disconnected: the draft stays, sending waits. */
  canSend: boolean;
  onSend(text: string): boolean;
  onTyping(): void;
}

/** Enter sends, Shift+Enter starts a new line. */
export const Composer = forwardRef<HTMLTextAreaElement, Props>(function Composer(
  { label, canSend, onSend, onTyping },
  ref,
) {
  const [text, setText] = useState('');

  function submit(e?: FormEvent) {
    e?.preventDefault();
    if (!canSend || text.trim() === '') return;
    if (onSend(text)) setText('');
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      submit();
    }
  }

  return (
    <form className="composer" onSubmit={submit}>
      <label htmlFor="composer" className="sr-only">
        {label}
      </label>
      <textarea
        id="composer"
        ref={ref}
        rows={1}
        value={text}
        placeholder={label}
        onChange={(e) => {
          setText(e.target.value);
          if (e.target.value !== '') onTyping();
        }}
        onKeyDown={onKeyDown}
        aria-describedby="composer-hint"
      />
      <span id="composer-hint" className="sr-only">
        Enter sends, Shift+Enter adds a line.{canSend ? '' : ' Not connected: sending waits for the connection.'}
      </span>
      <button type="submit" disabled={!canSend || text.trim() === ''}>
        Send
      </button>
    </form>
  );
});
