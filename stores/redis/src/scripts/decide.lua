-- The decision: admit one request of one budget now, or say when to ask again.
--
-- KEYS[1] clock (hash: hwm, offset, epoch)      KEYS[2] ends (zset: ticket -> e_i)
-- KEYS[3] live (hash: ticket -> "s_i state")     KEYS[4] meta (hash: seq, spec)
-- KEYS[5] the scope's ban (string: until)        KEYS[6] the budget's pause (string: until)
-- KEYS[7] the budget's reserve for traffic of others (hash: n, until)
-- KEYS[8] the budget's learned ceiling (hash: n, since, hold)
-- ARGV[1] explicit now in us, or '' for Redis TIME (only the crate's own tests pass one)
-- ARGV[2] max_flight in us      ARGV[3] spec (the limits and max_flight, as text)
-- ARGV[4], ARGV[5], ... pairs (N, W in us), one per server window
--
-- Invariant (core's interval log, the same integers): a request is admitted
-- at `now` only if, for every window (N, W), fewer than N entries of `ends`
-- have e_i >= now - W, where e_i is the report instant of a reported request
-- and s_i + max_flight of one in flight or unanswered. Entries with
-- e_i < now - W_longest - max_flight are removed: `now` never goes back, so
-- they never count again (kept max_flight longer than needed, so that a
-- report reading `Remaining-Req` still finds every sharer's request that
-- the server can have counted with it). A denial writes nothing but the
-- clock.
--
-- Invariant (lost state): while now <= epoch + max_flight + W_longest no
-- request is admitted. Every interval the store may have lost began before
-- `epoch` (the instant the clock key was found missing) and reached the
-- server by its start + max_flight, so it counts no later than that bound.
--
-- Invariant (shared feedback): no admission while now < the scope's ban or
-- the budget's pause; while now < the reserve's `until`, every window of the
-- shortest length admits only while fewer than max(N - n, 1) count; the
-- same with n the places a learned ceiling holds back, when it holds back more.
--
-- Reply: {1, ticket, now} or {0, reason, retry_at, now} with reason
-- 1 full (settled requests: nothing admits before retry_at),
-- 2 full of requests in flight (a report may admit sooner),
-- 3 store found empty (lost state), 4 banned, 5 paused after a 429,
-- 6 another spec is stored for this budget (retry_at is 0).
local now, epoch = read_clock(KEYS[1], ARGV[1])
if now == nil then
  return redis.error_reply('upbit-limiter: time out of range')
end
local max_flight = tonumber(ARGV[2])
local spec = ARGV[3]
if max_flight == nil or max_flight <= 0 or max_flight >= LIMIT or #ARGV < 5 or #ARGV % 2 ~= 1 then
  return redis.error_reply('upbit-limiter: malformed decision arguments')
end
local windows = {}
local longest = 0
for i = 4, #ARGV, 2 do
  local n, w = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if n == nil or w == nil or n < 1 or n > 1000 or w <= 0 or w >= LIMIT then
    return redis.error_reply('upbit-limiter: malformed window')
  end
  windows[#windows + 1] = { n, w }
  if w > longest then
    longest = w
  end
end

local stored = redis.call('HGET', KEYS[4], 'spec')
if not stored then
  redis.call('HSET', KEYS[4], 'spec', spec)
elseif stored ~= spec then
  return { 0, 6, 0, now }
end

local open_at = epoch + max_flight + longest + 1
if now < open_at then
  return { 0, 3, open_at, now }
end

local ban = tonumber(redis.call('GET', KEYS[5]) or '')
if ban ~= nil and now < ban then
  return { 0, 4, ban, now }
end
local pause = tonumber(redis.call('GET', KEYS[6]) or '')
if pause ~= nil and now < pause then
  return { 0, 5, pause, now }
end

-- The reserve for traffic that does not go through this store.
local shortest = longest
for _, win in ipairs(windows) do
  shortest = math.min(shortest, win[2])
end
local reserved = 0
local reserve = redis.call('HMGET', KEYS[7], 'n', 'until')
local reserve_until = tonumber(reserve[2]) or 0
if now < reserve_until then
  reserved = tonumber(reserve[1]) or 0
end
local ceiling = ceiling_at(KEYS[8], now)
local others = reserved
reserved = math.max(reserved, ceiling)
local function room(win)
  if win[2] == shortest then
    return math.max(win[1] - reserved, 1)
  end
  return win[1]
end

local horizon = now - longest
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. int(horizon - max_flight))
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('HDEL', KEYS[3], unpack(gone))
end

local full = false
for _, win in ipairs(windows) do
  if redis.call('ZCOUNT', KEYS[2], int(now - win[2]), '+inf') >= room(win) then
    full = true
    break
  end
end

if full then
  -- When there is room if nothing is reported, and the same with every
  -- request in flight reported now (the earliest a report can come).
  local entries = redis.call('ZRANGEBYSCORE', KEYS[2], int(horizon), '+inf', 'WITHSCORES')
  local members, ends, reported = {}, {}, {}
  for i = 1, #entries, 2 do
    members[#members + 1] = entries[i]
    ends[#ends + 1] = tonumber(entries[i + 1])
  end
  local states = redis.call('HMGET', KEYS[3], unpack(members))
  for i, e in ipairs(ends) do
    local v = states[i]
    if v and string.sub(v, -1) == 'f' then
      reported[i] = math.min(e, now)
    else
      reported[i] = e
    end
  end
  local function free_at(list, n_of)
    table.sort(list, function(a, b)
      return a > b
    end)
    local at = now
    for _, win in ipairs(windows) do
      local nth = list[n_of(win)]
      if nth ~= nil then
        at = math.max(at, nth + win[2] + 1)
      end
    end
    return at
  end
  local function after_reserve(win)
    if win[2] == shortest then
      return math.max(win[1] - ceiling, 1)
    end
    return win[1]
  end
  local at = free_at(ends, room)
  local reason = 1
  if free_at(reported, room) < at then
    reason = 2
  end
  if others > ceiling then
    -- The reserve ends at `reserve_until`: room then if what the ceiling
    -- leaves (the full N without one) has it.
    local copy = {}
    for i, e in ipairs(ends) do
      copy[i] = e
    end
    local unreserved = math.max(free_at(copy, after_reserve), reserve_until)
    if unreserved < at then
      at, reason = unreserved, 1
    end
  end
  return { 0, reason, at, now }
end

local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
local ticket = int(epoch) .. '-' .. seq
redis.call('ZADD', KEYS[2], int(now + max_flight), ticket)
redis.call('HSET', KEYS[3], ticket, int(now) .. ' f')
return { 1, ticket, now }
