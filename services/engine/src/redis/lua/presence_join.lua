-- KEYS: room set, user set. ARGV: user, conn, ttl ms.
-- Returns 1 for the user's first live connection in the room.
-- The clock is Redis's (TIME), so replicas' clocks do not matter.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local exp = now + tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local before = redis.call('ZCARD', KEYS[2])
redis.call('ZADD', KEYS[2], exp, ARGV[2])
redis.call('ZADD', KEYS[1], 'GT', exp, ARGV[1])
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
if before == 0 then return 1 else return 0 end
