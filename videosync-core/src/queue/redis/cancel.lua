#!lua
-- ARG: id. A running job keeps its lease token, so its holder's next call
-- is told that the job was cancelled.
local id = ARG[1]
local jk = job_key(id)
local f = redis.call('HMGET', jk, 'state', 'rank', 'dedupe_key', 'seq')
if not f[1] then
  return {'missing'}
end
local outcome
if f[1] == 'cancelled' then
  return {'already'}
elseif f[1] == 'done' then
  return {'done'}
elseif f[1] == 'ready' then
  redis.call('ZREM', K_WAITING, f[2])
  ready_rem(f[2])
  outcome = 'removed'
elseif f[1] == 'dead' then
  redis.call('ZREM', K_DEAD, f[4] .. ':' .. id)
  outcome = 'removed'
else
  unindex_running(f[2])
  outcome = 'signalled'
end
release(id, f[3])
redis.call('HSET', jk, 'state', 'cancelled', 'updated_at', NOW, 'finished_at', NOW)
redis.call('HDEL', jk, 'lease_until')
redis.call('ZADD', K_CANCELLED, NOW, id)
return {outcome}
