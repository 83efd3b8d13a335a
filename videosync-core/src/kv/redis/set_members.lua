#!lua flags=no-writes
-- set_members: the live members with their expiry, on the server's clock.
-- KEYS[1]: the set
-- Replies member, expiry, member, expiry, ...
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGE', KEYS[1], '(' .. string.format('%d', now), '+inf', 'BYSCORE', 'WITHSCORES')
