-- Reads the head and a range of history in one step; creates the epoch of a new
-- channel.
-- KEYS: meta hash, history Stream.
-- ARGV: epoch candidate, ttl, mode (after/before/head), start, end, count.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = 0
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
else
  seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
end
local entries = {}
if ARGV[3] == 'after' then
  entries = redis.call('XRANGE', KEYS[2], ARGV[4], ARGV[5], 'COUNT', ARGV[6])
elseif ARGV[3] == 'before' then
  entries = redis.call('XREVRANGE', KEYS[2], ARGV[4], ARGV[5], 'COUNT', ARGV[6])
end
return {seq, epoch, entries}
