#!lua
-- ARG: token, lease end, then the kinds to take (none: any kind). The best
-- of the due ready jobs and the jobs whose lease ended with attempts left
-- wins.
housekeep()
rebalance()
local token, lease_end = ARG[1], ARG[2]
local kinds = nil
if #ARG > 2 then
  kinds = {}
  for i = 3, #ARG do
    kinds[ARG[i]] = true
  end
end
local best, from = nil, 'ready'
if kinds then
  for kind, _ in pairs(kinds) do
    local head = redis.call('ZRANGE', KREADY .. kind, 0, 0)[1]
    if head and (not best or before(head, best)) then
      best = head
    end
  end
else
  best = redis.call('ZRANGE', K_READY, 0, 0)[1]
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_RUNNING, '-inf', NOW)) do
  if not best or before(m, best) then
    if not kinds or kinds[redis.call('HGET', job_key(rank_id(m)), 'kind')] then
      best, from = m, 'running'
    end
  end
end
if not best then
  return {}
end
if from == 'ready' then
  ready_rem(best)
  redis.call('ZREM', K_WAITING, best)
else
  redis.call('ZREM', K_RUNNING, best)
end
local jk = job_key(rank_id(best))
local attempts = redis.call('HINCRBY', jk, 'attempts', 1)
redis.call('HSET', jk, 'state', 'running', 'lease_token', token, 'lease_until', lease_end,
  'updated_at', NOW)
if attempts >= tonumber(redis.call('HGET', jk, 'max_attempts')) then
  redis.call('ZADD', K_FINAL, lease_end, best)
else
  redis.call('ZADD', K_RUNNING, lease_end, best)
end
return redis.call('HGETALL', jk)
