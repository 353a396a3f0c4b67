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
if added > 0 then
  incr(p, bkey, 'n:' .. S.queued, added)
  signal(p)
end
return added
"#;

/// Moves jobs to new states, each under its lease token, with the record fields, the batch
/// counters, the queue structures and the provider's in-flight slot in one step. Several
/// transitions (a worker's group commit) share the call, the lease removal and one read
/// and one write of each batch's counters; each job gets its own reply.
/// ARGV: prefix, now_ms, then per job: job_id, token, nonce, new_state, mode, at_ms,
/// provider, cap, slot_ttl_ms, wait_list, n, [field, value] × n.
/// mode: keep (hold the lease; at_ms unused) | park (parked until at_ms) | release (back to
/// ready) | done (terminal) | wait (onto `wait_list`, with a parked safety net at at_ms).
/// An empty new_state keeps the current state; an empty value deletes the field.
/// A job holds a slot of its provider while submitting or polling; any other state frees
/// it and wakes one job waiting for a slot (a step from finishing has none to free).
/// A terminal step numbers the job's outcome: the `outcome` field it sets (a stage took
/// the number before writing its result line), else one more than the last; `finished_at`
/// is the one it sets, else now. A job that lets go of its lease has its `token` and
/// `worker` set empty (what every reader takes as none).
/// Returns, per job, {'ok', batch_finished, rerouted, repaired}, {'lost', current_state} or
/// {'err', why} (the job's key is not a hash; nothing written for it).
/// A replay of the same nonce (a retried call whose reply was lost) returns 'ok' again.
/// `repaired` lists damaged counters and keys the call repaired (see `REPAIR_LUA`).
/// `rerouted` = 1: asked for `submit_unknown` but the generation's id is known, so the job
/// was parked in `polling` instead.
pub(super) const TRANSITION: &str = r#"
local p, now = ARGV[1], tonumber(ARGV[2])
local out, released, batches, order = {}, {}, {}, {}
local function bump(bkey, bid, field, n)
  local b = batches[bkey]
  if not b then
    b = {bid = bid, fields = {}, d = {}, done = {}}
    batches[bkey] = b
    order[#order + 1] = bkey
  end
  if not b.d[field] then
    b.fields[#b.fields + 1] = field
    b.d[field] = 0
  end
  b.d[field] = b.d[field] + n
end
local function step(i)
  local id, token, nonce, new, mode, at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    ARGV[i + 4], ARGV[i + 5]
  local prov, list = ARGV[i + 6], ARGV[i + 9]
  local nf = tonumber(ARGV[i + 10])
  local jkey = p .. 'job:' .. id
  -- Fields to delete are read too, so only those present cost an HDEL.
  local ask = {'token', 'state', 'batch', 'last_tx', 'upstream_id', 'outcome', 'finished_at'}
  for f = i + 11, i + 10 + 2 * nf, 2 do
    if ARGV[f + 1] == '' then ask[#ask + 1] = ARGV[f] end
  end
  local cur = redis.pcall('HMGET', jkey, unpack(ask))
  -- Not a hash: this job's error alone, before anything is written (the others go on).
  if failed(cur) then return {'err', cur.err} end
  if cur[1] ~= token or token == '' then
    -- A replay of an applied call (its reply was lost) is ok — unless it kept the lease
    -- and the lease has changed hands since: then this worker no longer owns the job.
    if cur[4] == nonce and mode ~= 'keep' then return {'ok', 0, 0} end
    return {'lost', cur[2] or ''}
  end
  -- A job whose generation is known (its id recorded, fenced, by a worker that lost the
  -- lease mid-POST) is never given up as unknown: it is polled instead.
  local rerouted = 0
  if new == S.submit_unknown and cur[5] then
    new, mode, at, rerouted = S.polling, 'park', now, 1
  end
  local bkey = cur[3] and (p .. 'batch:' .. cur[3])
  local hs, del = {}, {}
  local function set(k, v)
    hs[#hs + 1] = k
    hs[#hs + 1] = v
  end
  if new ~= '' and cur[2] ~= new then
    set('state', new)
    if bkey then
      if cur[2] then bump(bkey, cur[3], 'n:' .. cur[2], -1) end
      bump(bkey, cur[3], 'n:' .. new, 1)
    end
  end
  local numbered, finished, asked = false, cur[7], 7
  for f = i + 11, i + 10 + 2 * nf, 2 do
    local k, v = ARGV[f], ARGV[f + 1]
    if k == 'outcome' then numbered = true end
    if k == 'finished_at' then finished = (v ~= '') and v or nil end
    if v == '' then
      asked = asked + 1
      if cur[asked] then del[#del + 1] = k end
    else
      set(k, v)
      if k == 'upstream_id' and prov ~= '' then
        fix(p, 'HSET', p .. 'upstreams:' .. prov, v, id)
      end
    end
  end
  set('last_tx', nonce)
  set('updated_at', now)
  if mode ~= 'keep' then
    set('token', '')
    set('worker', '')
  end
  if mode == 'done' then
    if not finished then set('finished_at', now) end
    if not numbered then
      local o = tonumber(cur[6])
      if cur[6] and not o then repaired(p, jkey, 'outcome was not a number; reset to 1') end
      set('outcome', (o or 0) + 1)
    end
  end
  if #del > 0 then redis.call('HDEL', jkey, unpack(del)) end
  redis.call('HSET', jkey, unpack(hs))
  local final = (new ~= '' and new) or cur[2]
  if prov ~= '' then
    local skey = p .. 'slots:' .. prov
    if HOLD[final] and mode ~= 'done' then
      local base = math.max(tonumber(at), now)
      fix(p, 'ZADD', skey, base + tonumber(ARGV[i + 8]), id)
    elseif cur[2] ~= S.finishing and fix(p, 'ZREM', skey, id) == 1
        and tonumber(ARGV[i + 7]) > 0 then
      -- (A job in finishing holds no slot: the step into it freed it, and nothing takes
      -- one for it there — no gate runs in finishing, reclaims and revivals add only jobs
      -- that submit or poll.)
      wake(p, prov, 1)   -- jobs wait for a slot only under a cap
    end
  end
  -- The lease itself is the lease timer's to extend (a stage's lease is renewed while it
  -- runs): keeping it writes nothing more.
  if mode == 'keep' then return {'ok', 0, rerouted} end
  released[#released + 1] = id
  if mode == 'park' then
    redis.call('ZADD', p .. 'parked', at, id)
    signal_due(p, at, now)
  elseif mode == 'release' then
    redis.call('RPUSH', p .. 'ready', id)
    signal(p)
  elseif mode == 'wait' then
    redis.call('ZADD', p .. 'parked', at, id)
    signal_due(p, at, now)
    redis.call('HSET', jkey, 'waiting_on', list)
    if redis.call('HGET', jkey, 'listed_on') ~= list then
      fix(p, 'RPUSH', p .. list, id)
      redis.call('HSET', jkey, 'listed_on', list)
    end
    local cap = tonumber(ARGV[i + 7])
    if list == 'waiting:' .. prov and
       (cap == 0 or fix(p, 'ZCARD', p .. 'slots:' .. prov) < cap) then
      wake(p, prov, 1)   -- a slot freed meanwhile: no missed wake-up
    end
  elseif mode == 'done' then
    if new == S.dead then redis.call('ZADD', p .. 'dead', now, id) end
    if RELEASE[new] then release_budget(p, jkey, cur[3]) end
    if bkey then
      bump(bkey, cur[3], 'done', 1)
      local b = batches[bkey]
      b.done[#b.done + 1] = #out + 1
    end
  end
  return {'ok', 0, rerouted}
end
local i = 3
while i <= #ARGV do
  out[#out + 1] = step(i)
  i = i + 11 + 2 * tonumber(ARGV[i + 10])
end
if #released > 0 then redis.call('ZREM', p .. 'leases', unpack(released)) end
-- The batches' counters: one read and one write per batch. A counter that is not a number
-- is reset to this call's change; a batch key that is not a hash is left alone.
for _, bkey in ipairs(order) do
  local b = batches[bkey]
  local names = {unpack(b.fields)}
  names[#names + 1] = 'total'
  names[#names + 1] = 'on_done'
  local vals = redis.pcall('HMGET', bkey, unpack(names))
  if failed(vals) then
    repaired(p, bkey, 'not a hash; counters not counted')
  else
    local hs, before, after = {}, nil, nil
    for k, f in ipairs(b.fields) do
      local v = vals[k]
      local n = tonumber(v)
      if v and not (n and n == math.floor(n)) then
        repaired(p, bkey, f .. ' was not a number; reset to ' .. b.d[f])
        n = nil
      end
      local nv = (n or 0) + b.d[f]
      if f == 'done' then before, after = n or 0, nv end
      hs[#hs + 1] = f
      hs[#hs + 1] = nv
    end
    redis.call('HSET', bkey, unpack(hs))
    local total = tonumber(vals[#b.fields + 1])
    if before and total and before < total and after >= total then
      -- The job whose step made `done` reach `total` finished the batch.
      out[b.done[total - before]][2] = 1
      redis.call('HSET', bkey, 'finished_at', now)
      if vals[#b.fields + 2] == '1' then
        -- Announce this completion exactly once: a job of its own, delivered durably.
        local n = incr(p, bkey, 'completions', 1)
        local hid = 'done:' .. b.bid .. ':' .. n
        redis.call('HSET', p .. 'job:' .. hid, 'state', S.queued, 'kind', 'batch_done',
                   'of_batch', b.bid, 'completion', n, 'attempts', 0, 'created_at', now)
        redis.call('RPUSH', p .. 'ready', hid)
        signal(p)
      end
    end
  end
end
for _, r in ipairs(out) do
  if r[1] == 'ok' then r[4] = REPAIRED end
end
return out
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
signal_due(p, ARGV[7], now)
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
      -- A reviewer's mark was about the output this run replaces.
      if cur[2] then fix(p, 'HDEL', p .. 'marks:' .. cur[2], id) end
      if dest == S.polling then
        redis.call('HSET', jkey, 'submitted_at', now, 'polls', 0)
        redis.call('ZADD', p .. 'parked', now, id)
        fix(p, 'ZADD', p .. 'slots:' .. prov, now, id)
      else
        redis.call('HDEL', jkey, 'upstream_id', 'submitted_at')
        redis.call('RPUSH', p .. 'ready', id)
      end
      signal(p)
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
/// its announcement jobs, its stored media, its review marks (`queue::marks`) and the batch hash (with the upload URLs
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
redis.call('DEL', bkey, p .. 'budget:' .. bid, p .. 'marks:' .. bid)
redis.call('ZREM', p .. 'batches', bid)
return n
"#;
