#!lua
-- put: write a value, as the mode allows, with a new version.
-- KEYS[1]: the value's hash (fields v: value, n: count, ver: version)
-- KEYS[2]: the version counter shared by every key
-- ARGV[1]: mode: 'o' overwrite, 'c' create, 'i' if version
-- ARGV[2]: the expected version (mode 'i')
-- ARGV[3]: TTL in milliseconds, '0' for none
-- ARGV[4]: the value
-- Replies {'ok', version}, {'exists', version} or {'precondition', version or ''}.

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

local cur = redis.call('HGET', KEYS[1], 'ver')
local mode = ARGV[1]
if mode == 'c' and cur then
  return {'exists', cur}
end
if mode == 'i' and cur ~= ARGV[2] then
  return {'precondition', cur or ''}
end
local ver = next_version()
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[4], 'ver', ver)
if ARGV[3] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {'ok', ver}
