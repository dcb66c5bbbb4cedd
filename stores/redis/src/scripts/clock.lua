-- The one clock, shared by every script (prepended to each of them).
--
-- Invariant: the instant `now` a script returns is never below any instant an
-- earlier script returned for the same prefix, and between two scripts it
-- advances by at most the real time that passed (Redis `TIME`, a wall clock,
-- minus the sum of every backward step it took). A backward step reads as "no
-- time passed": `offset` grows by the step, so time flows on from the
-- high-water mark instead of stopping until the wall clock catches up. A
-- forward step cannot be told from idle time and advances `now` by the step
-- (see the crate docs for what that costs).
--
-- `epoch` is the instant the clock key was created: when it is missing the
-- store lost its state (or was never used), and every interval admitted
-- before is unknown.
--
-- Instants are integer microseconds: below 2^53, so Lua's doubles hold them
-- exactly; every value written is formatted with %.0f, never tostring.
local function int(x)
  return string.format('%.0f', x)
end

local LIMIT = 4503599627370496 -- 2^52: far above any Redis TIME, below 2^53

-- The places a learned ceiling (hash: n, since, hold) holds back at `now`: all
-- n for the hold period, then one fewer per hold period (core's `outside`).
local function ceiling_at(key, now)
  local c = redis.call('HMGET', key, 'n', 'since', 'hold')
  local n, since, hold = tonumber(c[1]), tonumber(c[2]), tonumber(c[3])
  if n == nil or since == nil or hold == nil or n <= 0 or hold <= 0 then
    return 0
  end
  local given_back = math.floor(math.max(now - since, 0) / hold)
  return math.max(n - given_back, 0)
end

local function read_clock(clock_key, explicit)
  local raw
  if explicit ~= nil and explicit ~= '' then
    raw = tonumber(explicit)
  else
    local t = redis.call('TIME')
    raw = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  if raw == nil or raw < 0 or raw >= LIMIT then
    return nil, nil, nil
  end
  local c = redis.call('HMGET', clock_key, 'hwm', 'offset', 'epoch')
  local hwm, offset, epoch = tonumber(c[1]), tonumber(c[2]), tonumber(c[3])
  local fresh = false
  if hwm == nil or offset == nil or epoch == nil then
    -- A partly written clock is read as a fresh store: the conservative side.
    hwm, offset, epoch, fresh = raw, 0, raw, true
  end
  local now = raw + offset
  if now < hwm then
    offset = offset + (hwm - now)
    now = hwm
  end
  if now >= LIMIT then
    return nil, nil, nil
  end
  redis.call('HSET', clock_key, 'hwm', int(now), 'offset', int(offset), 'epoch', int(epoch))
  return now, epoch, fresh
end
