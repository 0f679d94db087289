-- Stores a message and publishes it in one step, so seq order, history order and
-- delivery order are one order.
-- KEYS: meta hash, history Stream.
-- ARGV: epoch candidate, history size, ttl secs, bus channel, body.
-- A missing meta hash means the channel's history is gone: a new epoch starts and any
-- Stream left behind is dropped, so an old (epoch, seq) can never match new messages.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
-- Approximate trimming drops whole Stream nodes instead of rewriting one on every
-- publish; the reads never show more than the last `history size` (read.lua).
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'm', ARGV[5])
-- The TTL slides with every publish, but TTL counts whole seconds: written again only
-- once it has run down by one, so a busy channel pays the two writes once a second.
local ttl = tonumber(ARGV[3])
if redis.call('TTL', KEYS[2]) < ttl then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
redis.call('PUBLISH', ARGV[4], 'm' .. seq .. ' ' .. epoch .. ' ' .. ARGV[5])
return {seq, epoch}
