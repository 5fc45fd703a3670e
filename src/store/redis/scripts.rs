//! The Lua scripts that make multi-key changes atomic on the Redis server: whatever number
//! of gateways run them at the same instant, Redis runs one script at a time, so a refresh
//! token is rotated exactly once and a revocation always reaches the set and the feed.
//!
//! Keys (under the configured prefix `P`): `P t:<hex digest>` a token (hash: `k` kind
//! `a`/`r`, `rec` its record as JSON, `g` grant, `e` expiry, `u` used at, `x` revoked),
//! expiring with the token; `P g:<grant>` the set of its tokens' digests, expiring with
//! the last of them; `P revoked` the live revocations (sorted set scored by the time they
//! may be forgotten, `+inf` for ever); `P feed` the stream every node follows;
//! `P keyset` the signing key set (`v` version, `doc`); `P e:<kind>:<hex>` short-lived
//! records (`v` value, `u` used). Provisioned records (`records`): `P record:<code>:<name>`
//! one record (hash: `v` version, `doc`, absent in a tombstone); `P records:seq` the
//! version sequence of every kind (INCR); `P records:index` the sorted set of
//! `<code>:<name>` members scored by their version; `P records:feed` a short stream whose
//! entries (`v` version) only wake the nodes waiting for a change.

/// Helpers shared by the scripts. `p` is the prefix (ARGV[1]), `maxlen` the feed's
/// approximate length cap (ARGV[2]).
const COMMON: &str = r"
local p = ARGV[1]
local maxlen = ARGV[2]

local function extend_grant(gkey, existed, exp)
  if exp == '' then
    redis.call('PERSIST', gkey)
    return
  end
  local ms = tonumber(exp) * 1000
  local current = redis.call('PEXPIRETIME', gkey)
  if existed == 0 then
    redis.call('PEXPIREAT', gkey, ms)
  elseif current ~= -1 and current < ms then
    -- current == -1: the set already holds a token that never expires.
    redis.call('PEXPIREAT', gkey, ms)
  end
end

-- Token groups of 6 arguments from index `from`: hex, kind, record, grant, exp, used.
local function insert_tokens(from)
  for i = from, #ARGV, 6 do
    if redis.call('EXISTS', p .. 't:' .. ARGV[i]) == 1 then
      return false
    end
  end
  for i = from, #ARGV, 6 do
    local tkey = p .. 't:' .. ARGV[i]
    local exp = ARGV[i + 4]
    redis.call('HSET', tkey, 'k', ARGV[i + 1], 'rec', ARGV[i + 2], 'g', ARGV[i + 3], 'e', exp)
    if ARGV[i + 5] ~= '' then
      redis.call('HSET', tkey, 'u', ARGV[i + 5])
    end
    if exp ~= '' then
      redis.call('PEXPIREAT', tkey, tonumber(exp) * 1000)
    end
    local gkey = p .. 'g:' .. ARGV[i + 3]
    local existed = redis.call('EXISTS', gkey)
    redis.call('SADD', gkey, ARGV[i])
    extend_grant(gkey, existed, exp)
  end
  return true
end

local function record_revocation(member, till)
  local score = '+inf'
  if till ~= '' then
    score = till
  end
  redis.call('ZADD', p .. 'revoked', 'GT', score, member)
  redis.call('XADD', p .. 'feed', 'MAXLEN', '~', maxlen, '*', 'r', member, 'until', till)
end

local function revoke_grant(grant, till)
  local members = redis.call('SMEMBERS', p .. 'g:' .. grant)
  for _, hex in ipairs(members) do
    local tkey = p .. 't:' .. hex
    if redis.call('EXISTS', tkey) == 1 then
      redis.call('HSET', tkey, 'x', '1')
    end
  end
  record_revocation('g\31' .. grant, till)
end
";

/// ARGV: prefix, maxlen, then token groups. Returns 1, or 0 when a digest exists.
const INSERT: &str = r"
if insert_tokens(3) then
  return 1
end
return 0
";

/// ARGV: prefix, maxlen, used hex, now, grace, reuse_until ('' = for ever), then the
/// successors' token groups. Returns {outcome, grant}.
const ROTATE: &str = r"
local tkey = p .. 't:' .. ARGV[3]
local now = tonumber(ARGV[4])
local grace = tonumber(ARGV[5])
local f = redis.call('HMGET', tkey, 'k', 'e', 'u', 'x', 'g')
if not f[1] or f[1] ~= 'r' or f[4] == '1' then
  return {'inactive', ''}
end
if f[2] and f[2] ~= '' and tonumber(f[2]) <= now then
  return {'inactive', ''}
end
if not f[3] then
  if not insert_tokens(7) then
    return redis.error_reply('duplicate token digest')
  end
  redis.call('HSET', tkey, 'u', now)
  return {'rotated', f[5]}
end
if now - tonumber(f[3]) < grace then
  if not insert_tokens(7) then
    return redis.error_reply('duplicate token digest')
  end
  return {'grace', f[5]}
end
revoke_grant(f[5], ARGV[6])
return {'reused', f[5]}
";

/// ARGV: prefix, maxlen, what (`token`, `grant` or `other`), member, until, digest hex
/// ('' = none), grant id.
const REVOKE: &str = r"
local what = ARGV[3]
if what == 'grant' then
  revoke_grant(ARGV[7], ARGV[5])
  return 1
end
if ARGV[6] ~= '' then
  local tkey = p .. 't:' .. ARGV[6]
  if redis.call('EXISTS', tkey) == 1 then
    redis.call('HSET', tkey, 'x', '1')
  end
end
record_revocation(ARGV[4], ARGV[5])
return 1
";

