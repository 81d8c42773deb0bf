--[[
union_find.lua: the union-find of distinct ids in the hash ctx.keys.ids, and the members of each
tree.

Every known distinct id is a field of the hash: a non-root holds "P" .. parent, a root holds its
person record (record_codec.lua). Values are read into ctx.values (id -> value, or false for an
unknown id) and changed there; ctx.written (id -> true) lists what write_back.lua writes.
The ids of a tree other than its root live in the root's record (person.others) while the tree
holds at most record_codec.MEMBERS_INLINE ids; beyond, in the members string of the root
(ctx.keys.members .. root: each id as its length, ':', the id), appended to and never rewritten:
ids joining such a tree in this call are queued in ctx.added (root -> array of ids), ctx.fresh
(root -> true) marks a members string made in this call (written whole, replacing what the key
held), and ctx.dropped (root -> true) lists the members keys to delete (their root joined
another tree, or a format-6 set whose ids moved into the record).

union_find.prefetch(ctx, ops): reads the ops' ids (into, and other of a merge) and their
  ancestors with HMGETs, one level of the trees at a time.
union_find.get(ctx, id) -> the value of id, or false.
union_find.put(ctx, id, value): sets the value of id, to be written.
union_find.find(ctx, id) -> the root of id, or nil when no person holds it. Compresses the path
  it walked. Raises on a parent cycle, a broken chain or a root that is not a record.
union_find.members_of(ctx, root, person) -> array: the ids of root's tree (stored and added).
union_find.join(ctx, id, root, person): id (a new id) joins root's tree.
union_find.union(ctx, big, small, small_ids, small_person, big_person): small's tree joins
  big's.
union_find.spill(ctx, root, person): moves the ids of person's record to its members string.
]]
local union_find = {}

local byte, sub = string.byte, string.sub
local PARENT, LEGACY_RECORD = byte('P'), byte('R')

local function fetch(ctx, list)
  local values = ctx.values
  for k = 1, #list, 500 do
    local last = math.min(k + 499, #list)
    local got = redis.call('HMGET', ctx.keys.ids, unpack(list, k, last))
    for j = k, last do
      values[list[j]] = got[j - k + 1]
    end
  end
end

function union_find.prefetch(ctx, ops)
  local values = ctx.values
  local want, queued = {}, {}
  local function need(id)
    if values[id] == nil and not queued[id] then
      queued[id] = true
      want[#want + 1] = id
    end
  end
  for k = 1, #ops do -- (numeric loops: no ipairs call per op)
    local op = ops[k]
    local id = op.into -- need(op.into), without the call
    if values[id] == nil and not queued[id] then
      queued[id] = true
      want[#want + 1] = id
    end
    if op.merge then
      need(op.other)
    end
  end
  while #want > 0 do
    fetch(ctx, want)
    local level = want
    want = {}
    for k = 1, #level do
      local value = values[level[k]]
      if value and byte(value, 1) == PARENT then
        need(sub(value, 2))
      end
    end
  end
end

function union_find.get(ctx, id)
  local value = ctx.values[id]
  if value == nil then
    value = redis.call('HGET', ctx.keys.ids, id)
    ctx.values[id] = value
  end
  return value
end

function union_find.put(ctx, id, value)
  ctx.values[id] = value
  ctx.written[id] = true
end

function union_find.find(ctx, id)
  local value = ctx.values[id] -- prefetched (union_find.get only for an id that was not)
  if value == nil then
    value = union_find.get(ctx, id)
  end
  if not value then
    return nil
  end
  local node = id
  local marker = byte(value, 1) -- (one byte() per value met)
  -- the ids walked: first, then a table from the second on (none for a root or a path of one
  -- hop, the common ones); a value prefetched is read without a call
  local values, first, path = ctx.values, nil, nil
  while marker == PARENT do
    if first == nil then
      first = node
    else
      path = path or { first }
      path[#path + 1] = node
      if #path > 100000 then
        error('resolve_batch: parent cycle at ' .. id)
      end
    end
    node = sub(value, 2)
    value = values[node]
    if value == nil then
      value = union_find.get(ctx, node)
    end
    if not value then
      error('resolve_batch: broken parent chain at ' .. node)
    end
    marker = byte(value, 1)
  end
  if marker == nil or ((marker < 1 or marker > 4) and marker ~= LEGACY_RECORD) then -- is_record
    error('resolve_batch: unreadable entry for ' .. node)
  end
  if path then
    for k = 1, #path - 1 do
      union_find.put(ctx, path[k], 'P' .. node)
    end
  end
  return node
end

function union_find.members_of(ctx, root, person)
  local ids
  if not person.spilled then
    ids = { root }
    for _, id in ipairs(record_codec.others_of(person)) do
      ids[#ids + 1] = id
    end
    return ids
  end
  ids = {}
  if not ctx.fresh[root] then
    ids = record_codec.parse_members(redis.call('GET', ctx.keys.members .. root) or '')
  end
  for _, id in ipairs(ctx.added[root] or {}) do
    ids[#ids + 1] = id
  end
  return ids
end

function union_find.spill(ctx, root, person)
  local ids = { root }
  for _, id in ipairs(record_codec.others_of(person)) do
    ids[#ids + 1] = id
  end
  ctx.added[root] = ids
  ctx.fresh[root] = true
  person.spilled, person.others, person.others_text = true, nil, ''
end

local function add_ids(ctx, root, person, ids)
  if not person.spilled then
    local others = record_codec.others_of(person)
    for _, id in ipairs(ids) do
      others[#others + 1] = id
    end
    if #others + 1 > record_codec.MEMBERS_INLINE then
      union_find.spill(ctx, root, person)
    end
    return
  end
  local list = ctx.added[root] or {}
  for _, id in ipairs(ids) do
    list[#list + 1] = id
  end
  ctx.added[root] = list
end

function union_find.join(ctx, id, root, person)
  union_find.put(ctx, id, 'P' .. root)
  add_ids(ctx, root, person, { id })
  person.id_count = person.id_count + 1
end

function union_find.union(ctx, big, small, small_ids, small_person, big_person)
  union_find.put(ctx, small, 'P' .. big)
  add_ids(ctx, big, big_person, small_ids)
  ctx.added[small], ctx.fresh[small] = nil, nil
  if small_person.stored_members then
    ctx.dropped[small] = true
  end
end

return union_find
