#!lua
-- ARG: id, token. The job stays as `done` (with the token that acked it, so
-- a repeated ack is recognised, and its dedupe key) until the vacuum.
local id = ARG[1]
local jk = job_key(id)
local f = redis.call('HMGET', jk, 'state', 'lease_token')
if f[1] == 'done' and f[2] == ARG[2] then
  return {'already'}
end
local bad = check_lease(jk)
if bad then
  return bad
end
unindex_running(redis.call('HGET', jk, 'rank'))
redis.call('HSET', jk, 'state', 'done', 'updated_at', NOW, 'finished_at', NOW)
redis.call('HDEL', jk, 'lease_until')
redis.call('ZADD', K_DONE, NOW, id)
return {'ok'}
