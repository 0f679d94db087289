import { describe, expect, it } from 'vitest';
import { backoffDelay } from './backoff';

const opts = { baseMs: 500, maxMs: 8000 };

describe('backoffDelay', () => {
  it('doubles the ceiling per attempt up to the maximum', () => {
    const top = (n: number) => backoffDelay(n, opts, () => 1);
    expect([0, 1, 2, 3, 4, 5, 50].map(top)).toEqual([500, 1000, 2000, 4000, 8000, 8000, 8000]);
  });

  it('jitters between half the ceiling and the ceiling', () => {
    expect(backoffDelay(2, opts, () => 0)).toBe(1000);
    expect(backoffDelay(2, opts, () => 0.5)).toBe(1500);
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(3, opts);
      expect(d).toBeGreaterThanOrEqual(2000);
      expect(d).toBeLessThanOrEqual(4000);
      seen.add(d);
    }
    // Clients that dropped together do not come back together.
    expect(seen.size).toBeGreaterThan(50);
  });
});
