"""The Lua scripts of the Redis rate limiter (ratelimit_redis.py), each run atomically inside
Redis: requests and tokens are token buckets stored as hashes {cap, level, stamp}, refilled from
Redis's own clock (TIME), so the gateways' clocks never matter; concurrency is a set of leases, a
sorted set per key scored by expiry time. A running request's lease is renewed every
lease_seconds / 3, so a slot of a process that died (SIGKILL, power loss) is free again at most
lease_seconds later, and never "for an hour".
"""

# Shared by the scripts: ARGV[1] is "now" in seconds, or "" to use Redis's own clock (TIME). Numbers
# are written with %.17g because redis.call() would truncate a Lua number to an integer.
_LUA_COMMON = """
local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(x) return string.format('%.17g', x) end
local function load(key, cap, now)
  local v = redis.call('HMGET', key, 'cap', 'level', 'stamp')
  if v[1] and tonumber(v[1]) == cap then
    local level, stamp = tonumber(v[2]), tonumber(v[3])
    if now > stamp then level = math.min(cap, level + (now - stamp) * cap / 60.0) end
    return level
  end
  return cap
end
local function save(key, cap, level, now)
  redis.call('HSET', key, 'cap', cap, 'level', num(level), 'stamp', num(now))
  -- a bucket left alone refills; once it would be full, forgetting it is the same thing
  redis.call('PEXPIRE', key, math.ceil((cap - level) * 60000 / cap) + 1000)
end
local function reset_after(cap, level) return (cap - level) * 60.0 / cap end
local function wait_for(cap, level, amount)
  return math.max(1, math.ceil((amount - level) * 60.0 / cap - 1e-9))
end
"""

# KEYS: requests bucket, tokens bucket, leases zset.
# ARGV: now, rpm, tpm, concurrency, lease id, lease seconds.
# Returns {allowed, reason, retry_after, remaining_requests, reset_requests, remaining_tokens,
#          reset_tokens, leases held before this one} (floats as strings).
ACQUIRE = _LUA_COMMON + """
local now = clock(ARGV[1])
local rpm, tpm, climit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lease_id, lease_s = ARGV[5], tonumber(ARGV[6])
local allowed, reason, retry = 1, '', 0
local req, tok = nil, nil
if rpm > 0 then
  req = load(KEYS[1], rpm, now)
  if req < 1 then allowed, reason, retry = 0, 'requests', wait_for(rpm, req, 1) end
end
if tpm > 0 then
  tok = load(KEYS[2], tpm, now)
  if allowed == 1 and tok <= 0 then allowed, reason, retry = 0, 'tokens', wait_for(tpm, tok, 1) end
end
local held = 0
if climit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', num(now))
  held = redis.call('ZCARD', KEYS[3])
  if allowed == 1 and held >= climit then allowed, reason, retry = 0, 'concurrency', 1 end
end
if allowed == 1 then
  if req then req = req - 1 end
  if climit > 0 then
    redis.call('ZADD', KEYS[3], num(now + lease_s), lease_id)
    redis.call('PEXPIRE', KEYS[3], math.ceil(lease_s * 1000) + 1000)
  end
end
local out = {allowed, reason, retry, '0', '0', '0', '0', held}
if req then
  save(KEYS[1], rpm, req, now)
  out[4], out[5] = num(req), num(reset_after(rpm, req))
end
if tok then
  save(KEYS[2], tpm, tok, now)
  out[6], out[7] = num(tok), num(reset_after(tpm, tok))
end
return out
"""

# KEYS: tokens bucket. ARGV: now, tpm, tokens used. The level may go below zero: the next requests
# wait until the bucket has refilled past it, as MemoryLimiter does.
ADD_TOKENS = _LUA_COMMON + """
local now, tpm, n = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local level = load(KEYS[1], tpm, now) - n
save(KEYS[1], tpm, level, now)
return num(level)
"""

# KEYS: leases zset. ARGV: now, lease seconds, lease ids. Only leases still present are extended
# (XX): one released (or expired) meanwhile must not come back.
RENEW = _LUA_COMMON + """
local now, lease_s = clock(ARGV[1]), tonumber(ARGV[2])
local renewed = 0
for i = 3, #ARGV do
  if redis.call('ZADD', KEYS[1], 'XX', 'CH', num(now + lease_s), ARGV[i]) == 1 then
    renewed = renewed + 1
  end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(lease_s * 1000) + 1000)
return renewed
"""
