// Reconnect delays: exponential backoff with jitter, so that thousands of clients that
// lost the same server do not come back in the same millisecond.

export interface BackoffOptions {
  /** Delay ceiling of the first retry. */
  baseMs: number;
  /** Largest delay ceiling. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 15_000 };

/**
 * The delay before retry number `attempt` (0 for the first): a ceiling that doubles per
 * attempt up to `maxMs`, and a uniformly random delay between half the ceiling and the
 * ceiling ("equal jitter": never a burst of instant retries, still spread out).
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
