#!lua
-- ARG: the cursor's time and 20-digit seq ('' and '' for the start), and how
-- many to list. Dead letters are scored by when they died; a member is
-- "<20-digit seq>:<id>", so equal times list in enqueue order.
housekeep()
local t, s, want = ARG[1], ARG[2], tonumber(ARG[3])
local out, offset = {}, 0
local min = '-inf'
if t ~= '' then
  min = t
end
while #out < want do
  local batch = redis.call('ZRANGE', K_DEAD, min, '+inf', 'BYSCORE', 'LIMIT', offset, 100,
    'WITHSCORES')
  if #batch == 0 then
    break
  end
  for i = 1, #batch, 2 do
    local m, score = batch[i], batch[i + 1]
    if t == '' or tonumber(score) > tonumber(t) or before(s, string.sub(m, 1, 20)) then
      table.insert(out, redis.call('HGETALL', job_key(string.sub(m, 22))))
      if #out >= want then
        break
      end
    end
  end
  offset = offset + 100
end
return out
