import { describe, expect, it } from 'vitest';
import { ChannelLog } from './channel';
import type { Message } from './frames';

const msg = (seq: number, epoch = 'e1'): Message => ({
  room: 'general',
  seq,
  epoch,
  from: 'alice',
  text: `m${seq}`,
  ts: 1000 + seq,
});
const seqs = (log: ChannelLog) => log.messages.map((m) => m.seq);

describe('ChannelLog', () => {
  it('appends in order and drops duplicates', () => {
    const log = new ChannelLog();
    log.resetTo('e1', 0);
    expect(log.add(msg(1))).toBe('added');
    expect(log.add(msg(2))).toBe('added');
    expect(log.add(msg(2))).toBe('duplicate');
    expect(log.add(msg(1))).toBe('duplicate');
    expect(seqs(log)).toEqual([1, 2]);
    expect(log.since()).toEqual({ epoch: 'e1', seq: 2 });
  });

  it('never shows a hole: later messages wait until the missing one arrives', () => {
    const log = new ChannelLog();
    log.resetTo('e1', 3);
    expect(log.add(msg(5))).toBe('gap');
    expect(log.add(msg(6))).toBe('gap');
    expect(log.add(msg(6))).toBe('duplicate');
    expect(seqs(log)).toEqual([]);
    expect(log.hasGap()).toBe(true);
    expect(log.since()).toEqual({ epoch: 'e1', seq: 3 });
    expect(log.add(msg(4))).toBe('added');
    expect(seqs(log)).toEqual([4, 5, 6]);
    expect(log.hasGap()).toBe(false);
    expect(log.head).toBe(6);
  });

  it('recovery across a reconnect: overlap and replay give each message once, in order', () => {
    const log = new ChannelLog();
    log.resetTo('e1', 0);
    [1, 2, 3].forEach((s) => log.add(msg(s)));
    // Reconnect with since seq 3; the server replays 4..6, a stale live copy of 3 and 5 sneak in.
    for (const s of [3, 4, 5, 5, 6]) log.add(msg(s));
    expect(seqs(log)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('refuses a message of another epoch (history was lost: reload)', () => {
    const log = new ChannelLog();
    log.resetTo('e1', 2);
    expect(log.add(msg(3, 'e2'))).toBe('epoch');
    expect(seqs(log)).toEqual([]);
    expect(new ChannelLog().add(msg(1))).toBe('epoch');
  });

  it('prepends only the run of older history that continues downwards', () => {
    const log = new ChannelLog();
    log.resetTo('e1', 10);
    log.add(msg(11));
    expect(log.hasOlder).toBe(true);
    // A newest-first page of 4 (full): 10, 9, 8, 7.
    log.prependOlder([10, 9, 8, 7].map((s) => msg(s)), 'e1', true);
    expect(seqs(log)).toEqual([7, 8, 9, 10, 11]);
    expect(log.first).toBe(7);
    expect(log.hasOlder).toBe(true);
    // Overlapping and stale entries are ignored; a short page ends the history.
    log.prependOlder([9, 6, 5].map((s) => msg(s)), 'e1', false);
    expect(seqs(log)).toEqual([5, 6, 7, 8, 9, 10, 11]);
    expect(log.hasOlder).toBe(false);
  });

  it('stops paging at a hole in history (trimmed) rather than showing it', () => {
    const log = new ChannelLog();
    log.resetTo('e1', 10);
    log.prependOlder([10, 9, 7, 6].map((s) => msg(s)), 'e1', true);
    expect(seqs(log)).toEqual([9, 10]);
    expect(log.hasOlder).toBe(false);
  });

  it('ends paging at seq 1 and on an empty page', () => {
    const log = new ChannelLog();
    log.resetTo('e1', 2);
    log.prependOlder([2, 1].map((s) => msg(s)), 'e1', true);
    expect(log.hasOlder).toBe(false);
    const empty = new ChannelLog();
    empty.resetTo('e1', 2000);
    empty.prependOlder([], 'e1', false);
    expect(empty.hasOlder).toBe(false);
  });

  it('reports a history page of another epoch and keeps nothing from it', () => {
    const log = new ChannelLog();
    log.resetTo('e1', 5);
    expect(log.prependOlder([msg(5, 'e2')], 'e2', false)).toBe('epoch');
    expect(seqs(log)).toEqual([]);
  });

  it('resets to a new head with a new generation', () => {
    const log = new ChannelLog();
    log.resetTo('e1', 0);
    log.add(msg(1));
    const g = log.generation;
    log.resetTo('e2', 40);
    expect(log.generation).toBe(g + 1);
    expect(seqs(log)).toEqual([]);
    expect(log.since()).toEqual({ epoch: 'e2', seq: 40 });
    expect(log.add(msg(41, 'e2'))).toBe('added');
  });
});
