#!lua
-- ARG: id, token, new lease end.
local jk = job_key(ARG[1])
local bad = check_lease(jk)
if bad then
  return bad
end
redis.call('HSET', jk, 'lease_until', ARG[3], 'updated_at', NOW)
local f = redis.call('HMGET', jk, 'rank', 'attempts', 'max_attempts')
if tonumber(f[2]) >= tonumber(f[3]) then
  redis.call('ZADD', K_FINAL, ARG[3], f[1])
else
  redis.call('ZADD', K_RUNNING, ARG[3], f[1])
end
return {'ok'}
