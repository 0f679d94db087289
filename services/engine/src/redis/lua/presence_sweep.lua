-- KEYS: room set. ARGV: prefix of the user sets.
-- Removes users with no live connection left (their replica died) and returns them.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local gone = {}
for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local uk = ARGV[1] .. user
  redis.call('ZREMRANGEBYSCORE', uk, '-inf', now)
  if redis.call('ZCARD', uk) == 0 then
    redis.call('ZREM', KEYS[1], user)
    table.insert(gone, user)
  end
end
return gone
