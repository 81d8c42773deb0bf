#!lua
--[==[
resolve_batch.lua: the stateful identity rules of docs/IDENTITY.md (contract A2-A4, A6), applied
to one chunk of prepared operations of ONE tenant, atomically. An executable port of
worker/identity/reference.py; tests/integration/test_differential.py checks that they agree.

KEYS (all share the tenant's hash tag, see worker/store/keys.py):
  [1] <p>:{t}:ids             hash: distinct id -> "P" .. parent id | "R" .. person record
  [2] <p>:{t}:members:        prefix of the members set of a root
  [3] <p>:{t}:reply:<token>   where this call's reply is kept (retry deduplication)
  [4] <p>:{t}:reply:<prev>    the previous call's reply, deleted now (== KEYS[3] if none)
The members set of a root is KEYS[2] .. root. It cannot be declared up front (roots are found
while the script runs), but it starts with the same "<p>:{t}:" as KEYS[1], so it hashes to the
same Redis Cluster slot, which is all cluster mode requires of a script's keys. It exists only
for a tree of two ids or more: a root alone in its tree is its only member.

The union-find: every known distinct id is a field of KEYS[1]. A non-root holds "P" .. parent;
a root holds its person record:
  "R" pid "|" created_at_ms "|" last_seen_ms "|" identified (1/0) "|" version "|" count "|"
      len(meta) "|" len(vals) "|" meta vals snapshot
count is the number of distinct ids of the tree; meta and vals are cjson objects of strings:
  meta: key -> op .. ord     for every key with a state, tombstones included
  vals: key -> text          for every visible key
op is "s" (set), "o" (set_once) or "u" (unset tombstone); ord is the 20-digit (ts + 2^63)
followed by the event uuid, so comparing ords bytewise orders by (ts, uuid); text is the value's
canonical JSON, made in Python. snapshot is the visible properties as one JSON object text (the
texts of vals spliced in), ready for the reply: an event that changes no property costs no
decoding at all; meta and vals are decoded only when properties change. Lua never decodes a
value: it stores, compares and concatenates texts, so no float or big-integer precision is ever
lost.

ARGV: "3" (format), ordering mode ("timestamp" | "arrival"), max distinct ids per person,
max properties bytes, force-upgrade delay ms, reply TTL ms (0: do not keep the reply),
number of ops, then per op:
  flags (a digit: 1 process person + 2 merge dangerously + 4 merge with other), into, into's
  uuid5 person id, other ("" if none), other's uuid5 person id, ts ms, ord, number of property
  operations k, then k triples (code, key, text), one per key (the text of an unset is ""):
  timestamp mode: "s" set, "o" set_once, "u" unset (decided per key in Python);
  arrival mode: "s" set (if the value changes), "o" set if absent, "u" remove if present,
  "x" a key both set and unset by the event: set if absent before it, else removed.

Reply: one JSON array text [[entry per op], [released entry]], an entry being
  [person_id, person_mode, created_at_ms|null, is_identified, {properties}, merged,
   person_created, [warning kinds], [[distinct_id, old_person_id, new_person_id], ...],
   person_version|null]
and a released entry [uuid, reason, ingested_ms, entry] (section 6).
The same text is kept at KEYS[3] for the reply TTL: a retry of a call whose reply was lost (the
connection dropped after the script ran) gets the stored reply back and applies nothing twice.

Cost: the chunk's ids are read with a few HMGETs (one per level of the trees), every change is
written at the end with one HSET, members sets are touched only by joins and merges; the rest
is Lua.

Atomicity: Redis does not roll a script back when it raises, so every write is deferred to
section 6: malformed ARGV or corrupt data met on the way raises before anything is written.
The "#!lua" line (no allow-oom flag) makes Redis refuse the whole call up front when it is over
maxmemory. Only a foreign key of the wrong type met by the final writes could leave a chunk
half done.
]==]

local IDS = KEYS[1]
local MEMBERS = KEYS[2]
local REPLY = KEYS[3]
local PREVIOUS_REPLY = KEYS[4]
local BUF = KEYS[5]

-- A retried call: the first attempt ran, return its reply.
local stored = redis.call('GET', REPLY)
if stored then
  return stored
end

local byte, sub, concat = string.byte, string.sub, table.concat
local B_P, B_R, B_O = byte('P'), byte('R'), byte('o')

---------------------------------------------------------------------------------------------
-- 1. Parse ARGV.
---------------------------------------------------------------------------------------------
local function bad(what)
  error('resolve_batch: bad ARGV: ' .. what)
end

if ARGV[1] ~= '4' then
  bad('unknown format ' .. tostring(ARGV[1]))
end
local TIMESTAMP_MODE = ARGV[2] == 'timestamp'
if not TIMESTAMP_MODE and ARGV[2] ~= 'arrival' then
  bad('ordering mode ' .. tostring(ARGV[2]))
end
local MAX_IDS = tonumber(ARGV[3])
local MAX_BYTES = tonumber(ARGV[4])
local FORCE_UPGRADE_MS = tonumber(ARGV[5])
local REPLY_TTL_MS = tonumber(ARGV[6])
local NOW = tonumber(ARGV[7])
local BUFFER_DELAY_MS = tonumber(ARGV[8])
local BUFFER_MAX_PER_ID = tonumber(ARGV[9])
local BUFFER_MAX_TOTAL = tonumber(ARGV[10])
local LEASE_MS = tonumber(ARGV[11])
local COMMAND = ARGV[12]
local RELEASE_LIMIT = tonumber(ARGV[13])
local nops = tonumber(ARGV[14])
if not (MAX_IDS and MAX_BYTES and FORCE_UPGRADE_MS and REPLY_TTL_MS and NOW and BUFFER_DELAY_MS
    and BUFFER_MAX_PER_ID and BUFFER_MAX_TOTAL and LEASE_MS and RELEASE_LIMIT and nops)
    or (COMMAND ~= 'resolve' and COMMAND ~= 'release') then
  bad('header')
end

local CODES = { s = true, o = true, u = true, x = true }

-- One operation from src (ARGV, or a buffered entry decoded from cjson) at index a.
-- Returns the op and the index after it. flags: 1 process person + 2 merge dangerously +
-- 4 merge with other + 8 bufferable; a bufferable op carries two more fields after its
-- property triples: its ingestion time and its payload.
local function parse_op(src, a, i)
  local flags = tonumber(src[a])
  local nprops = tonumber(src[a + 7])
  if flags == nil or flags < 0 or flags > 15 or nprops == nil then
    bad('op ' .. i)
  end
  local op = {
    process = flags % 2 == 1,
    dangerous = math.floor(flags / 2) % 2 == 1,
    merge = math.floor(flags / 4) % 2 == 1,
    buffer = flags >= 8,
    into = src[a + 1],
    into_pid = src[a + 2],
    other = src[a + 3],
    other_pid = src[a + 4],
    ts_text = src[a + 5],
    ts = tonumber(src[a + 5]),
    ord = src[a + 6],
  }
  if op.ts == nil or op.into == nil or op.ord == nil then
    bad('op ' .. i)
  end
  if op.merge and op.other == op.into then
    op.merge = false -- never a self-loop (the stateless rules already made this no merge)
  end
  local first = a
  a = a + 8
  local props = {}
  for j = 1, nprops do
    local code = src[a]
    if not CODES[code] or src[a + 2] == nil then
      bad('property operation ' .. j .. ' of op ' .. i)
    end
    props[j] = { code, src[a + 1], src[a + 2] }
    a = a + 3
  end
  op.props = props
  if op.buffer then
    -- the entry kept while the event waits: its fields, flags without the bufferable bit
    local fields = { tostring(flags - 8) }
    for k = first + 1, a - 1 do
      fields[#fields + 1] = src[k]
    end
    op.fields = fields
    op.ingested = src[a]
    op.payload = src[a + 1]
    if tonumber(op.ingested) == nil or op.payload == nil then
      bad('buffer fields of op ' .. i)
    end
    a = a + 2
  end
  return op, a
end

local ops = {}
local a = 15
for i = 1, nops do
  ops[i], a = parse_op(ARGV, a, i)
end
if ARGV[a] ~= nil then
  bad((#ARGV - a + 1) .. ' unread values')
end

---------------------------------------------------------------------------------------------
-- 2. Read the chunk's ids, and their ancestors, a level at a time.
---------------------------------------------------------------------------------------------
local val = {} -- id -> stored value, or false for an unknown id
local written = {} -- id -> true: write val[id] back at the end

local function fetch(list)
  for k = 1, #list, 500 do
    local last = math.min(k + 499, #list)
    local got = redis.call('HMGET', IDS, unpack(list, k, last))
    for j = k, last do
      val[list[j]] = got[j - k + 1]
    end
  end
end

do
  local want, queued = {}, {}
  local function need(id)
    if val[id] == nil and not queued[id] then
      queued[id] = true
      want[#want + 1] = id
    end
  end
  for _, op in ipairs(ops) do
    need(op.into)
    if op.merge then
      need(op.other)
    end
  end
  while #want > 0 do
    fetch(want)
    local level = want
    want = {}
    for _, id in ipairs(level) do
      local v = val[id]
      if v and byte(v, 1) == B_P then
        need(sub(v, 2))
      end
    end
  end
end

local function get(id)
  local v = val[id]
  if v == nil then
    v = redis.call('HGET', IDS, id)
    val[id] = v
  end
  return v
end

local function put(id, v)
  val[id] = v
  written[id] = true
end

-- The root of `id`, or nil when no person holds it. Compresses the path it walked.
local function find(id)
  local v = get(id)
  if not v then
    return nil
  end
  local node = id
  local path = {}
  while byte(v, 1) == B_P do
    path[#path + 1] = node
    if #path > 100000 then
      error('resolve_batch: parent cycle at ' .. id)
    end
    node = sub(v, 2)
    v = get(node)
    if not v then
      error('resolve_batch: broken parent chain at ' .. node)
    end
  end
  if byte(v, 1) ~= B_R then
    error('resolve_batch: unreadable entry for ' .. node)
  end
  for k = 1, #path - 1 do
    put(path[k], 'P' .. node)
  end
  return node
end

---------------------------------------------------------------------------------------------
-- 3. Ranking property states (timestamp mode).
---------------------------------------------------------------------------------------------

-- Bytewise comparison of a and b from byte `from` on. Lua's own `<` on strings uses strcoll,
-- and Redis sets LC_COLLATE from its environment, so `<` might not be byte order.
local function bytecmp(x, y, from)
  if x == y then
    return 0
  end
  local lx, ly = #x, #y
  for k = from, (lx < ly and lx or ly) do
    local p, q = byte(x, k), byte(y, k)
    if p ~= q then
      return p < q and -1 or 1
    end
  end
  if lx == ly then
    return 0
  end
  return lx < ly and -1 or 1
end

-- Order of two metas (op .. ord) by ord: the 20-digit timestamps compared as two exact
-- 10-digit numbers (cheaper than a byte loop), then the uuids bytewise.
local function ordcmp(x, y)
  local hx, hy = sub(x, 2, 11), sub(y, 2, 11)
  if hx ~= hy then
    return tonumber(hx) < tonumber(hy) and -1 or 1
  end
  hx, hy = sub(x, 12, 21), sub(y, 12, 21)
  if hx ~= hy then
    return tonumber(hx) < tonumber(hy) and -1 or 1
  end
  return bytecmp(x, y, 22)
end

-- True when the state (new_meta, new_text) ranks above (cur_meta, cur_text); a meta is
-- op .. ord, cur_meta nil means no state, and an unset's text is "". Strong ops (set, unset)
-- beat weak ones (set_once); among strong ops the later ord wins, among weak ones the earlier;
-- on an equal ord the larger value text wins.
local function beats(new_meta, new_text, cur_meta, cur_text)
  if cur_meta == nil then
    return true
  end
  local new_strong = byte(new_meta, 1) ~= B_O
  if new_strong ~= (byte(cur_meta, 1) ~= B_O) then
    return new_strong
  end
  local c = ordcmp(new_meta, cur_meta)
  if c == 0 then
    return bytecmp(new_text, cur_text, 1) > 0
  end
  if new_strong then
    return c > 0
  end
  return c < 0
end

---------------------------------------------------------------------------------------------
-- 4. Person records: decoded once per chunk, written back at the end.
---------------------------------------------------------------------------------------------
local persons = {} -- root -> person table
local dirty = {} -- root -> true: encode persons[root] into val[root] at the end

local function load(root)
  local p = persons[root]
  if p then
    return p
  end
  local pid, c, s, i, v, n, mlen, vlen, tail = string.match(val[root],
    '^R([^|]*)|(-?%d+)|(-?%d+)|([01])|(%d+)|(%d+)|(%d+)|(%d+)|(.*)$')
  if pid == nil then
    error('resolve_batch: unreadable person record at ' .. root)
  end
  p = {
    pid = pid,
    c = tonumber(c),
    c_text = c,
    s = tonumber(s),
    s_text = s,
    i = i == '1',
    v = tonumber(v),
    v_text = v,
    n = tonumber(n),
    stored_set = n ~= '1', -- a members set exists in Redis
    mlen = tonumber(mlen),
    vlen = tonumber(vlen),
    tail = tail, -- meta .. vals .. snapshot; meta and vals decoded on first use
    meta = false,
    vals = false,
    size = 0,
    snapshot = sub(tail, mlen + vlen + 1),
    props_dirty = false,
  }
  persons[root] = p
  return p
end

local function vals_of(p)
  local vals = p.vals
  if not vals then
    vals = cjson.decode(sub(p.tail, p.mlen + 1, p.mlen + p.vlen))
    local size = 0
    for key, text in pairs(vals) do
      size = size + #key + #text
    end
    p.vals, p.size = vals, size
  end
  return vals
end

local function meta_of(p)
  if not p.meta then
    p.meta = cjson.decode(sub(p.tail, 1, p.mlen))
  end
  return p.meta
end

local function create(id, pid, ts, ts_text)
  local p = {
    pid = pid,
    c = ts,
    c_text = ts_text,
    s = ts,
    s_text = ts_text,
    i = false,
    v = 0,
    v_text = '0',
    n = 1,
    stored_set = false,
    meta = {},
    vals = {},
    size = 0,
    snapshot = '{}',
    props_dirty = true,
  }
  persons[id] = p
  dirty[id] = true
  put(id, 'R') -- a root; the record replaces this placeholder at the end
  return p
end

-- Members: ids joining a root's tree are queued and SADDed at the end.
local added = {} -- root -> array of ids joining its tree in this chunk
local dropped = {} -- root -> true: its members set is deleted at the end

local function members_of(root, p)
  local ids = p.stored_set and redis.call('SMEMBERS', MEMBERS .. root) or { root }
  for _, id in ipairs(added[root] or {}) do
    ids[#ids + 1] = id
  end
  return ids
end

local function join(id, root, p)
  put(id, 'P' .. root)
  local list = added[root] or {}
  list[#list + 1] = id
  added[root] = list
  p.n = p.n + 1
end

-- A3.6, allowed: `other`'s person (root r2) is merged into `into`'s (root r1). The survivor
-- keeps into's person id and lives at the root of the larger tree (union by size).
local function merge(r1, p1, r2, p2, overrides)
  local other_ids = members_of(r2, p2)
  for _, id in ipairs(other_ids) do
    overrides[#overrides + 1] = { id, p2.pid, p1.pid }
  end
  local big, small, small_ids, pbig, psmall = r1, r2, other_ids, p1, p2
  if p2.n > p1.n then
    big, small, pbig, psmall = r2, r1, p2, p1
    small_ids = members_of(r1, p1)
  end
  put(small, 'P' .. big)
  local list = added[big] or {}
  for _, id in ipairs(small_ids) do
    list[#list + 1] = id
  end
  added[big] = list
  added[small] = nil
  if psmall.stored_set then
    dropped[small] = true
  end

  local meta1, vals1, meta2, vals2 = meta_of(p1), vals_of(p1), meta_of(p2), vals_of(p2)
  local meta, vals = {}, {}
  if TIMESTAMP_MODE then -- the join of both registers, key by key
    for key, m in pairs(meta1) do
      meta[key], vals[key] = m, vals1[key]
    end
    for key, m in pairs(meta2) do
      local text = vals2[key]
      if beats(m, text or '', meta[key], vals[key] or '') then
        meta[key], vals[key] = m, text
      end
    end
  else -- arrival: {...other, ...into}
    for key, m in pairs(meta2) do
      meta[key], vals[key] = m, vals2[key]
    end
    for key, m in pairs(meta1) do
      meta[key], vals[key] = m, vals1[key]
    end
  end
  local size = 0
  for key, text in pairs(vals) do
    size = size + #key + #text
  end
  local v = math.max(p1.v, p2.v) + 1
  local n = p1.n + p2.n
  local merged = {
    pid = p1.pid,
    c = p1.c,
    c_text = p1.c_text,
    s = p1.s,
    s_text = p1.s_text,
    i = true,
    v = v,
    v_text = tostring(v),
    n = n,
    stored_set = pbig.stored_set,
    meta = meta,
    vals = vals,
    size = size,
    snapshot = false,
    props_dirty = true,
  }
  if p2.c < p1.c then
    merged.c, merged.c_text = p2.c, p2.c_text
  end
  if p2.s > p1.s then
    merged.s, merged.s_text = p2.s, p2.s_text
  end
  persons[small] = nil
  dirty[small] = nil
  persons[big] = merged
  dirty[big] = true
  return big
end

-- Apply the event's property operations. Returns changed, refused_for_size.
local function update_properties(p, op)
  local vals = vals_of(p)
  local meta = meta_of(p)
  local changes = {}
  local size = p.size
  for _, u in ipairs(op.props) do
    local code, key, text = u[1], u[2], u[3]
    local cur_meta, cur_text = meta[key], vals[key]
    local new_meta, new_text = false, false -- false: no state (arrival-mode unset)
    local replace
    if TIMESTAMP_MODE then
      new_meta = code .. op.ord
      if code ~= 'u' then
        new_text = text
      end
      replace = beats(new_meta, text, cur_meta, cur_text or '')
    elseif code == 's' then -- a state records the event that last changed its value
      new_meta, new_text = 's' .. op.ord, text
      replace = text ~= cur_text
    elseif code == 'o' then
      new_meta, new_text = 's' .. op.ord, text
      replace = cur_text == nil
    elseif code == 'x' then -- set, then unset of a key present before the event
      if cur_text == nil then
        new_meta, new_text = 's' .. op.ord, text
      end
      replace = true
    else -- unset: only a key present before the event
      replace = cur_text ~= nil
    end
    if replace then
      changes[#changes + 1] = { key, new_meta, new_text }
      if cur_text then
        size = size - #key - #cur_text
      end
      if new_text then
        size = size + #key + #new_text
      end
    end
  end
  if #changes == 0 then
    return false, false
  end
  if size > MAX_BYTES and size > p.size then
    return false, true
  end
  for _, ch in ipairs(changes) do
    meta[ch[1]] = ch[2] or nil
    vals[ch[1]] = ch[3] or nil
  end
  p.size = size
  p.snapshot = false
  p.props_dirty = true
  return true, false
end

-- The visible properties as a JSON object text.
local function snapshot(p)
  local snap = p.snapshot
  if not snap then
    local parts = {}
    for key, text in pairs(vals_of(p)) do
      parts[#parts + 1] = cjson.encode(key) .. ':' .. text
    end
    snap = '{' .. concat(parts, ',') .. '}'
    p.snapshot = snap
  end
  return snap
end

---------------------------------------------------------------------------------------------
-- 5. The rules, op by op.
---------------------------------------------------------------------------------------------
local NONE = {}

local function result(pid, person_mode, created_at, identified, props_json, merged, created,
                      warnings, overrides, version)
  local warned, parts = '', ''
  if #warnings > 0 then
    warned = '"' .. concat(warnings, '","') .. '"'
  end
  if #overrides > 0 then
    local list = {}
    for k, o in ipairs(overrides) do
      list[k] = '[' .. cjson.encode(o[1]) .. ',"' .. o[2] .. '","' .. o[3] .. '"]'
    end
    parts = concat(list, ',')
  end
  return '["' .. pid .. '","' .. person_mode .. '",' .. (created_at or 'null') .. ',' ..
      (identified and 'true' or 'false') .. ',' .. props_json .. ',' ..
      (merged and 'true' or 'false') .. ',' .. (created and 'true' or 'false') .. ',[' ..
      warned .. '],[' .. parts .. '],' .. (version or 'null') .. ']'
end

local LIMIT = 'merge_limit_exceeded'
local IDENTIFIED = 'cannot_merge_already_identified'
local SIZE = 'person_properties_size_violation'

-- Apply one operation (never a bufferable one: see section 6) and return its result text.
-- `warning` (or nil) is put first in the result's warnings.
local function apply(op, warning)
  if not op.process then
    -- A6: personless. Nothing is created or updated.
    local root = find(op.into)
    if root then
      local p = load(root)
      local pm = op.ts > p.c + FORCE_UPGRADE_MS and 'force_upgrade' or 'propertyless'
      return result(p.pid, pm, p.c_text, p.i, '{}', false, false, NONE, NONE)
    end
    return result(op.into_pid, 'propertyless', nil, false, '{}', false, false, NONE, NONE)
  else
    local warnings = { warning }
    local overrides = {}
    local merged = false -- A3.3, A3.4, allowed A3.6
    local created = false -- the event created its person (its version stays 0)
    local remade = false -- A3.6 merge: version already set to max + 1
    local bump = false -- the person's distinct ids changed (a join)
    local r1 = find(op.into)
    local root
    if not op.merge then
      if r1 then
        root = r1
      else
        root, created = op.into, true
        create(op.into, op.into_pid, op.ts, op.ts_text)
      end
    else
      local r2 = find(op.other)
      if not r1 and not r2 then
        -- A3.3: one new person, created by into, holds both.
        root, created = op.into, true
        local np = create(op.into, op.into_pid, op.ts, op.ts_text)
        if MAX_IDS < 2 then
          warnings[#warnings + 1] = LIMIT
        else
          join(op.other, root, np)
          overrides[1] = { op.other, op.other_pid, op.into_pid }
          merged = true
        end
      elseif not r2 then
        -- A3.4: other joins into's person.
        root = r1
        local q = load(r1)
        if q.n >= MAX_IDS then
          warnings[#warnings + 1] = LIMIT
        else
          join(op.other, r1, q)
          overrides[1] = { op.other, op.other_pid, q.pid }
          merged, bump = true, true
        end
      elseif not r1 then
        -- A3.4: into joins other's person (which keeps its id).
        local q = load(r2)
        if q.n >= MAX_IDS then
          warnings[#warnings + 1] = LIMIT
          root, created = op.into, true
          create(op.into, op.into_pid, op.ts, op.ts_text)
        else
          root = r2
          join(op.into, r2, q)
          overrides[1] = { op.into, op.into_pid, q.pid }
          merged, bump = true, true
        end
      elseif r1 == r2 then
        -- A3.5: same person.
        root = r1
      else
        -- A3.6: different persons.
        local p1, p2 = load(r1), load(r2)
        root = r1
        if p2.i and not op.dangerous then
          warnings[#warnings + 1] = IDENTIFIED
        elseif p1.n + p2.n > MAX_IDS then
          warnings[#warnings + 1] = LIMIT
        else
          root = merge(r1, p1, r2, p2, overrides)
          merged, remade = true, true
        end
      end
    end

    -- The event itself, on the person it landed on.
    local p = load(root)
    dirty[root] = true
    if op.ts < p.c then
      p.c, p.c_text = op.ts, op.ts_text
    end
    if op.ts > p.s then
      p.s, p.s_text = op.ts, op.ts_text
    end
    if op.merge and not p.i then
      p.i = true
      bump = true
    end
    local changed, refused = false, false
    if #op.props > 0 then
      changed, refused = update_properties(p, op)
      if refused then
        warnings[#warnings + 1] = SIZE
      end
    end
    if (bump or changed) and not created and not remade then
      p.v = p.v + 1
      p.v_text = tostring(p.v)
    end
    return result(p.pid, 'full', p.c_text, p.i, snapshot(p), merged, created, warnings,
      overrides, p.v_text)
  end
end

---------------------------------------------------------------------------------------------
-- 6. The 60-second buffer (docs/BUFFER.md). Keys start with KEYS[5] = <p>:{t}:buf: and so
-- share the tenant's slot: q:<id> (list of entry uuids, oldest first), e (hash uuid -> the
-- entry: ingestion time then the op's fields, as cjson), p (hash uuid -> payload), due (zset
-- id -> due time of its oldest entry), pending (zset uuid -> lease deadline: released, not yet
-- acknowledged), n (entries waiting). Like every other write, buffer writes are deferred to
-- the end of the script; in between, `queues` holds each touched id's queue.
---------------------------------------------------------------------------------------------
local OVERFLOW = 'buffer_overflow'
local queues = {} -- id -> { stored = entries in Redis (0 once cleared), cleared, pushed = {} }
local entries_out = {} -- uuid -> { blob, payload }: entries to write (pushed or released)
local pending_out = {} -- uuid -> lease deadline
local released = {} -- result texts of released entries, in release order
local n_delta = 0
local any_queue = nil

local function queue(id)
  local q = queues[id]
  if q == nil then
    q = { stored = redis.call('LLEN', BUF .. 'q:' .. id), cleared = false, pushed = {} }
    queues[id] = q
  end
  return q
end

local function tenant_has_queues()
  if any_queue == nil then
    any_queue = redis.call('EXISTS', BUF .. 'due') == 1
  end
  return any_queue
end

local function waiting(id)
  if not tenant_has_queues() then
    return 0
  end
  local q = queue(id)
  return q.stored + #q.pushed
end

local total_cache = nil
local function total()
  if total_cache == nil then
    total_cache = tonumber(redis.call('GET', BUF .. 'n') or '0')
  end
  return total_cache + n_delta
end

local function entry_text(uuid, reason, ingested, res)
  return '[' .. cjson.encode(uuid) .. ',"' .. reason .. '",' .. ingested .. ',' .. res .. ']'
end

-- Release every waiting entry of `id`, in order: apply it now, lease it to this caller.
local function release(id, reason)
  local q = queue(id)
  local list = {}
  if q.stored > 0 then
    local uuids = redis.call('LRANGE', BUF .. 'q:' .. id, 0, -1)
    local blobs = redis.call('HMGET', BUF .. 'e', unpack(uuids))
    for k, uuid in ipairs(uuids) do
      if blobs[k] then
        list[#list + 1] = { uuid, blobs[k] }
      end
    end
  end
  for _, pushed in ipairs(q.pushed) do
    list[#list + 1] = pushed
  end
  n_delta = n_delta - q.stored - #q.pushed
  q.stored, q.cleared, q.pushed = 0, true, {}
  for k, item in ipairs(list) do
    local fields = cjson.decode(item[2])
    local op = parse_op(fields, 2, k)
    local res = apply(op, reason == 'overflow' and OVERFLOW or nil)
    released[#released + 1] = entry_text(item[1], reason, fields[1], res)
    pending_out[item[1]] = NOW + LEASE_MS
  end
end

local function uuid_of(op)
  return sub(op.ord, 21)
end

-- A bufferable op: wait behind the id's queue, or while no person holds the id. Returns the
-- result text, or nil when the op is to be applied now.
local function maybe_buffer(op)
  if BUFFER_DELAY_MS <= 0 then
    return nil
  end
  local n = waiting(op.into)
  if n == 0 and find(op.into) then
    return nil
  end
  if n >= BUFFER_MAX_PER_ID or total() >= BUFFER_MAX_TOTAL then
    release(op.into, 'overflow')
    return apply(op, OVERFLOW)
  end
  local uuid = uuid_of(op)
  if entries_out[uuid] == nil and redis.call('HEXISTS', BUF .. 'e', uuid) == 0 then
    local blob = cjson.encode({ op.ingested, unpack(op.fields) })
    local q = queue(op.into)
    q.pushed[#q.pushed + 1] = { uuid, blob }
    entries_out[uuid] = { blob, op.payload }
    n_delta = n_delta + 1
    any_queue = true
  end
  return result('', 'buffered', nil, false, '{}', false, false, NONE, NONE)
end

-- After an op: an id that now has a person releases its waiting entries (reason merge: a
-- merge, or any event that gave it a person).
local function release_gained(op)
  if not tenant_has_queues() then
    return
  end
  if waiting(op.into) > 0 and find(op.into) then
    release(op.into, 'merge')
  end
  if op.merge and waiting(op.other) > 0 and find(op.other) then
    release(op.other, 'merge')
  end
end

local results = {}
if COMMAND == 'resolve' then
  for idx, op in ipairs(ops) do
    local res = op.buffer and maybe_buffer(op) or nil
    if res == nil then
      res = apply(op, nil)
      release_gained(op)
    end
    results[idx] = res
  end
else
  -- release: leases that expired (their worker died), then ids whose wait is over.
  local expired = redis.call('ZRANGEBYSCORE', BUF .. 'pending', '-inf', NOW, 'LIMIT', 0,
    RELEASE_LIMIT)
  if #expired > 0 then
    local blobs = redis.call('HMGET', BUF .. 'e', unpack(expired))
    for k, uuid in ipairs(expired) do
      if blobs[k] then
        local fields = cjson.decode(blobs[k])
        local res = apply(parse_op(fields, 2, k), nil)
        released[#released + 1] = entry_text(uuid, 'redelivery', fields[1], res)
        pending_out[uuid] = NOW + LEASE_MS
      else
        pending_out[uuid] = false
      end
    end
  end
  local due = redis.call('ZRANGEBYSCORE', BUF .. 'due', '-inf', NOW, 'LIMIT', 0, RELEASE_LIMIT)
  for _, id in ipairs(due) do
    release(id, 'timeout')
  end
end

---------------------------------------------------------------------------------------------
-- 6. Write back: members sets, every changed field of KEYS[1] in one HSET, the reply.
---------------------------------------------------------------------------------------------
if PREVIOUS_REPLY ~= REPLY then
  redis.call('DEL', PREVIOUS_REPLY)
end
for root in pairs(dropped) do
  redis.call('DEL', MEMBERS .. root)
end
for root, ids in pairs(added) do
  local p = persons[root]
  if p and #ids > 0 then
    if not p.stored_set then
      ids[#ids + 1] = root
    end
    for k = 1, #ids, 1000 do
      redis.call('SADD', MEMBERS .. root, unpack(ids, k, math.min(k + 999, #ids)))
    end
  end
end

for root in pairs(dirty) do
  local p = persons[root]
  local tail, mlen, vlen = p.tail, p.mlen, p.vlen
  if p.props_dirty then
    local meta, vals = cjson.encode(p.meta), cjson.encode(p.vals)
    tail, mlen, vlen = meta .. vals .. snapshot(p), #meta, #vals
  end
  put(root, 'R' .. p.pid .. '|' .. p.c_text .. '|' .. p.s_text .. '|' .. (p.i and '1' or '0') ..
    '|' .. p.v_text .. '|' .. p.n .. '|' .. mlen .. '|' .. vlen .. '|' .. tail)
end
local fields = {}
for id in pairs(written) do
  fields[#fields + 1] = id
  fields[#fields + 1] = val[id]
end
for k = 1, #fields, 1000 do
  redis.call('HSET', IDS, unpack(fields, k, math.min(k + 999, #fields)))
end

-- the buffer's writes
for id, q in pairs(queues) do
  local key = BUF .. 'q:' .. id
  if q.cleared then
    redis.call('DEL', key)
    redis.call('ZREM', BUF .. 'due', id)
  end
  if #q.pushed > 0 then
    local uuids = {}
    for k, pushed in ipairs(q.pushed) do
      uuids[k] = pushed[1]
    end
    redis.call('RPUSH', key, unpack(uuids))
    if q.stored == 0 then -- a new queue: due when its first entry has waited long enough
      local first = cjson.decode(q.pushed[1][2])[1]
      redis.call('ZADD', BUF .. 'due', tonumber(first) + BUFFER_DELAY_MS, id)
    end
  end
end
for uuid, entry in pairs(entries_out) do
  redis.call('HSET', BUF .. 'e', uuid, entry[1])
  redis.call('HSET', BUF .. 'p', uuid, entry[2])
end
for uuid, deadline in pairs(pending_out) do
  if deadline then
    redis.call('ZADD', BUF .. 'pending', deadline, uuid)
  else -- an expired lease whose entry was acknowledged meanwhile
    redis.call('ZREM', BUF .. 'pending', uuid)
  end
end
if n_delta ~= 0 then
  redis.call('INCRBY', BUF .. 'n', n_delta)
end

local reply = '[[' .. concat(results, ',') .. '],[' .. concat(released, ',') .. ']]'
if REPLY_TTL_MS > 0 then
  redis.call('SET', REPLY, reply, 'PX', REPLY_TTL_MS)
end
return reply
