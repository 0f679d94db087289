// Typing notices: the sender throttles what it sends, the receiver shows a notice for a
// while after the last one. The server forwards at most one per user per room per second.

/** How often a client sends `typing` for one room while the user keeps typing. */
export const TYPING_SEND_EVERY_MS = 1500;
/** How long "bob is typing…" stays after bob's last notice. */
export const TYPING_SHOW_MS = 4000;

/** Decides when a `typing` frame is worth sending: at most once per `everyMs` per room. */
export class TypingThrottle {
  private last = new Map<string, number>();

  constructor(
    private readonly everyMs: number = TYPING_SEND_EVERY_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when a notice for `room` may go out now (and records it). */
  shouldSend(room: string): boolean {
    const t = this.now();
    const last = this.last.get(room);
    if (last !== undefined && t - last < this.everyMs) return false;
    this.last.set(room, t);
    return true;
  }

  /** After a message is sent the next keystroke announces typing again at once. */
  reset(room: string): void {
    this.last.delete(room);
  }
}

/** Who is typing in one room, each until their notice expires. */
export class TypingUsers {
  private until = new Map<string, number>();

  constructor(private readonly showMs: number = TYPING_SHOW_MS) {}

  /** Records a notice; returns the time it expires. */
  notice(user: string, now: number): number {
    const until = now + this.showMs;
    this.until.set(user, until);
    return until;
  }

  /** The user sent a message: they stopped typing it. */
  stopped(user: string): boolean {
    return this.until.delete(user);
  }

  clear(): void {
    this.until.clear();
  }

  /** Drops expired notices; returns whether anything changed. */
  expire(now: number): boolean {
    let changed = false;
    for (const [user, until] of this.until) {
      if (until <= now) {
        this.until.delete(user);
        changed = true;
      }
    }
    return changed;
  }

  /** The users typing at `now`, sorted. */
  users(now: number): string[] {
    return [...this.until]
      .filter(([, until]) => until > now)
      .map(([user]) => user)
      .sort();
  }

  /** The next moment a notice expires, if any. */
  nextExpiry(): number | undefined {
    let next: number | undefined;
    for (const until of this.until.values()) if (next === undefined || until < next) next = until;
    return next;
  }
}
