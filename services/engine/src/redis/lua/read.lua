-- Reads the head and a range of history in one step; creates the epoch of a new
-- channel.
-- KEYS: meta hash, history Stream.
-- ARGV: epoch candidate, ttl, mode (after/before/head), seq, count, history size.
-- after: from seq on; before: up to seq ('+': the newest).
-- The Stream is trimmed approximately (publish.lua) and may hold a few more than the
-- history size: only the last `history size` messages are ever read.
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
local first = math.max(seq - tonumber(ARGV[6]) + 1, 0)
local entries = {}
if ARGV[3] == 'after' then
  local from = math.max(tonumber(ARGV[4]), first)
  entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', from), '+', 'COUNT', ARGV[5])
elseif ARGV[3] == 'before' then
  local to = '+'
  if ARGV[4] ~= '+' then
    if tonumber(ARGV[4]) < first then
      return {seq, epoch, entries}
    end
    to = string.format('%d-0', tonumber(ARGV[4]))
  end
  entries = redis.call('XREVRANGE', KEYS[2], to, string.format('%d-0', first), 'COUNT', ARGV[5])
end
return {seq, epoch, entries}
