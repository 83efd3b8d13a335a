#!lua
-- put: write a value, as the mode allows, with a new version.
-- KEYS[1]: the value's hash (fields v: value, n: count, ver: version)
-- KEYS[2]: the version counter shared by every key (never reset)
-- ARGV[1]: mode: 'o' overwrite, 'c' create, 'i' if version
-- ARGV[2]: the expected version (mode 'i')
-- ARGV[3]: TTL in milliseconds, '0' for none
-- ARGV[4]: the value
-- Replies {'ok', version}, {'exists', version} or {'precondition', version or ''}.
local cur = redis.call('HGET', KEYS[1], 'ver')
local mode = ARGV[1]
if mode == 'c' and cur then
  return {'exists', cur}
end
if mode == 'i' and cur ~= ARGV[2] then
  return {'precondition', cur or ''}
end
local ver = string.format('%d', redis.call('INCR', KEYS[2]))
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[4], 'ver', ver)
if ARGV[3] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {'ok', ver}
