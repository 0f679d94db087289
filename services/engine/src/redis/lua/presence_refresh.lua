-- Like a join, but only for a connection still present: a refresh racing a leave must
-- not bring the entry back.
-- KEYS: room set, user set. ARGV: user, conn, ttl ms.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local exp = now + tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('ZADD', KEYS[2], exp, ARGV[2])
  redis.call('ZADD', KEYS[1], 'GT', exp, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
  return 1
end
return 0
