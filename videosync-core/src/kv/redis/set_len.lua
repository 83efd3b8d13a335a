#!lua flags=no-writes
-- set_len: how many members are live, on the server's clock.
-- KEYS[1]: the set
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now), '+inf')
