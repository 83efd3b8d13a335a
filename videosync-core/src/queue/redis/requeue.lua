#!lua
-- ARG: id, now sortable.
local id = ARG[1]
local jk = job_key(id)
local f = redis.call('HMGET', jk, 'state', 'dedupe_key', 'priority', 'seq')
if not f[1] then
  return {'missing'}
end
if f[1] ~= 'dead' then
  local reply = redis.call('HGETALL', jk)
  table.insert(reply, 1, 'alive')
  return reply
end
if f[2] then
  local holder = redis.call('HGET', K_DEDUPE, f[2])
  if holder and holder ~= id then
    return {'held'}
  end
  redis.call('HSET', K_DEDUPE, f[2], id)
end
rebalance()
local rank = make_rank(f[3], ARG[2], f[4], id)
redis.call('HSET', jk, 'state', 'ready', 'attempts', '0', 'run_at', NOW, 'rank', rank,
  'updated_at', NOW)
redis.call('HDEL', jk, 'finished_at')
redis.call('ZREM', K_DEAD, f[4] .. ':' .. id)
redis.call('ZADD', K_WAITING, NOW, rank)
ready_add(rank)
return {'ok'}
