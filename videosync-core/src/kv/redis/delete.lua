#!lua
-- delete: remove a value or counter, if it has the expected version.
-- KEYS[1]: the value's hash
-- ARGV[1]: the expected version, '' for any
-- Replies {'deleted'}, {'absent'} or {'precondition', version or ''}.
local cur = redis.call('HGET', KEYS[1], 'ver')
if ARGV[1] ~= '' and cur ~= ARGV[1] then
  return {'precondition', cur or ''}
end
if not cur then
  return {'absent'}
end
redis.call('DEL', KEYS[1])
return {'deleted'}
