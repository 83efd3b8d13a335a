#!lua
-- ARG: id, kind, payload, priority, dedupe key ('' for none), max attempts,
-- run_at, run_at sortable.
housekeep()
local id, key = ARG[1], ARG[5]
if key ~= '' then
  local holder = redis.call('HGET', K_DEDUPE, key)
  if holder then
    local state = redis.call('HGET', job_key(holder), 'state')
    if state and state ~= 'dead' and state ~= 'cancelled' then
      return {'duplicate', holder}
    end
  end
end
rebalance()
local seq = string.format('%020d', redis.call('INCR', K_SEQ))
local rank = make_rank(ARG[4], ARG[8], seq, id)
local jk = job_key(id)
redis.call('HSET', jk, 'id', id, 'kind', ARG[2], 'payload', ARG[3], 'priority', ARG[4],
  'state', 'ready', 'attempts', '0', 'max_attempts', ARG[6], 'run_at', ARG[7],
  'created_at', NOW, 'updated_at', NOW, 'seq', seq, 'rank', rank)
if key ~= '' then
  redis.call('HSET', jk, 'dedupe_key', key)
  redis.call('HSET', K_DEDUPE, key, id)
end
add_waiting(rank, ARG[7])
return {'new'}
