-- claude-tower-quota: check and charge a batch of requests (GCRA, debt model,
-- period quota), in order, as if each were its own call at the same instant.
-- KEYS[i]  the i-th request's caller hash: tt (token TAT, unix us), rt (request TAT),
--          ps (period start, unix s), pu (period used), pol. Keys may repeat: a
--          later request of a key sees what the earlier ones charged.
-- ARGV     10 per request, the i-th request's at 10*(i-1)+:
--          1 token interval (us per token, 0 = no token rate)   2 token tolerance (us)
--          3 request interval (us, 0 = none)                     4 request tolerance (us)
--          5 quota tokens (0 = none)   6 period (1 hour, 2 day, 3 week, 4 month)
--          7 cost (estimated tokens)   8 the policy, stored for /usage
--          9 lease: requests wanted (0 = no lease)   10 lease: tokens wanted
-- Returns  10 per request: {verdict (0 admit, 1 rate, 3 quota), wait us, tt, rt, ps, pe, pu,
--          now us, lease requests granted, lease tokens granted}
-- A lease is an allowance charged now and spent by the replica without asking
-- (what it does not spend it gives back through settle.lua). It is granted only
-- to an admitted request, out of headroom: at most a quarter of what the
-- buckets and the quota have left after the request, so leases never put a
-- key into debt; under 2 requests or an eighth of the tokens wanted, none.
-- Time is the server's TIME, so replicas with skewed clocks agree. Each key is
-- read once and written once (HSET + PEXPIRE) however often it repeats.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m > 2) and (m - 3) or (m + 9)
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = (mp < 10) and (mp + 3) or (mp - 9)
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end
local function bounds(secs, period)
  if period == 1 then
    local s = secs - secs % 3600
    return s, s + 3600
  elseif period == 2 then
    local s = secs - secs % 86400
    return s, s + 86400
  elseif period == 3 then
    local days = math.floor(secs / 86400)
    local monday = days - (days + 3) % 7
    return monday * 86400, (monday + 7) * 86400
  end
  local y, m = civil_from_days(math.floor(secs / 86400))
  local ny, nm = y, m + 1
  if m == 12 then ny, nm = y + 1, 1 end
  return days_from_civil(y, m, 1) * 86400, days_from_civil(ny, nm, 1) * 86400
end
-- end of calendar
local function fmt(x) return string.format('%.0f', x) end

local t = redis.call('TIME')
local secs = tonumber(t[1])
local now = secs * 1000000 + tonumber(t[2])

local states, order = {}, {}
local out = {}
for i = 1, #KEYS do
  local key, a = KEYS[i], 10 * (i - 1)
  local ti, ttol = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local ri, rtol = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local quota, period, cost = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])

  local s = states[key]
  if not s then
    local h = redis.call('HMGET', key, 'tt', 'rt', 'ps', 'pu')
    s = { tt = tonumber(h[1]) or 0, rt = tonumber(h[2]) or 0, ps = tonumber(h[3]),
          pu = tonumber(h[4]) or 0, ttl = 0 }
    states[key] = s
    order[#order + 1] = key
  end
  local tt = math.max(s.tt, now)
  local rt = math.max(s.rt, now)
  local ps, pe, pu = 0, 0, 0
  if quota > 0 then
    ps, pe = bounds(secs, period)
    if s.ps == ps then pu = s.pu end
  end

  local verdict, wait = 0, 0
  if quota > 0 and pu >= quota then
    verdict = 3
  else
    if ti > 0 and tt - now > ttol then
      verdict, wait = 1, tt - now - ttol
    end
    if ri > 0 and rt + ri - now > rtol then
      verdict, wait = 1, math.max(wait, rt + ri - now - rtol)
    end
  end

  local gr, gt = 0, 0
  if verdict == 0 then
    if ti > 0 then tt = tt + cost * ti end
    if ri > 0 then rt = rt + ri end
    if quota > 0 then pu = pu + cost end
    local wr, wt = tonumber(ARGV[a + 9]), tonumber(ARGV[a + 10])
    if wr > 0 then
      local ht, hr = wt * 4, wr * 4
      if ti > 0 then ht = math.min(ht, math.floor((ttol - (tt - now)) / ti)) end
      if quota > 0 then ht = math.min(ht, quota - pu) end
      if ri > 0 then hr = math.min(hr, math.floor((rtol - (rt - now)) / ri)) end
      gr, gt = math.min(wr, math.floor(hr / 4)), math.min(wt, math.floor(ht / 4))
      if gr < 2 or gt * 8 < wt then
        gr, gt = 0, 0
      else
        if ti > 0 then tt = tt + gt * ti end
        if ri > 0 then rt = rt + gr * ri end
        if quota > 0 then pu = pu + gt end
      end
    end
    s.tt, s.rt, s.ps, s.pu, s.pol = tt, rt, ps, pu, ARGV[a + 8]
    local ttl = math.max(tt, rt) - now
    if quota > 0 then ttl = math.max(ttl, (pe - secs) * 1000000) end
    s.ttl = math.max(s.ttl, ttl)
  end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = verdict, math.ceil(wait), math.floor(tt), math.floor(rt)
  out[n + 5], out[n + 6], out[n + 7], out[n + 8] = ps, pe, pu, now
  out[n + 9], out[n + 10] = gr, gt
end

for _, key in ipairs(order) do
  local s = states[key]
  if s.pol then
    redis.call('HSET', key, 'tt', fmt(s.tt), 'rt', fmt(s.rt), 'ps', fmt(s.ps), 'pu', fmt(s.pu), 'pol', s.pol)
    redis.call('PEXPIRE', key, fmt(math.ceil(s.ttl / 1000) + 60000))
  end
end
return out
