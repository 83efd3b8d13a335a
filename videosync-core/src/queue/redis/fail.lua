#!lua
-- ARG: id, token, reason, retry time, retry time sortable. Retry or dead is
-- decided from the stored attempts.
local id = ARG[1]
local jk = job_key(id)
local bad = check_lease(jk)
if bad then
  return bad
end
local f = redis.call('HMGET', jk, 'rank', 'attempts', 'max_attempts', 'priority', 'seq')
unindex_running(f[1])
if tonumber(f[2]) >= tonumber(f[3]) then
  bury(id, ARG[3])
  return {'dead'}
end
rebalance()
local rank = make_rank(f[4], ARG[5], f[5], id)
redis.call('HSET', jk, 'state', 'ready', 'run_at', ARG[4], 'rank', rank,
  'last_error', ARG[3], 'updated_at', NOW)
redis.call('HDEL', jk, 'lease_token', 'lease_until')
add_waiting(rank, ARG[4])
return {'retry'}
