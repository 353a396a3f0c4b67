//! The admission scripts: the fleet-wide rate (GCRA on the Redis clock) and cool-down,
//! in-flight slots, budget reservations, provider pauses, and the two gates that check
//! all that applies before a submit or a poll in one round trip.

/// Shared Lua: each admission check as a function, used by the single-purpose scripts
/// and by the gates. Limiter state that is garbage (a cool-down or GCRA time that is not a
/// number, a rate counter that is not one, a slot set or pause of the wrong type, a pause
/// whose end is not a time) is treated as absent and overwritten, and noted in `REPAIRED`.
pub(super) const ADMISSION_LUA: &str = r#"
-- The fleet-wide cool-down, then GCRA: 0 to go now, else the milliseconds to wait.
-- `cd` is the cool-down's end (Redis clock, ms; 0 = none), read with the account pause
-- (see `holds`). T = emission interval (0: no rate limit), tau = tolerance. GCRA reads
-- the server's TIME; without a rate the caller's `now` (the server clock as the worker
-- carries it, a round trip off at most) is close enough for the cool-down.
local function admit(p, prov, T, tau, now, cd)
  if T > 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  if cd > now then return cd - now end
  if T > 0 then
    local key = p .. 'gcra:' .. prov
    local tat = num_at(p, key) or 0
    if tat < now then tat = now end
    if tat - tau > now then return math.ceil(tat - tau - now) end
    local nxt = tat + T
    redis.call('SET', key, string.format('%.3f', nxt), 'PX', math.ceil(nxt - now + tau) + 1000)
  end
  return 0
