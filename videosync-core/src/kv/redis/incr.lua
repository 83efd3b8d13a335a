#!lua
-- incr: add to a counter, creating it (with its TTL) when missing. A live
-- counter keeps its TTL: the window is fixed when the counter is created.
-- KEYS[1]: the value's hash (a counter has the field n, a value the field v)
-- KEYS[2]: the version counter shared by every key
-- ARGV[1]: the amount to add (a signed 64-bit integer, as text)
-- ARGV[2]: TTL in milliseconds for a new counter, '0' for none
-- Replies {'ok', count}, {'not_counter'} or {'overflow', count}.

-- The next version. A missing counter (a server restarted without
-- persistence, or a counter evicted) starts again from the server's time in
-- microseconds, above every version handed out before at any rate Redis can
-- sustain, so an old version cannot come back.
local function next_version()
  if redis.call('EXISTS', KEYS[2]) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])))
  end
  return string.format('%d', redis.call('INCR', KEYS[2]))
end

if redis.call('EXISTS', KEYS[1]) == 1 then
  local n = redis.call('HGET', KEYS[1], 'n')
  if not n then
    return {'not_counter'}
  end
  -- HINCRBY refuses a sum outside 64 bits and changes nothing then.
  local added = redis.pcall('HINCRBY', KEYS[1], 'n', ARGV[1])
  if type(added) == 'table' and added.err then
    return {'overflow', n}
  end
else
  redis.call('HSET', KEYS[1], 'n', ARGV[1])
  if ARGV[2] ~= '0' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
end
redis.call('HSET', KEYS[1], 'ver', next_version())
-- Read back as text: Lua numbers are doubles and would round large counts.
return {'ok', redis.call('HGET', KEYS[1], 'n')}
