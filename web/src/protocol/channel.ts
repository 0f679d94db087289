// One channel's messages as the client shows them: always a gapless run of seqs
// [first, head] of one epoch, so the list can never show a duplicate or hide a hole.
// Live messages extend it at the top, history pages at the bottom; whatever arrives past
// a hole waits until the hole is filled.

import type { Message, Since } from './frames';

/** What `add` did with a message. */
export type AddResult =
  /** Appended (and possibly released messages that were waiting behind it). */
  | 'added'
  /** Already shown (or older than what is shown): ignored. */
  | 'duplicate'
  /** Newer than head + 1: kept aside until the messages before it arrive. */
  | 'gap'
  /** Of another epoch: the channel's history was lost; the caller reloads. */
  | 'epoch';

export class ChannelLog {
  /** The epoch of everything held; null before the first join. */
  epoch: string | null = null;
  /** Ascending, gapless: seqs first … head. */
  messages: readonly Message[] = [];
  /** Every message up to this seq has been received (or lies before `first`). */
  head = 0;
  /** The oldest seq held; head + 1 while nothing is held. */
  first = 1;
  /** Whether history before `first` may still be loaded. */
  hasOlder = false;
  /** Bumped on every reset, so that a reply to an older request can be recognised. */
  generation = 0;
  private waiting = new Map<number, Message>();

  /** What to hand back in `join … since` (or `connect … since`). */
  since(): Since | undefined {
    return this.epoch === null ? undefined : { epoch: this.epoch, seq: this.head };
  }

  /**
   * Starts over at a channel head (from `joined`/`connected`, or a history reply): nothing
   * held, so nothing can be wrong; live messages after `head` follow, older ones load.
   */
  resetTo(epoch: string, head: number): void {
    this.epoch = epoch;
    this.head = head;
    this.first = head + 1;
    this.messages = [];
    this.hasOlder = head > 0;
    this.waiting.clear();
    this.generation += 1;
  }

  /** Adds a live (or recovered, or repaired) message. */
  add(m: Message): AddResult {
    if (this.epoch === null || m.epoch !== this.epoch) return 'epoch';
    if (m.seq <= this.head) return 'duplicate';
    if (m.seq > this.head + 1) {
      if (this.waiting.has(m.seq)) return 'duplicate';
      this.waiting.set(m.seq, m);
      return 'gap';
    }
    const run: Message[] = [m];
    this.head = m.seq;
    for (let next = this.waiting.get(this.head + 1); next; next = this.waiting.get(this.head + 1)) {
      this.waiting.delete(next.seq);
      run.push(next);
      this.head = next.seq;
    }
    this.messages = [...this.messages, ...run];
    return 'added';
  }

  /** True while messages wait behind a hole after `head`. */
  hasGap(): boolean {
    return this.waiting.size > 0;
  }

  /**
   * Adds a page of older history (any order). Only the run that continues downwards
   * from `first` is kept; `full` says the server may hold more before it.
   * Returns 'epoch' (and keeps nothing) when the page is of another epoch.
   */
  prependOlder(page: readonly Message[], epoch: string, full: boolean): 'added' | 'epoch' {
    if (epoch !== this.epoch) return 'epoch';
    const bySeq = new Map(page.filter((m) => m.epoch === epoch).map((m) => [m.seq, m]));
    const older: Message[] = [];
    for (let s = this.first - 1; s >= 1 && bySeq.has(s); s--) older.push(bySeq.get(s)!);
    older.reverse();
    if (older.length > 0) {
      this.messages = [...older, ...this.messages];
      this.first -= older.length;
    }
    // A short page, or one that does not reach down to us, is where history ends.
    this.hasOlder = this.first > 1 && full && older.length === page.length && older.length > 0;
    return 'added';
  }
}
