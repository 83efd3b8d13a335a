#!lua
-- set_add: add a member or refresh its expiry. The set is a sorted set
-- scored by each member's expiry on the Redis server's clock (ms); expired
-- members are trimmed here, and the key itself expires with its last member.
-- KEYS[1]: the set
-- ARGV[1]: the member
-- ARGV[2]: TTL in milliseconds
-- Replies 1 when the member is new (absent or expired), 0 when refreshed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
local added = redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], string.format('%d', tonumber(last[2])))
return added
