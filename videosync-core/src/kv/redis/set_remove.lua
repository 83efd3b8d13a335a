#!lua
-- set_remove: remove a member; say whether it was live.
-- KEYS[1]: the set
-- ARGV[1]: the member
-- Replies 1 when a live member was removed, else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(score) > now then
  return 1
end
return 0
