-- The shared state of one budget, read without changing anything.
--
-- KEYS[1] clock   KEYS[2] ends   KEYS[3] live   KEYS[4] the scope's ban   KEYS[5] the budget's pause
-- KEYS[6] the budget's reserve   KEYS[7] the budget's learned ceiling
-- ARGV[1] explicit now or ''   ARGV[2] the longest window in us
--
-- Invariant: writes nothing (not even the clock), so reading the status can
-- never change a decision.
--
-- Reply: {now, epoch or -1, counting, in_flight, ban_until or 0, pause_until or 0,
--        reserved slots (0 when none is in force), places the ceiling holds back}
local raw
if ARGV[1] ~= '' then
  raw = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  raw = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local longest = tonumber(ARGV[2])
if raw == nil or longest == nil then
  return redis.error_reply('upbit-limiter: malformed status arguments')
end
local c = redis.call('HMGET', KEYS[1], 'hwm', 'offset', 'epoch')
local hwm, offset, epoch = tonumber(c[1]), tonumber(c[2]), tonumber(c[3])
if hwm == nil or offset == nil or epoch == nil then
  return { raw, -1, 0, 0, 0, 0, 0, 0 }
end
local now = math.max(raw + offset, hwm)
local counting = redis.call('ZCOUNT', KEYS[2], int(now - longest), '+inf')
local in_flight = 0
for _, v in ipairs(redis.call('HVALS', KEYS[3])) do
  if string.sub(v, -1) == 'f' then
    in_flight = in_flight + 1
  end
end
local ban = tonumber(redis.call('GET', KEYS[4]) or '') or 0
local pause = tonumber(redis.call('GET', KEYS[5]) or '') or 0
local reserve = redis.call('HMGET', KEYS[6], 'n', 'until')
local reserved = 0
if now < (tonumber(reserve[2]) or 0) then
  reserved = tonumber(reserve[1]) or 0
end
return { now, epoch, counting, in_flight, ban, pause, reserved, ceiling_at(KEYS[7], now) }