end
-- Takes (or refreshes) the job's slot: 1 held, 0 full. Expired slots are reclaimed
-- first and wake as many waiters — but only from jobs that no longer hold one (gone, or
-- past submitting/polling): a live generation keeps its slot however long its worker
-- stalled, so the cap holds.
local function take_slot(p, prov, id, cap, ttl, now)
  local key = p .. 'slots:' .. prov
  local n = 0
  for _, h in ipairs(fix(p, 'ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, 100)) do
    local st = redis.pcall('HGET', p .. 'job:' .. h, 'state')
    if st and not failed(st) and HOLD[st] then
      redis.call('ZADD', key, now + ttl, h)
    else
      redis.call('ZREM', key, h)
      n = n + 1
    end
  end
  if n > 0 then
    incr(p, p .. 'stats', 'slot_reclaims', n)
    wake(p, prov, n)
  end
  local exp = now + ttl
  if redis.call('ZSCORE', key, id) then
    redis.call('ZADD', key, exp, id)
    return 1
  end
  if cap > 0 and redis.call('ZCARD', key) >= cap then return 0 end
  redis.call('ZADD', key, exp, id)
  return 1
end
-- Reserves a job's cost against its batch's budget, once per job: 1 go (reserved, already
-- reserved, or no budget), 0 over budget, -1 budget but unknown cost ('').
local function reserve(p, bid, id, cost)
  local bkey, jkey = p .. 'batch:' .. bid, p .. 'job:' .. id
  local max = redis.call('HGET', bkey, 'max_cost')
  if not max then return 1 end
  if redis.call('HEXISTS', jkey, 'cost_reserved') == 1 then return 1 end
  if cost == '' then return -1 end
  local committed = nanos(redis.call('HGET', bkey, 'cost_committed'))
  if committed + nanos(cost) > nanos(max) then return 0 end
  redis.call('HSET', bkey, 'cost_committed', usd(committed + nanos(cost)))
  redis.call('HSET', jkey, 'cost_reserved', cost)
  return 1
end
-- A provider's holds, both in one hash `pause:<prov>` (one read per gate): the account
-- pause (`message`, `until`: ms on the pausing worker's clock) and the fleet-wide 429
-- cool-down (`cooldown`: ms on the Redis clock). Returns the pause's end if it is still
-- on (else 0) and the cool-down's end (0 if none). A key of the wrong type is deleted; a
-- pause end or cool-down that is not a number is removed; each treated as absent.
local function holds(p, prov, now)
  local key = p .. 'pause:' .. prov
  local v = redis.pcall('HMGET', key, 'until', 'cooldown')
  if failed(v) then
    redis.call('DEL', key)
    repaired(p, key, 'of the wrong type; treated as absent')
    return 0, 0
  end
  local untl, cd = tonumber(v[1]), tonumber(v[2])
  if v[1] and not untl then
    redis.call('HDEL', key, 'message', 'until')
    repaired(p, key, 'no time to pause until; treated as absent')
  end
  if v[2] and not cd then
    redis.call('HDEL', key, 'cooldown')
    repaired(p, key, 'cool-down not a number; treated as absent')
  end
  if not untl or untl <= now then untl = 0 end
  return untl, cd or 0
end
"#;

/// Sets the fleet-wide cool-down (only ever extended), the `cooldown` field of the
/// provider's `pause:` hash (see `holds`). ARGV: prefix, provider, ms.
/// Returns {the cool-down's end (Redis clock, ms), repaired}.
pub(super) const COOLDOWN: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local _, cur = holds(ARGV[1], ARGV[2], now)
local untl = now + tonumber(ARGV[3])
if cur < untl then
  fix(ARGV[1], 'HSET', ARGV[1] .. 'pause:' .. ARGV[2], 'cooldown', untl)
  return {untl, REPAIRED}
end
return {cur, REPAIRED}
"#;

/// Everything before a submit, in order, in one round trip: the provider's account pause,
/// the batch budget, the in-flight slot (cap > 0) and the fleet rate (global = '1').
/// ARGV: prefix, provider, now_ms, batch_id, job_id, cost ('' = unknown), cap, slot_ttl_ms,
/// global, emission_interval_ms, tolerance_ms.
/// Returns {0, 0} go · {1, until} paused · {2, 0} over budget · {3, 0} budget but unknown
/// cost · {4, 0} at the cap · {5, ms} rate: wait; each with the repaired keys third.
pub(super) const GATE_SUBMIT: &str = r#"
local p, prov, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local untl, cd = holds(p, prov, now)
if untl > 0 then return {1, untl, REPAIRED} end
local r = reserve(p, ARGV[4], ARGV[5], ARGV[6])
if r == 0 then return {2, 0, REPAIRED} end
if r == -1 then return {3, 0, REPAIRED} end
local cap = tonumber(ARGV[7])
if cap > 0 and take_slot(p, prov, ARGV[5], cap, tonumber(ARGV[8]), now) == 0 then
  return {4, 0, REPAIRED}
end
if ARGV[9] == '1' then
  local wait = admit(p, prov, tonumber(ARGV[10]), tonumber(ARGV[11]), now, cd)
  if wait > 0 then return {5, wait, REPAIRED} end
end
return {0, 0, REPAIRED}
"#;

/// Everything before a poll in one round trip: the account pause, then the fleet rate
/// and cool-down (global = '1'). ARGV: prefix, provider, now_ms, global,
/// emission_interval_ms, tolerance_ms. Returns {0, 0} go · {1, until} · {5, ms}, each with
/// the repaired keys third.
pub(super) const GATE_POLL: &str = r#"
local p, prov, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local untl, cd = holds(p, prov, now)
if untl > 0 then return {1, untl, REPAIRED} end
if ARGV[4] == '1' then
  local wait = admit(p, prov, tonumber(ARGV[5]), tonumber(ARGV[6]), now, cd)
  if wait > 0 then return {5, wait, REPAIRED} end
end
return {0, 0, REPAIRED}
"#;

/// Lifts a provider's account pause (a cool-down stays) and sends the jobs that waited
/// for it back to the ready list. ARGV: prefix, provider. Returns the number of jobs woken.
pub(super) const RESUME: &str = r#"
local p, prov = ARGV[1], ARGV[2]
fix(p, 'HDEL', p .. 'pause:' .. prov, 'message', 'until')
return wake_list(p, 'paused:' .. prov, 0)
"#;

/// A provider event says a generation finished: if its job is parked, make it due now.
/// ARGV: prefix, provider, upstream_id, now_ms. Returns 1 when a parked job was moved up.
pub(super) const POKE: &str = r#"
local p = ARGV[1]
local id = redis.call('HGET', p .. 'upstreams:' .. ARGV[2], ARGV[3])
if not id then return 0 end
local due = redis.call('ZSCORE', p .. 'parked', id)
if not due or tonumber(due) <= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', p .. 'parked', ARGV[4], id)
signal(p)
return 1
"#;

/// Sets a batch's budget and sends the jobs that waited for budget back to the ready
/// list (they check it again). ARGV: prefix, batch_id, max_cost. Returns jobs woken.
pub(super) const SET_BUDGET: &str = r#"
local p, bid = ARGV[1], ARGV[2]
redis.call('HSET', p .. 'batch:' .. bid, 'max_cost', ARGV[3])
return wake_list(p, 'budget:' .. bid, 0)
"#;

/// Adds workers' request counts to the fleet's per-second counters (`admission::rates`),
/// each kept 5 s; a counter that is not a number is reset to the count. ARGV: prefix, then
/// (provider, second, count) triples. Returns the repaired keys.
pub(super) const ADD_RATES: &str = r#"
local p = ARGV[1]
for i = 2, #ARGV - 2, 3 do
  local ck = p .. 'rate:' .. ARGV[i] .. ':' .. ARGV[i + 1]
  local n = redis.pcall('INCRBY', ck, ARGV[i + 2])
  if failed(n) then
    redis.call('SET', ck, ARGV[i + 2], 'PX', 5000)
    repaired(p, ck, 'not a counter; reset to the count')
  else
    redis.call('PEXPIRE', ck, 5000)
  end
end
return REPAIRED
"#;
