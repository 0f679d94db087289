import { describe, expect, it } from 'vitest';
import { TypingThrottle, TypingUsers } from './typing';

describe('TypingThrottle', () => {
  it('lets one notice per room through per interval', () => {
    let now = 0;
    const t = new TypingThrottle(1500, () => now);
    expect(t.shouldSend('a')).toBe(true);
    now = 1000;
    expect(t.shouldSend('a')).toBe(false);
    expect(t.shouldSend('b')).toBe(true);
    now = 1499;
    expect(t.shouldSend('a')).toBe(false);
    now = 1500;
    expect(t.shouldSend('a')).toBe(true);
  });

  it('announces again at once after a message was sent', () => {
    let now = 0;
    const t = new TypingThrottle(1500, () => now);
    expect(t.shouldSend('a')).toBe(true);
    now = 100;
    t.reset('a');
    expect(t.shouldSend('a')).toBe(true);
  });
});

describe('TypingUsers', () => {
  it('shows a user until their notice expires, renewed by each notice', () => {
    const u = new TypingUsers(4000);
    u.notice('bob', 0);
    u.notice('carol', 1000);
    expect(u.users(3999)).toEqual(['bob', 'carol']);
    expect(u.nextExpiry()).toBe(4000);
    u.notice('bob', 3000);
    expect(u.expire(4500)).toBe(false);
    expect(u.users(5000)).toEqual(['bob']);
    expect(u.expire(5000)).toBe(true);
    expect(u.users(7000)).toEqual([]);
  });

  it('forgets a user who sent their message', () => {
    const u = new TypingUsers(4000);
    u.notice('bob', 0);
    expect(u.stopped('bob')).toBe(true);
    expect(u.users(1)).toEqual([]);
  });
});
