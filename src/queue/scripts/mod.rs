//! The Lua scripts: one per transition. Each changes the job record, the queue structures
//! and the batch counters in one atomic step. Keys are built inside from the namespace
//! prefix (all share one hash tag, so they live in one Cluster slot). Every script starts
//! with the same prelude: the state tables generated from [`JobState`], the job-id format,
//! money helpers, slot wake-ups and the admission functions.

mod admission;
mod claim;
mod lifecycle;
mod media;

use crate::job::{JobState, JOB_ID_LUA_FORMAT};
use admission::*;
use claim::*;
use lifecycle::*;
use media::*;
use redis::Script;

/// Money in the scripts: amounts are stored as exact decimal USD strings (see
/// [`crate::money::Usd`]) and added as integer nano-dollars, never as floats.
const MONEY_LUA: &str = r#"
local function nanos(s)
  local n = s and tonumber(s)
  if not n then return 0 end
  return math.floor(n * 1e9 + 0.5)
end
local function usd(n)
  return string.format('%d.%09d', math.floor(n / 1e9), n % 1e9)
end
"#;

/// Shared Lua: reading what may be damaged without failing the script. Redis contents are
/// untrusted (a hand edit, a buggy client, a restored old dump): a counter that is not a
/// number, a bookkeeping key of the wrong type or a limiter value that is garbage must not
/// fail every script that touches it (seen: a garbage limiter key stopped all submissions).
/// Each repair is noted in `REPAIRED` (key without the prefix, and what was done), which
/// scripts return for the caller to warn about.
const REPAIR_LUA: &str = r#"
local REPAIRED = {}
local function repaired(p, key, what)
  REPAIRED[#REPAIRED + 1] = string.sub(key, #p + 1) .. ': ' .. what
end
local function failed(r)
  return type(r) == 'table' and r.err ~= nil
end
-- HINCRBY that never fails the script: a field that is not an integer is reset to n; a
-- key that is not a hash is left alone (nothing is deleted that may hold a record).
local function incr(p, key, field, n)
  local r = redis.pcall('HINCRBY', key, field, n)
  if not failed(r) then return r end
  if string.find(r.err, 'WRONGTYPE') then
    repaired(p, key, 'not a hash; ' .. field .. ' not counted')
    return n
  end
  redis.call('HSET', key, field, n)
  repaired(p, key, field .. ' was not a number; reset to ' .. n)
  return n
end
-- A command on a bookkeeping key (slots, wait lists, indexes, limiter state): a key of the
-- wrong type is deleted, treated as absent, and the command runs again.
local function fix(p, cmd, key, ...)
  local r = redis.pcall(cmd, key, ...)
  if failed(r) and string.find(r.err, 'WRONGTYPE') then
    redis.call('DEL', key)
    repaired(p, key, 'of the wrong type; treated as absent')
    return redis.call(cmd, key, ...)
  end
  if failed(r) then return redis.call(cmd, key, ...) end
  return r
end
-- A number stored under a key (a cool-down's end, a GCRA time); nil when absent. One that
-- is not a number, or a key of the wrong type, is deleted and treated as absent.
local function num_at(p, key)
  local v = redis.pcall('GET', key)
  if failed(v) then
    redis.call('DEL', key)
    repaired(p, key, 'of the wrong type; treated as absent')
    return nil
  end
  if not v then return nil end
  local n = tonumber(v)
  if not n then
    redis.call('DEL', key)
    repaired(p, key, 'not a number; treated as absent')
  end
  return n
end
"#;

/// Shared Lua: waking idle workers (see `queue::wake`). A worker that claims nothing is
/// listed in `idle`, scored by when it looks again on its own, and blocks on the `wake`
/// list. Whatever makes work ready pushes one token there — at most one per script call,
/// and the list is trimmed to the number of idle workers, so it stays bounded; work parked
/// until later wakes a worker only when no idle worker looks again by then anyway. Entries
/// of `idle` older than `IDLE_STALE` ms past their time are workers that died idle (the
/// sweep removes them).
const WAKE_LUA: &str = r#"
local IDLE_STALE = 2000
local SIGNALLED = false
local function signal(p)
  if SIGNALLED then return end
  SIGNALLED = true
  local n = fix(p, 'ZCARD', p .. 'idle')
  if n > 0 then
    fix(p, 'RPUSH', p .. 'wake', '1')
    redis.call('LTRIM', p .. 'wake', -n, -1)
  end
end
local function signal_due(p, at, now)
  if SIGNALLED then return end
  at, now = tonumber(at), tonumber(now)
  if at <= now then return signal(p) end
  local first = fix(p, 'ZRANGE', p .. 'idle', now - IDLE_STALE, '+inf', 'BYSCORE',
                    'LIMIT', 0, 1, 'WITHSCORES')
  if first[2] and tonumber(first[2]) > at then signal(p) end
end
"#;

/// Shared Lua: states that hold a provider slot, and waking jobs that wait for one.
const SLOTS_LUA: &str = r#"
-- Moves up to n jobs that still wait on `list` to the ready list (n = 0: all of them).
-- A job waits while its record says `waiting_on = list`; entries of jobs that moved on
-- (their safety net fired, they were cancelled or finished) are dropped, so a wake-up is
-- never spent on them. `listed_on` says which list holds the job's entry, so a job that
-- waits again is not pushed twice (the list stays as long as the jobs waiting on it).
local function wake_list(p, list, n)
  local woken, seen = 0, 0
  while (n == 0 or woken < n) and seen < 10000 do
    local w = fix(p, 'LPOP', p .. list)
    if not w then return woken end
    seen = seen + 1
    local wkey = p .. 'job:' .. w
    local f = redis.pcall('HMGET', wkey, 'waiting_on', 'listed_on', 'state')
    if failed(f) then f = {} end
    if f[2] == list then redis.call('HDEL', wkey, 'listed_on') end
    if f[1] == list and f[3] and not TERMINAL[f[3]] then
      redis.call('HDEL', wkey, 'waiting_on')
      redis.call('ZREM', p .. 'parked', w)
      redis.call('RPUSH', p .. 'ready', w)
      signal(p)
      woken = woken + 1
    end
  end
  return woken
end
local function wake(p, prov, n)
  wake_list(p, 'waiting:' .. prov, n)
end
-- Gives back a job's budget reservation (it will not be billed) and wakes a job that
-- waited for budget.
local function release_budget(p, jkey, bid)
  local r = redis.call('HGET', jkey, 'cost_reserved')
  if not r or not bid then return end
  local bkey = p .. 'batch:' .. bid
  local left = nanos(redis.call('HGET', bkey, 'cost_committed')) - nanos(r)
  redis.call('HSET', bkey, 'cost_committed', usd(math.max(left, 0)))
  redis.call('HDEL', jkey, 'cost_reserved')
  wake_list(p, 'budget:' .. bid, 1)
end
"#;

/// The compiled scripts (EVALSHA with a fallback to EVAL after a Redis restart).
#[derive(Debug)]
pub struct Scripts {
    pub enqueue: Script,
    pub claim: Script,
    pub renew: Script,
    pub transition: Script,
    pub sweep: Script,
    pub admin_move: Script,
    pub cooldown: Script,
    pub resume: Script,
    pub poke: Script,
    pub set_budget: Script,
    pub purge: Script,
    pub gate_submit: Script,
    pub gate_poll: Script,
    pub add_rates: Script,
    pub record_upstream: Script,
    pub release_cancelled: Script,
    pub media_commit: Script,
    pub record_upload: Script,
    /// The server's `TIME` as {seconds, microseconds}.
    pub clock: Script,
    /// The server's `INFO server` text (for its version).
    pub info: Script,
}

/// The prelude every script starts with.
fn prelude() -> String {
    let states = JobState::lua_prelude();
    let ids = format!("local JOB_ID_FORMAT = '{JOB_ID_LUA_FORMAT}'\n");
    format!("{states}{ids}{REPAIR_LUA}\n{MONEY_LUA}\n{WAKE_LUA}\n{SLOTS_LUA}\n{ADMISSION_LUA}")
}

impl Scripts {
    pub fn new() -> Self {
        let prelude = prelude();
        let s = |body: &str| Script::new(&format!("{prelude}\n{body}"));
        Scripts {
            enqueue: s(ENQUEUE),
            claim: s(CLAIM),
            renew: s(RENEW),
            transition: s(TRANSITION),
            sweep: s(SWEEP),
            admin_move: s(ADMIN_MOVE),
            cooldown: s(COOLDOWN),
            resume: s(RESUME),
            poke: s(POKE),
            set_budget: s(SET_BUDGET),
            purge: s(PURGE),
            gate_submit: s(GATE_SUBMIT),
            gate_poll: s(GATE_POLL),
            add_rates: s(ADD_RATES),
            record_upstream: s(RECORD_UPSTREAM),
            release_cancelled: s(RELEASE_CANCELLED),
            media_commit: s(MEDIA_COMMIT),
            record_upload: s(RECORD_UPLOAD),
            clock: Script::new(
                "local t = redis.call('TIME') return {tonumber(t[1]), tonumber(t[2])}",
            ),
            info: Script::new("return redis.call('INFO', 'server')"),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
