#!lua
-- ARG: id.
housekeep()
return redis.call('HGETALL', job_key(ARG[1]))
