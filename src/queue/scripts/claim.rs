//! The claim side of the lifecycle: claim (with the idle worker's registration for a
//! wake-up), lease renewal and the sweep of expired leases.

/// Promotes due parked jobs (bounded), then claims up to N ready jobs with fresh lease tokens.
/// ARGV: prefix, now_ms, lease_expiry_ms, worker_id, max_claims, promote_chunk, salt
/// (random per call: a token stays unique even when a Redis rollback repeats `claims`),
/// woken ('1': the worker waited on `wake` since its last claim), wait_ms (0: the caller
/// does not wait; else it will wait at most this long when nothing is claimed).
/// Returns {wait_until, {job_id, token, field, value, ...}, ...}: `wait_until` (0 when
/// something was claimed or the caller does not wait) is when the worker looks again on
/// its own: the earliest parked job's due time, capped by wait_ms. Such a worker is listed
/// in `idle` until then, so new work wakes it (see `WAKE_LUA`). A woken worker that claims
/// a full batch while more is ready passes the wake-up on.
/// Nothing about one job can fail the call (the jobs popped before it would be lost): an id
/// without a record, or whose key is not a hash, goes to the dead set here with the reason
/// in `orphans`; any other record is claimed as it is (a `claims` count that is no number
/// included), and the worker sends a record it cannot read to the dead set alone.
pub(super) const CLAIM: &str = r#"
local p, now = ARGV[1], tonumber(ARGV[2])
local worker, want, wait = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[9])
local first = redis.call('ZRANGE', p .. 'parked', 0, 0, 'WITHSCORES')
local promoted = false
if first[2] and tonumber(first[2]) <= now then
  local due = redis.call('ZRANGEBYSCORE', p .. 'parked', '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
  if #due > 0 then
    redis.call('ZREM', p .. 'parked', unpack(due))
    redis.call('RPUSH', p .. 'ready', unpack(due))
    promoted = true
  end
end
local function bury(id, why)
  redis.call('ZADD', p .. 'dead', now, id)
  fix(p, 'HSET', p .. 'orphans', id, why)
end
local out, leases, pops = {wait_until = 0}, {}, 0
local rows = {}
while #rows < want and pops < want * 4 do
  local got = redis.call('LMPOP', 1, p .. 'ready', 'LEFT', 'COUNT', want - #rows)
  if not got then break end
  for _, id in ipairs(got[2]) do
    pops = pops + 1
    local jkey = p .. 'job:' .. id
    local rec = redis.pcall('HGETALL', jkey)
    if failed(rec) then
      bury(id, 'job record is a ' .. redis.call('TYPE', jkey)['ok'] .. ', not a hash')
    elseif #rec == 0 then
      bury(id, 'no job record for a queued id')
    else
      local f, keep = {}, {}
      for i = 1, #rec, 2 do
        local k = rec[i]
        f[k] = rec[i + 1]
        if k ~= 'token' and k ~= 'worker' and k ~= 'claims' and k ~= 'waiting_on' then
          keep[#keep + 1] = k
          keep[#keep + 1] = rec[i + 1]
        end
      end
      local held = false
      if f.token and f.token ~= '' then
        local score = redis.call('ZSCORE', p .. 'leases', id)
        held = score and tonumber(score) > now
      end
      if not (f.state and TERMINAL[f.state]) and not held then
        local seq = 'x'
        if not f.claims or tonumber(f.claims) then seq = (tonumber(f.claims) or 0) + 1 end
        local token = worker .. '#' .. seq .. '.' .. ARGV[7]
        if seq ~= 'x' then
          redis.call('HSET', jkey, 'token', token, 'worker', worker, 'claims', seq)
        else
          redis.call('HSET', jkey, 'token', token, 'worker', worker)
        end
        if f.waiting_on then redis.call('HDEL', jkey, 'waiting_on') end
        leases[#leases + 1] = ARGV[3]
        leases[#leases + 1] = id
        keep[#keep + 1] = 'token'
        keep[#keep + 1] = token
        keep[#keep + 1] = 'worker'
        keep[#keep + 1] = worker
        keep[#keep + 1] = 'claims'
        keep[#keep + 1] = f.claims and seq == 'x' and f.claims or tostring(seq)
        table.insert(keep, 1, token)
        table.insert(keep, 1, id)
        rows[#rows + 1] = keep
      end
    end
  end
end
if #leases > 0 then redis.call('ZADD', p .. 'leases', unpack(leases)) end
local wait_until = 0
if #rows == 0 and wait > 0 then
  local nxt = first
  if promoted then nxt = redis.call('ZRANGE', p .. 'parked', 0, 0, 'WITHSCORES') end
  wait_until = now + wait
  if nxt[2] and tonumber(nxt[2]) < wait_until then wait_until = tonumber(nxt[2]) end
  redis.call('ZADD', p .. 'idle', wait_until, worker)
elseif ARGV[8] == '1' then
  redis.call('ZREM', p .. 'idle', worker)
  if #rows == want and redis.call('LLEN', p .. 'ready') > 0 then signal(p) end
end
table.insert(rows, 1, wait_until)
return rows
"#;

/// Extends the leases this worker still holds. ARGV: prefix, expiry_ms, [job_id, token]...
/// Returns the ids whose lease was lost (token changed: swept and claimed elsewhere).
pub(super) const RENEW: &str = r#"
local p, lost = ARGV[1], {}
for i = 3, #ARGV, 2 do
  if redis.call('HGET', p .. 'job:' .. ARGV[i], 'token') == ARGV[i + 1] then
    redis.call('ZADD', p .. 'leases', ARGV[2], ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"#;

/// Returns expired leases to the ready list (bounded) and forgets workers that died idle.
/// ARGV: prefix, now_ms, chunk (0: return no lease, only look).
/// Returns {recovered, server seconds, server microseconds, earliest lease expiry (ms, 0
/// when no lease is held)}: the caller keeps its view of the server clock by it and
/// sweeps again when the next lease can expire.
pub(super) const SWEEP: &str = r#"
local p, now, chunk = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local n = 0
local nxt = redis.call('ZRANGE', p .. 'leases', 0, 0, 'WITHSCORES')
if chunk > 0 then
  if nxt[2] and tonumber(nxt[2]) <= now then
    local ids = redis.call('ZRANGEBYSCORE', p .. 'leases', '-inf', now, 'LIMIT', 0, chunk)
    for _, id in ipairs(ids) do
      local jkey = p .. 'job:' .. id
      redis.call('ZREM', p .. 'leases', id)
      redis.pcall('HDEL', jkey, 'token', 'worker')
      incr(p, jkey, 'redeliveries', 1)
      redis.call('RPUSH', p .. 'ready', id)
    end
    n = #ids
    if n > 0 then
      incr(p, p .. 'stats', 'lease_recoveries', n)
      signal(p)
    end
    nxt = redis.call('ZRANGE', p .. 'leases', 0, 0, 'WITHSCORES')
  end
end
fix(p, 'ZREMRANGEBYSCORE', p .. 'idle', '-inf', now - IDLE_STALE)
return {n, tonumber(t[1]), tonumber(t[2]), nxt[2] and tonumber(nxt[2]) or 0}
"#;
