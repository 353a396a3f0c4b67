//! The job lifecycle scripts: enqueue, claim, renew, transition, sweep, operator moves
//! and purge. Each changes the job record, the queue structures and the batch counters
//! in one atomic step.

/// Creates the batch (once) and its jobs (only those that do not exist yet).
/// ARGV: prefix, batch_id, spec_json, total, now_ms, digest, max_cost ('' = none),
/// on_done ('1' = announce completions), media (the digests of the payloads stored beside
/// the spec, space-separated; '' = none), [job_id, payload]...
/// Returns the number of jobs added, or -1 when the batch exists with another digest.
pub(super) const ENQUEUE: &str = r#"
local p, bid = ARGV[1], ARGV[2]
local bkey = p .. 'batch:' .. bid
if redis.call('HSETNX', bkey, 'digest', ARGV[6]) == 1 then
  redis.call('HSET', bkey, 'spec', ARGV[3], 'total', ARGV[4], 'created_at', ARGV[5], 'done', 0)
  if ARGV[7] ~= '' then redis.call('HSET', bkey, 'max_cost', ARGV[7]) end
  if ARGV[8] == '1' then redis.call('HSET', bkey, 'on_done', '1') end
  if ARGV[9] ~= '' then redis.call('HSET', bkey, 'media', ARGV[9]) end
  redis.call('ZADD', p .. 'batches', ARGV[5], bid)
elseif redis.call('HGET', bkey, 'digest') ~= ARGV[6] then
  return -1
end
local added = 0
for i = 10, #ARGV, 2 do
  local jkey = p .. 'job:' .. ARGV[i]
  if redis.call('EXISTS', jkey) == 0 then
    redis.call('HSET', jkey, 'state', S.queued, 'payload', ARGV[i + 1], 'batch', bid,
               'attempts', 0, 'created_at', ARGV[5])
    redis.call('RPUSH', p .. 'ready', ARGV[i])
    added = added + 1
  end
end
if added > 0 then incr(p, bkey, 'n:' .. S.queued, added) end
return added
"#;

/// Promotes due parked jobs (bounded), then claims up to N ready jobs with fresh lease tokens.
/// ARGV: prefix, now_ms, lease_expiry_ms, worker_id, max_claims, promote_chunk, salt
/// (random per call: a token stays unique even when a Redis rollback repeats `claims`).
/// Returns { {job_id, token, field, value, ...}, ... }.
/// Nothing about one job can fail the call (the jobs popped before it would be lost): an id
/// without a record, or whose key is not a hash, goes to the dead set here with the reason
/// in `orphans`; any other record is claimed as it is (a `claims` count that is no number
/// included), and the worker sends a record it cannot read to the dead set alone.
pub(super) const CLAIM: &str = r#"
local p, now = ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', p .. 'parked', '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
if #due > 0 then
  redis.call('ZREM', p .. 'parked', unpack(due))
  redis.call('RPUSH', p .. 'ready', unpack(due))
end
local function bury(id, why)
  redis.call('ZADD', p .. 'dead', now, id)
  fix(p, 'HSET', p .. 'orphans', id, why)
