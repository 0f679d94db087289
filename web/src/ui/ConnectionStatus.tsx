import { useEffect, useState } from 'react';
import type { ConnectionView } from '../protocol';

/** A dot and a word for the connection, with a countdown and "Retry now" while down. */
export function ConnectionStatus({
  connection,
  onRetry,
}: {
  connection: ConnectionView;
  onRetry(): void;
}) {
  const [now, setNow] = useState(Date.now());
  const waiting = connection.status === 'reconnecting' && connection.retryAt !== null;
  useEffect(() => {
    if (!waiting) return;
    const t = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(t);
  }, [waiting]);

  let text: string;
  switch (connection.status) {
    case 'online':
      text = 'Connected';
      break;
    case 'connecting':
      text = connection.attempt > 0 ? 'Reconnecting…' : 'Connecting…';
      break;
    case 'reconnecting': {
      const secs = connection.retryAt ? Math.max(0, Math.ceil((connection.retryAt - now) / 1000)) : 0;
      text = !connection.networkOnline
        ? 'Offline: waiting for the network'
        : secs > 0
          ? `Disconnected: retrying in ${secs} s`
          : 'Reconnecting…';
      break;
    }
    case 'stopped':
      text = 'Disconnected';
      break;
  }
  return (
    <div className={`conn conn-${connection.status}`} data-status={connection.status}>
      <span className="conn-dot" aria-hidden="true" />
      <span role="status" title={connection.reason ?? undefined}>
        {text}
      </span>
      {connection.status === 'reconnecting' && connection.retryAt !== null && (
        <button type="button" className="small" onClick={onRetry}>
          Retry now
        </button>
      )}
    </div>
  );
}
