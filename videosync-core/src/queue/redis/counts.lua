#!lua
-- No arguments of its own.
housekeep()
return {
  redis.call('ZCOUNT', K_WAITING, '-inf', NOW),
  redis.call('ZCOUNT', K_WAITING, '(' .. NOW, '+inf'),
  redis.call('ZCARD', K_RUNNING) + redis.call('ZCARD', K_FINAL),
  redis.call('ZCARD', K_DEAD),
  redis.call('ZCARD', K_DONE),
  redis.call('ZCARD', K_CANCELLED),
}