/// ARGV: prefix, maxlen, expected version ('' = none yet), document. Returns 1 or 0.
const REPLACE_KEY_SET: &str = r"
local k = p .. 'keyset'
local v = redis.call('HGET', k, 'v')
if (v or '') ~= ARGV[3] then
  return 0
end
local next = 1
if v then
  next = tonumber(v) + 1
end
redis.call('HSET', k, 'v', next, 'doc', ARGV[4])
return 1
";

/// ARGV: prefix, maxlen, key, value, expires at (ms). Returns 1 when stored.
const CLAIM: &str = r"
local k = ARGV[3]
if redis.call('EXISTS', k) == 1 then
  return 0
end
redis.call('HSET', k, 'v', ARGV[4])
redis.call('PEXPIREAT', k, ARGV[5])
return 1
";

/// ARGV: prefix, maxlen, key. Returns {outcome, value}.
const CONSUME: &str = r"
local k = ARGV[3]
local f = redis.call('HMGET', k, 'v', 'u')
if not f[1] then
  return {'missing', ''}
end
if f[2] then
  return {'again', f[1]}
end
redis.call('HSET', k, 'u', '1')
return {'first', f[1]}
";

/// ARGV: prefix, maxlen of the wake-up stream, member `<code>:<name>`, expected live
/// version ('' = none), `put` or `delete`, the document. Returns {1, version} when written,
/// {0, live version or ''} when the live version is not the expected one.
const PUT_RECORD: &str = r"
local member = ARGV[3]
local k = p .. 'record:' .. member
local f = redis.call('HMGET', k, 'v', 'doc')
local live = ''
if f[1] and f[2] then
  live = f[1]
end
if live ~= ARGV[4] then
  return {0, live}
end
-- Starts at 1 and grows by one per write: far below 2^53, exact as a sorted-set score.
local v = string.format('%d', redis.call('INCR', p .. 'records:seq'))
if v == '1' then
  -- A new sequence (first write, or the first after a flush): a new epoch, so a reader
  -- whose cursor the new sequence has already passed still knows to read everything.
  redis.call('SET', p .. 'records:epoch', table.concat(redis.call('TIME'), '.'))
end
if ARGV[5] == 'put' then
  redis.call('HSET', k, 'v', v, 'doc', ARGV[6])
else
  redis.call('HSET', k, 'v', v)
  redis.call('HDEL', k, 'doc')
end
redis.call('ZADD', p .. 'records:index', v, member)
redis.call('XADD', p .. 'records:feed', 'MAXLEN', '~', maxlen, '*', 'v', v)
return {1, v}
";

/// ARGV: prefix, the epoch the reader saw last (empty: none), after, limit, the known
/// kinds' codes (`1 2`). Returns {`after` or `full`, the epoch, then member, version,
/// document (nil: a tombstone) of each record}: the records of known kinds after the
/// cursor, at most `limit`, or the first `limit` live ones of them in version order when
/// the sequence is behind the cursor or its epoch is not the reader's (Redis flushed or
/// restored from a backup).
const RECORDS_AFTER: &str = r"
local idx = p .. 'records:index'
local limit = tonumber(ARGV[4])
local known = {}
for code in string.gmatch(ARGV[5], '%d+') do
  known[code] = true
end
local function wanted(member)
  return known[string.match(member, '^(%d+):')]
end
local epoch = redis.call('GET', p .. 'records:epoch') or ''
local full = tonumber(redis.call('GET', p .. 'records:seq') or '0') < tonumber(ARGV[3])
  or (ARGV[2] ~= '' and epoch ~= ARGV[2])
local out = {'after', epoch}
if full then
  out[1] = 'full'
end
local function add(member)
  local f = redis.call('HMGET', p .. 'record:' .. member, 'v', 'doc')
  if f[1] and (f[2] or not full) then
    table.insert(out, member)
    table.insert(out, f[1])
    table.insert(out, f[2])
    return true
  end
  return false
end
-- Pages of the index from the cursor (full: from the start, live records only), until
-- `limit` records of known kinds: a full read of a large store is a first page too, and
-- the reader goes on from its last version, so no one call blocks Redis for long.
local from = '(' .. ARGV[3]
if full then
  from = '-inf'
end
local n = 0
while true do
  local page = redis.call('ZRANGE', idx, from, '+inf', 'BYSCORE', 'LIMIT', 0, ARGV[4], 'WITHSCORES')
  for i = 1, #page, 2 do
    from = '(' .. page[i + 1]
    if wanted(page[i]) and add(page[i]) then
      n = n + 1
      if n == limit then
        return out
      end
    end
  end
  if #page < 2 * limit then
    return out
  end
end
";

fn script(body: &str) -> ::redis::Script {
    ::redis::Script::new(&format!("{COMMON}\n{body}"))
}

/// The scripts, hashed once (the client sends EVALSHA, and the source only when the server
/// does not have it yet, e.g. after a restart).
pub(super) struct Scripts {
    pub insert: ::redis::Script,
    pub rotate: ::redis::Script,
    pub revoke: ::redis::Script,
    pub replace_key_set: ::redis::Script,
    pub claim: ::redis::Script,
    pub consume: ::redis::Script,
    pub put_record: ::redis::Script,
    pub records_after: ::redis::Script,
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            insert: script(INSERT),
            rotate: script(ROTATE),
            revoke: script(REVOKE),
            replace_key_set: script(REPLACE_KEY_SET),
            claim: script(CLAIM),
            consume: script(CONSUME),
            put_record: script(PUT_RECORD),
            records_after: script(RECORDS_AFTER),
        }
    }
}
