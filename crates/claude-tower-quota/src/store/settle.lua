-- claude-tower-quota: settle admitted requests (actual tokens minus the
-- estimates charged), or return what is left of a lease.
-- KEYS[1]  the caller's hash (see check.lua)
-- ARGV     1 token interval (us per token, 0 = none)   2 delta tokens (may be negative)
--          3 the period start the charge went to (0 = no quota)
--          4 request interval (us, 0 = none)            5 delta requests (may be negative)
-- A key that expired meanwhile is left alone; a delta for a period that has
-- ended does not touch the new one.
local h = redis.call('HMGET', KEYS[1], 'tt', 'ps', 'pu', 'rt')
if not h[1] then return 0 end
local ti, delta, ps = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ri, dr = tonumber(ARGV[4]) or 0, tonumber(ARGV[5]) or 0
if ti > 0 and delta ~= 0 then
  local tt = tonumber(h[1]) + delta * ti
  redis.call('HSET', KEYS[1], 'tt', string.format('%.0f', tt))
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local need = math.ceil((tt - now) / 1000) + 60000
  if redis.call('PTTL', KEYS[1]) < need then
    redis.call('PEXPIRE', KEYS[1], string.format('%.0f', need))
  end
end
if ri > 0 and dr ~= 0 and h[4] then
  redis.call('HSET', KEYS[1], 'rt', string.format('%.0f', tonumber(h[4]) + dr * ri))
end
if ps > 0 and delta ~= 0 and tonumber(h[2]) == ps then
  local pu = math.max(0, (tonumber(h[3]) or 0) + delta)
  redis.call('HSET', KEYS[1], 'pu', string.format('%.0f', pu))
end
return 1
