-- What every queue script starts with (after its own `#!lua` line).
--
-- KEYS are the queue's fixed keys, in this order. ARGV[1..5] are the job key
-- prefix, now (ms, from the caller's clock), the reason for dead-lettering an
-- exhausted lease, the vacuum horizon (ms: done and cancelled jobs finished
-- at or before it are removed) and the prefix of the per-kind ready sets.
-- Each script's own arguments follow and are read as ARG[1], ARG[2], ...
local K_WAITING, K_READY, K_HORIZON, K_RUNNING = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_FINAL, K_DEAD, K_DEDUPE, K_SEQ = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_DONE, K_CANCELLED = KEYS[9], KEYS[10]
local PREFIX, NOW, EXHAUSTED, CUTOFF, KREADY = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = tonumber(NOW)
local ARG = {}
for i = 6, #ARGV do
  ARG[i - 5] = ARGV[i]
end

local function job_key(id)
  return PREFIX .. id
end

-- A rank is "<7 digits>:<20 digits>:<20 digits>:<id>".
local function rank_id(rank)
  return string.sub(rank, 51)
end

local function make_rank(priority, run_at_sortable, seq, id)
  return string.format('%07d', 1000000 - tonumber(priority)) .. ':' .. run_at_sortable
    .. ':' .. seq .. ':' .. id
end

-- Byte order; Lua's `<` on strings follows the server's locale.
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

-- `ready` holds every due waiting job; `<KREADY><kind>` holds those of one
-- kind, so a reserve restricted to kinds reads only their heads.
local function ready_add(rank)
  redis.call('ZADD', K_READY, 0, rank)
  local kind = redis.call('HGET', job_key(rank_id(rank)), 'kind')
  if kind then
    redis.call('ZADD', KREADY .. kind, 0, rank)
  end
end

local function ready_rem(rank)
  redis.call('ZREM', K_READY, rank)
  local kind = redis.call('HGET', job_key(rank_id(rank)), 'kind')
  if kind then
    redis.call('ZREM', KREADY .. kind, rank)
  end
end

-- Moves the horizon to now: `ready` holds exactly the waiting jobs due by now.
local function rebalance()
  local h = redis.call('GET', K_HORIZON)
  if not h then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_WAITING, '-inf', NOW)) do
      ready_add(m)
    end
  elseif now > tonumber(h) then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_WAITING, '(' .. h, NOW)) do
      ready_add(m)
    end
  elseif now < tonumber(h) then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_WAITING, '(' .. NOW, h)) do
      ready_rem(m)
    end
  end
  if h ~= NOW then
    redis.call('SET', K_HORIZON, NOW)
  end
end

-- Indexes a ready or scheduled job by its due time, and as ready when it is
-- due by the horizon (now). The job's hash must hold its kind already.
local function add_waiting(rank, run_at)
  redis.call('ZADD', K_WAITING, run_at, rank)
  if tonumber(run_at) <= now then
    ready_add(rank)
  end
end

local function release(id, key)
  if key and redis.call('HGET', K_DEDUPE, key) == id then
    redis.call('HDEL', K_DEDUPE, key)
  end
end

-- Makes a job that is in no index a dead letter.
local function bury(id, reason)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'seq', 'dedupe_key')
  redis.call('HSET', jk, 'state', 'dead', 'last_error', reason, 'updated_at', NOW,
    'finished_at', NOW)
  redis.call('HDEL', jk, 'lease_token', 'lease_until')
  redis.call('ZADD', K_DEAD, NOW, f[1] .. ':' .. id)
  release(id, f[2])
end

-- Dead-letters the jobs whose last lease ended without an ack, and removes
-- the done and cancelled jobs older than the retention window.
local function housekeep()
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', K_FINAL, '-inf', NOW)) do
    redis.call('ZREM', K_FINAL, m)
    bury(rank_id(m), EXHAUSTED)
  end
  for _, set in ipairs({K_DONE, K_CANCELLED}) do
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', CUTOFF)) do
      release(id, redis.call('HGET', job_key(id), 'dedupe_key'))
      redis.call('DEL', job_key(id))
    end
    redis.call('ZREMRANGEBYSCORE', set, '-inf', CUTOFF)
  end
end

-- The reply for a job that exists but is not held under this lease: the
-- job's fields, so the client can say why.
local function conflict(jk)
  local reply = redis.call('HGETALL', jk)
  table.insert(reply, 1, 'conflict')
  return reply
end

-- Nil when ARG[1] is a job held under token ARG[2]; else the reply that
-- explains why not.
local function check_lease(jk)
  local f = redis.call('HMGET', jk, 'state', 'lease_token', 'lease_until')
  if not f[1] then
    return {'missing'}
  end
  if f[1] == 'running' and f[2] == ARG[2] and tonumber(f[3]) > now then
    return nil
  end
  return conflict(jk)
end

local function unindex_running(rank)
  redis.call('ZREM', K_RUNNING, rank)
  redis.call('ZREM', K_FINAL, rank)
end
