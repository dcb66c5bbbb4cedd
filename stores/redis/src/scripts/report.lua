-- The report: how one admitted request ended, and what the server said.
--
-- KEYS[1] clock   KEYS[2] ends   KEYS[3] live   KEYS[4] the scope's ban   KEYS[5] the budget's pause
-- KEYS[6] the budget's reserve for traffic of others (hash: n, until)
-- KEYS[7] the budget's learned ceiling (hash: n, since, hold)
-- ARGV[1] explicit now in us, or '' for Redis TIME (only the crate's own tests pass one)
-- ARGV[2] ticket   ARGV[3] how it ended: 'r' response, 'u' no response, 'a' never sent
-- ARGV[4] pause for this long (us, 0: none)   ARGV[5] ban the scope for this long (us, 0: none)
-- ARGV[6] the server's Remaining-Req `sec` ('' none)
-- ARGV[7] the shortest window W_s (us)   ARGV[8] its N (the `sec` capacity)
-- ARGV[9] the ceiling's hold (us, 0: learn none)   ARGV[10] the adaptive reduction (ppm)
--
-- Invariant (core's interval log): only a current ticket changes anything.
-- 'r' on a request in flight or unanswered sets e_i = now clamped into
-- [s_i, s_i + max_flight] (its end while in flight is s_i + max_flight);
-- 'u' on one in flight keeps e_i = s_i + max_flight but no denial waits on
-- it any more; 'a' on one in flight forgets it. A stale ticket (another
-- epoch, already ended, trimmed) changes nothing and returns 0. So a report
-- never moves an end later than the end it replaces, and never earlier than
-- the request's admission: every arrival a_i stays <= e_i.
--
-- Invariant (shared feedback): a ban or a pause only ever extends: the stored
-- instant becomes max(stored, now + length).
--
-- Invariant (traffic of others): `sec` says the server counted
-- used = N_s - sec requests in the window of this one. The sharers' requests
-- it can have counted are at most those with e_i >= s_j - W_s (every one
-- still in `ends` is admitted by now); the rest, `external`, is traffic
-- that does not go through this store. Then `external + 1` slots of the
-- shortest window are reserved for 2 W_s (one of slack, as the local
-- limiter keeps): the reserve only ever grows while it lasts.
--
-- Invariant (learned ceiling, core's `learn_ceiling` over every sharer): a
-- 429 (a pause) to a current ticket admitted at s, when k requests of any
-- sharer were admitted before it (a lower ticket number) in [s - W_s, s],
-- holds back N_s - floor(k * reduction) places of the shortest window for
-- every sharer: the larger of that and what an earlier ceiling still holds
-- back, afresh for the hold, then one fewer per hold. It only ever holds
-- back more than the rule without it, so the guarantee holds whatever it is.
local now = read_clock(KEYS[1], ARGV[1])
if now == nil then
  return redis.error_reply('upbit-limiter: time out of range')
end
local ticket, kind = ARGV[2], ARGV[3]
local pause_for, ban_for = tonumber(ARGV[4]), tonumber(ARGV[5])
if pause_for == nil or ban_for == nil or pause_for < 0 or ban_for < 0 or pause_for >= LIMIT or ban_for >= LIMIT then
  return redis.error_reply('upbit-limiter: malformed report arguments')
end

local function extend(key, length)
  if length > 0 then
    local until_ = now + length
    local old = tonumber(redis.call('GET', key) or '') or 0
    if until_ > old then
      redis.call('SET', key, int(until_))
    end
  end
end
extend(KEYS[4], ban_for)
extend(KEYS[5], pause_for)

local v = redis.call('HGET', KEYS[3], ticket)
if not v then
  return 0
end
local s, state = string.match(v, '^(%d+) (%a)$')
s = tonumber(s)
local e = tonumber(redis.call('ZSCORE', KEYS[2], ticket))
if s == nil or e == nil then
  -- Unreadable: leave it as it is (it counts until its recorded end).
  return 0
end
local sec, shortest, capacity = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if sec ~= nil and shortest ~= nil and capacity ~= nil and shortest > 0 and capacity > 0 and shortest < LIMIT then
  local used = math.max(capacity - sec, 0)
  local ours = redis.call('ZCOUNT', KEYS[2], int(s - shortest), '+inf')
  local external = used - ours
  if external > 0 then
    local reserve = math.min(external + 1, capacity - 1)
    local r = redis.call('HMGET', KEYS[6], 'n', 'until')
    local old_n, old_until = tonumber(r[1]) or 0, tonumber(r[2]) or 0
    if now >= old_until then
      old_n = 0
    end
    redis.call('HSET', KEYS[6], 'n', int(math.max(reserve, old_n)), 'until', int(math.max(now + 2 * shortest, old_until)))
  end
end
local hold, reduction = tonumber(ARGV[9]), tonumber(ARGV[10])
if pause_for > 0 and hold ~= nil and reduction ~= nil and hold > 0 and hold < LIMIT
    and reduction >= 0 and reduction <= 1000000 and capacity ~= nil and shortest ~= nil then
  local seq = tonumber(string.match(ticket, '-(%d+)$'))
  local epoch_of = string.match(ticket, '^(%d+)-')
  local before = 0
  local all = redis.call('HGETALL', KEYS[3])
  for i = 1, #all, 2 do
    local si = tonumber(string.match(all[i + 1], '^(%d+) '))
    local qi = tonumber(string.match(all[i], '-(%d+)$'))
    if si ~= nil and qi ~= nil and seq ~= nil and string.match(all[i], '^(%d+)-') == epoch_of
        and qi < seq and si >= s - shortest and si <= s then
      before = before + 1
    end
  end
  local kept = math.floor(before * reduction / 1000000)
  local missing = math.max(capacity - kept, 0)
  local held = math.max(ceiling_at(KEYS[7], now), missing)
  if held > 0 then
    redis.call('HSET', KEYS[7], 'n', int(held), 'since', int(now), 'hold', int(hold))
  end
end
if kind == 'r' and (state == 'f' or state == 'u') then
  local r = math.min(math.max(now, s), e)
  redis.call('ZADD', KEYS[2], int(r), ticket)
  redis.call('HSET', KEYS[3], ticket, int(s) .. ' r')
  return 1
elseif kind == 'u' and state == 'f' then
  redis.call('HSET', KEYS[3], ticket, int(s) .. ' u')
  return 1
elseif kind == 'a' and state == 'f' then
  redis.call('ZREM', KEYS[2], ticket)
  redis.call('HDEL', KEYS[3], ticket)
  return 1
end
return 0
