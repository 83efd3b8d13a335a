#!lua
-- The event log's one script (layout in eventlog/redis.rs). It writes even
-- to read (it starts a missing history and expires old entries), so it
-- declares no `no-writes`; with no `allow-oom` Redis refuses it up front
-- when out of memory, before any change, instead of failing half-way.
--
-- KEYS[1] the topic's stream (entry ids `<seq>-0`, fields a=<at> p=<payload>)
-- KEYS[2] the topic's meta hash: e=<epoch> s=<head> t=<last append time>
-- ARGV[1] the operation: append, read or position
-- ARGV[2] the epoch to start if the history is missing
-- ARGV[3] now (ms), ARGV[4] the expiry cutoff (ms) or ''
-- append: ARGV[5] payload, ARGV[6] max length or '', ARGV[7] stream TTL (ms) or ''
--   -> {seq, epoch, at}
-- read:   ARGV[5] since seq or '', ARGV[6] since epoch, ARGV[7] limit
--   -> {epoch, head, recovered (0/1), entries as XRANGE returns them}
-- position: -> {epoch, head}
local stream, meta = KEYS[1], KEYS[2]
local op, new_epoch = ARGV[1], ARGV[2]
local now, cutoff = tonumber(ARGV[3]), tonumber(ARGV[4])

-- A missing meta key means the history is lost (never started, evicted,
-- deleted): start a new epoch, and drop any entries left from the old one,
-- whose ids would collide with the new sequence numbers.
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', new_epoch, 's', 0, 't', 0)
  epoch = new_epoch
end

local function seq_of(id)
  return tonumber(string.match(id, '^(%d+)-'))
end

-- Drops the entries appended before the cutoff. Append times never
-- decrease within a topic, so they are a prefix of the stream.
local function expire()
  if not cutoff then
    return
  end
  while true do
    local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', 64)
    if #batch == 0 then
      return
    end
    for _, e in ipairs(batch) do
      if tonumber(e[2][2]) >= cutoff then
        redis.call('XTRIM', stream, 'MINID', e[1])
        return
      end
    end
    redis.call('XTRIM', stream, 'MINID', (seq_of(batch[#batch][1]) + 1) .. '-0')
  end
end

local head = tonumber(redis.call('HGET', meta, 's'))

if op == 'append' then
  head = redis.call('HINCRBY', meta, 's', 1)
  local at = math.max(now, tonumber(redis.call('HGET', meta, 't')))
  redis.call('HSET', meta, 't', at)
  if ARGV[6] ~= '' then
    redis.call('XADD', stream, 'MAXLEN', '=', ARGV[6], head .. '-0', 'a', at, 'p', ARGV[5])
  else
    redis.call('XADD', stream, head .. '-0', 'a', at, 'p', ARGV[5])
  end
  expire()
  if ARGV[7] ~= '' then
    -- Once every entry has expired, the stream itself may go.
    redis.call('PEXPIRE', stream, ARGV[7])
  end
  return {head, epoch, at}
end

if op == 'position' then
  return {epoch, head}
end

-- read
expire()
local limit = tonumber(ARGV[7])
local from = 0
local honoured = true
if ARGV[5] ~= '' then
  from = tonumber(ARGV[5])
  if ARGV[6] ~= epoch or from > head then
    honoured = false
  end
end
local entries = {}
local recovered = 0
if honoured then
  if from >= head then
    recovered = 1
  else
    entries = redis.call('XRANGE', stream, (from + 1) .. '-0', '+', 'COUNT', limit)
    if #entries > 0 and seq_of(entries[1][1]) == from + 1 then
      recovered = 1
    end
  end
end
if recovered == 0 then
  entries = redis.call('XRANGE', stream, '-', '+', 'COUNT', limit)
end
return {epoch, head, recovered, entries}