end
local out, want, pops = {}, tonumber(ARGV[5]), 0
while #out < want and pops < want * 4 do
  pops = pops + 1
  local id = redis.call('LPOP', p .. 'ready')
  if not id then break end
  local jkey = p .. 'job:' .. id
  local st = redis.pcall('HGET', jkey, 'state')
  local held = redis.call('ZSCORE', p .. 'leases', id)
  if failed(st) then
    bury(id, 'job record is a ' .. redis.call('TYPE', jkey)['ok'] .. ', not a hash')
  elseif not st and redis.call('EXISTS', jkey) == 0 then
    bury(id, 'no job record for a queued id')
  elseif not (st and TERMINAL[st]) and not (held and tonumber(held) > now) then
    local seq = redis.pcall('HINCRBY', jkey, 'claims', 1)
    if failed(seq) then seq = 'x' end
    local token = ARGV[4] .. '#' .. seq .. '.' .. ARGV[7]
    redis.call('HSET', jkey, 'token', token, 'worker', ARGV[4])
    redis.call('HDEL', jkey, 'waiting_on')
    redis.call('ZADD', p .. 'leases', ARGV[3], id)
    local rec = redis.call('HGETALL', jkey)
    table.insert(rec, 1, token)
    table.insert(rec, 1, id)
    out[#out + 1] = rec
  end
end
return out
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

/// Moves a job to a new state under its lease token, with the record fields, the batch
/// counters, the queue structures and the provider's in-flight slot in one step.
/// ARGV: prefix, job_id, token, nonce, new_state, mode, at_ms, now_ms, provider, cap,
/// slot_ttl_ms, wait_list, [field, value]...
/// mode: keep (hold the lease until at_ms) | park (parked until at_ms) | release (back to
/// ready) | done (terminal) | wait (onto `wait_list`, with a parked safety net at at_ms).
/// An empty new_state keeps the current state; an empty value deletes the field.
/// A job holds a slot of its provider while submitting or polling; any other state frees
/// it and wakes one job waiting for a slot.
/// A terminal step numbers the job's outcome: the `outcome` field it sets (a stage took
/// the number before writing its result line), else one more than the last; `finished_at`
/// is the one it sets, else now.
/// Returns {'ok', batch_finished, rerouted, repaired} or {'lost', current_state}. A replay
/// of the same nonce (a retried call whose reply was lost) returns 'ok' again. `repaired`
/// lists damaged counters and keys the step repaired (see `REPAIR_LUA`). `rerouted` = 1:
/// asked for `submit_unknown` but the generation's id is known, so the job was parked
/// in `polling` instead.
pub(super) const TRANSITION: &str = r#"
local p, id, new, mode, at = ARGV[1], ARGV[2], ARGV[5], ARGV[6], ARGV[7]
local now, prov = tonumber(ARGV[8]), ARGV[9]
local jkey = p .. 'job:' .. id
local cur = redis.call('HMGET', jkey, 'token', 'state', 'batch', 'last_tx', 'upstream_id')
if cur[1] ~= ARGV[3] then
  -- A replay of an applied call (its reply was lost) is ok — unless it kept the lease
  -- and the lease has changed hands since: then this worker no longer owns the job.
  if cur[4] == ARGV[4] and mode ~= 'keep' then return {'ok', 0, 0, REPAIRED} end
  return {'lost', cur[2] or ''}
end
-- A job whose generation is known (its id recorded, fenced, by a worker that lost the
-- lease mid-POST) is never given up as unknown: it is polled instead.
local rerouted = 0
if new == S.submit_unknown and cur[5] then
  new, mode, at, rerouted = S.polling, 'park', now, 1
end
local bkey = cur[3] and (p .. 'batch:' .. cur[3])
if new ~= '' and cur[2] ~= new then
  redis.call('HSET', jkey, 'state', new)
  if bkey then
    if cur[2] then incr(p, bkey, 'n:' .. cur[2], -1) end
    incr(p, bkey, 'n:' .. new, 1)
  end
  incr(p, p .. 'stats', 'to:' .. new, 1)
end
local numbered = false
for i = 13, #ARGV, 2 do
  if ARGV[i] == 'outcome' then numbered = true end
  if ARGV[i + 1] == '' then redis.call('HDEL', jkey, ARGV[i])
  else
    redis.call('HSET', jkey, ARGV[i], ARGV[i + 1])
    if ARGV[i] == 'upstream_id' and prov ~= '' then
      fix(p, 'HSET', p .. 'upstreams:' .. prov, ARGV[i + 1], id)
    end
  end
end
redis.call('HSET', jkey, 'last_tx', ARGV[4], 'updated_at', now)
local final = (new ~= '' and new) or cur[2]
if prov ~= '' then
  local skey = p .. 'slots:' .. prov
  if HOLD[final] and mode ~= 'done' then
    local base = math.max(tonumber(at), now)
    fix(p, 'ZADD', skey, base + tonumber(ARGV[11]), id)
  elseif fix(p, 'ZREM', skey, id) == 1 then
    wake(p, prov, 1)
  end
end
if mode == 'keep' then
  redis.call('ZADD', p .. 'leases', at, id)
  return {'ok', 0, rerouted, REPAIRED}
end
redis.call('HDEL', jkey, 'token', 'worker')
redis.call('ZREM', p .. 'leases', id)
if mode == 'park' then
  redis.call('ZADD', p .. 'parked', at, id)
elseif mode == 'release' then
  redis.call('RPUSH', p .. 'ready', id)
elseif mode == 'wait' then
  redis.call('ZADD', p .. 'parked', at, id)
  redis.call('HSET', jkey, 'waiting_on', ARGV[12])
  if redis.call('HGET', jkey, 'listed_on') ~= ARGV[12] then
    fix(p, 'RPUSH', p .. ARGV[12], id)
    redis.call('HSET', jkey, 'listed_on', ARGV[12])
  end
  local cap = tonumber(ARGV[10])
  if ARGV[12] == 'waiting:' .. prov and
     (cap == 0 or fix(p, 'ZCARD', p .. 'slots:' .. prov) < cap) then
    wake(p, prov, 1)   -- a slot freed meanwhile: no missed wake-up
  end
elseif mode == 'done' then
  redis.call('HSETNX', jkey, 'finished_at', now)
  if not numbered then incr(p, jkey, 'outcome', 1) end
  if new == S.dead then redis.call('ZADD', p .. 'dead', now, id) end
  if RELEASE[new] then release_budget(p, jkey, cur[3]) end
  if bkey then
    local done = incr(p, bkey, 'done', 1)
    if done == tonumber(redis.call('HGET', bkey, 'total')) then
      redis.call('HSET', bkey, 'finished_at', now)
      if redis.call('HGET', bkey, 'on_done') == '1' then
        -- Announce this completion exactly once: a job of its own, delivered durably.
        local n = incr(p, bkey, 'completions', 1)
        local hid = 'done:' .. cur[3] .. ':' .. n
        redis.call('HSET', p .. 'job:' .. hid, 'state', S.queued, 'kind', 'batch_done',
                   'of_batch', cur[3], 'completion', n, 'attempts', 0, 'created_at', now)
        redis.call('RPUSH', p .. 'ready', hid)
      end
      return {'ok', 1, rerouted, REPAIRED}
    end
  end
end
return {'ok', 0, rerouted, REPAIRED}
"#;

/// Records an upstream id learned by a worker that lost its lease mid-POST, fenced by the
/// submit's own id (not the lease token): only the submit that wrote `submit_id` may.
/// A job already given up as unknown (or requeued) is polled again, never re-POSTed.
/// ARGV: prefix, job_id, submit_id, upstream_id, provider, now_ms, poll_at_ms, slot_ttl_ms.
/// Returns 'fenced' (a later submit owns the job), 'known' (an id is recorded already),
/// 'recorded' (id stored; the job's current owner will poll it), 'was_cancelled' (stored; the
/// job was cancelled meanwhile) or 'revived'.
pub(super) const RECORD_UPSTREAM: &str = r#"
local p, id, prov, now = ARGV[1], ARGV[2], ARGV[5], tonumber(ARGV[6])
local jkey = p .. 'job:' .. id
local f = redis.call('HMGET', jkey, 'submit_id', 'upstream_id', 'state', 'batch')
if f[1] ~= ARGV[3] then return 'fenced' end
if f[2] then return 'known' end
redis.call('HSET', jkey, 'upstream_id', ARGV[4], 'submitted_at', now, 'polls', 0,
           'attempts', 0, 'updated_at', now)
fix(p, 'HSET', p .. 'upstreams:' .. prov, ARGV[4], id)
local st = f[3]
if st == S.cancelled then
  -- Cancelled while the POST was out: the generation exists; the worker cancels it
  -- upstream where the provider can. Its reservation stays (it may be billed).
  redis.call('HDEL', jkey, 'cancel_requested')
  return 'was_cancelled'
end
if st ~= S.submit_unknown and st ~= S.queued then return 'recorded' end
redis.call('HSET', jkey, 'state', S.polling)
redis.call('HDEL', jkey, 'token', 'worker', 'waiting_on', 'finished_at')
redis.call('ZREM', p .. 'leases', id)
redis.call('ZREM', p .. 'dead', id)
redis.call('ZADD', p .. 'parked', ARGV[7], id)
fix(p, 'ZADD', p .. 'slots:' .. prov, tonumber(ARGV[7]) + tonumber(ARGV[8]), id)
incr(p, p .. 'stats', 'to:' .. S.polling, 1)
if f[4] then
  local bkey = p .. 'batch:' .. f[4]
  incr(p, bkey, 'n:' .. st, -1)
  incr(p, bkey, 'n:' .. S.polling, 1)
  if TERMINAL[st] then
    incr(p, bkey, 'done', -1)
    redis.call('HDEL', bkey, 'finished_at')
  end
end
return 'revived'
"#;

/// Returns expired leases to the ready list (bounded). ARGV: prefix, now_ms, chunk.
/// Returns the number of jobs recovered.
pub(super) const SWEEP: &str = r#"
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p .. 'leases', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local jkey = p .. 'job:' .. id
  redis.call('ZREM', p .. 'leases', id)
  redis.pcall('HDEL', jkey, 'token', 'worker')
  incr(p, jkey, 'redeliveries', 1)
  redis.call('RPUSH', p .. 'ready', id)
end
if #ids > 0 then incr(p, p .. 'stats', 'lease_recoveries', #ids) end
return #ids
"#;

/// Operator moves (cancel, retry, reconcile): jobs whose state is allowed go to `to`, with
/// counters, queue structures and the done count kept right. A running stage loses its
/// token, so its next transition finds the lease lost and stops. A move to a terminal
/// state numbers a new outcome of the job (see TRANSITION).
/// Two moves are not what they seem, so nothing paid for is lost or bought twice:
/// - a job cancelled while `submitting` keeps its budget reservation and gets
///   `cancel_requested`: its POST may have created a generation, and the submitting
///   worker records its id, cancels it upstream where it can, and releases the
///   reservation only when the POST certainly created nothing;
/// - a job requeued (`retry`) that has a generation id and did not fail upstream (dead,
///   timed out, cancelled) is polled again — a fresh deadline, the same generation —
///   instead of submitted again.
///
/// ARGV: prefix, now_ms, to_state, reason, allowed_from (comma list), job_id...
/// Returns the ids moved.
pub(super) const ADMIN_MOVE: &str = r#"
local p, now, to, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local allowed = {}
for s in string.gmatch(ARGV[5], '[^,]+') do allowed[s] = true end
local moved = {}
for i = 6, #ARGV do
  local id = ARGV[i]
  local jkey = p .. 'job:' .. id
  local cur = redis.call('HMGET', jkey, 'state', 'batch', 'provider', 'upstream_id')
  local st, prov = cur[1], cur[3]
  if st and allowed[st] and st ~= to then
    local dest = to
    if to == S.queued and cur[4] and st ~= S.failed then dest = S.polling end
    if prov and not HOLD[dest] and fix(p, 'ZREM', p .. 'slots:' .. prov, id) == 1 then
      wake(p, prov, 1)
    end
    redis.call('HSET', jkey, 'state', dest, 'updated_at', now)
    -- Whatever it waited for, it waits no more (its list entry is dropped when reached).
    redis.call('HDEL', jkey, 'token', 'worker', 'waiting_on')
    redis.call('ZREM', p .. 'leases', id)
    redis.call('ZREM', p .. 'parked', id)
    incr(p, p .. 'stats', 'to:' .. dest, 1)
    local bkey = cur[2] and (p .. 'batch:' .. cur[2])
    if bkey then
      incr(p, bkey, 'n:' .. st, -1)
      incr(p, bkey, 'n:' .. dest, 1)
    end
    local pending_post = (dest == S.cancelled and st == S.submitting)
    if pending_post then redis.call('HSET', jkey, 'cancel_requested', 1) end
    if RELEASE[dest] and not pending_post then
      release_budget(p, jkey, cur[2])
    end
    if dest == S.queued or dest == S.polling then
      local last = redis.call('HGET', jkey, 'error')
      if last then redis.call('HSET', jkey, 'last_error', last) end
      redis.call('HDEL', jkey, 'polls', 'output_url', 'file', 'sha256', 'bytes',
                 'finished_at', 'error', 'cancel_requested')
      redis.call('HSET', jkey, 'attempts', 0)
      redis.call('ZREM', p .. 'dead', id)
      if dest == S.polling then
        redis.call('HSET', jkey, 'submitted_at', now, 'polls', 0)
        redis.call('ZADD', p .. 'parked', now, id)
        fix(p, 'ZADD', p .. 'slots:' .. prov, now, id)
      else
        redis.call('HDEL', jkey, 'upstream_id', 'submitted_at')
        redis.call('RPUSH', p .. 'ready', id)
      end
      if bkey and TERMINAL[st] then
        incr(p, bkey, 'done', -1)
        redis.call('HDEL', bkey, 'finished_at')
      end
    else
      redis.call('HSET', jkey, 'finished_at', now)
      incr(p, jkey, 'outcome', 1)   -- a new outcome: its own result line
      if reason ~= '' then redis.call('HSET', jkey, 'error', reason) end
      if dest == S.dead then redis.call('ZADD', p .. 'dead', now, id) end
      if bkey and not TERMINAL[st] then
        local done = incr(p, bkey, 'done', 1)
        if done == tonumber(redis.call('HGET', bkey, 'total')) then
          redis.call('HSET', bkey, 'finished_at', now)
        end
      end
    end
    moved[#moved + 1] = id
  end
end
return moved
"#;

/// After a POST that certainly created nothing, by a worker whose job was cancelled
/// meanwhile: gives the budget reservation back. ARGV: prefix, job_id. Returns 1 when a
/// reservation was released.
pub(super) const RELEASE_CANCELLED: &str = r#"
local p = ARGV[1]
local jkey = p .. 'job:' .. ARGV[2]
local f = redis.call('HMGET', jkey, 'state', 'cancel_requested', 'batch')
if f[1] ~= S.cancelled or not f[2] then return 0 end
redis.call('HDEL', jkey, 'cancel_requested')
release_budget(p, jkey, f[3])
return 1
"#;

/// Forgets a finished batch: its job records, their dead-set and upstream-index entries,
/// its announcement jobs, its stored media and the batch hash (with the upload URLs
/// recorded in it). ARGV: prefix, batch_id, jobs (how many job records the batch has, as
/// its reader confirmed them: never the stored `total` alone, which may be damaged, and is
/// looped over here).
/// Returns the number of job records deleted, -1 when the batch is not finished, or -2
/// while one of its completion announcements is not delivered (or given up) yet.
pub(super) const PURGE: &str = r#"
local p, bid, total = ARGV[1], ARGV[2], tonumber(ARGV[3])
local bkey = p .. 'batch:' .. bid
local b = redis.call('HMGET', bkey, 'total', 'done', 'completions')
if not b[1] then return 0 end
if (tonumber(b[2]) or 0) < total then return -1 end
local completions = math.min(tonumber(b[3]) or 0, 100000)
for c = 1, completions do
  local st = redis.pcall('HGET', p .. 'job:done:' .. bid .. ':' .. c, 'state')
  if st and not failed(st) and not TERMINAL[st] then return -2 end
end
local n = 0
for i = 0, total - 1 do
  local id = string.format(JOB_ID_FORMAT, bid, i)
  local jkey = p .. 'job:' .. id
  local f = redis.pcall('HMGET', jkey, 'provider', 'upstream_id')
  if not failed(f) and f[1] and f[2] then fix(p, 'HDEL', p .. 'upstreams:' .. f[1], f[2]) end
  redis.call('ZREM', p .. 'dead', id)
  n = n + redis.call('DEL', jkey)
end
for c = 1, completions do
  local hid = 'done:' .. bid .. ':' .. c
  redis.call('ZREM', p .. 'dead', hid)
  redis.call('DEL', p .. 'job:' .. hid)
end
local media = redis.call('HGET', bkey, 'media') or ''
for sha in string.gmatch(media, '%S+') do
  redis.call('DEL', p .. 'media:' .. bid .. ':' .. sha)
end
redis.call('DEL', bkey, p .. 'budget:' .. bid)
redis.call('ZREM', p .. 'batches', bid)
return n
"#;
