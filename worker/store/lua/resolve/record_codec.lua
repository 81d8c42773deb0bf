--[[
record_codec.lua: the stored text of a person record, the value of a root in the ids hash (pure:
no ctx, no Redis call; resolve_batch.lua, read_person.lua and delete_person.lua share it;
Python never reads a record: read_person.lua gives it a JSON view, record_codec.view).

Format 9 (written by this version), a binary header then the same parts as format 7:
  marker     "\3" then a flags byte then, unless the flags say implicit, the 16 bytes of a
             canonical (lowercase) uuid person id; or "\4" then the flags byte then the length
             of the person id's text, ':', the text
  flags      1 identified, 2 spilled, 4 wide (the wide header below), 8 implicit: the person
             id is the one its root's distinct id creates, uuid5 of "<tenant>:<root>" in
             PROTOCOL.person_namespace (worker/identity/ids.py, person_id_for), so it is not
             stored (most persons: every person whose root is the id that created it)
  header     created_at, last_seen (ms), version, id_count, len(snapshot), len(props) as
             big-endian unsigned integers of 6, 6, 2, 2, 2 and 2 bytes (20 bytes:
             struct '>I6I6I2I2I2I2'), or, wide, signed integers of 8 bytes then the lengths
             unsigned of 4 (40 bytes: '>i8i8i8i8I4I4') when a time falls outside [0, 2^48) ms
             or a count or length reaches 65,536
  then       snapshot props others, as in format 7
  created_at the time an event carried; last_seen an event's time rounded down to the
             last-seen resolution (records.seen_at); id_count the distinct ids of the tree.
The header is 20 bytes where format 7 spent about 40 on digits and separators; for most
records that moves the value into a smaller allocation class of Redis's allocator.

Format 7 (written by store formats 7 and 8), still read, and rewritten in format 9 by the first
call that changes its person:
  marker and person id: "\1" then the 16 bytes of a canonical (lowercase) uuid text, or "\2"
             then the length of the text, ':', the text
  then       created_at "|" last_seen "|" identified (1/0) spilled (1/0) "|" version "|"
             id_count "|" len(snapshot) "|" len(props) "|" snapshot props others
The parts both formats share:
  snapshot   the visible properties as one JSON object text, ready for the reply: '{' then, per
             visible key, the key's cjson text, ':', the value's text, joined by ','; then '}'
  props      "" when the person has no property state, else cmsgpack.pack(ords, visible,
             hidden): ords the distinct order keys of its states (ordering.lua), visible one
             triple (length of the key's cjson text, length of the value's text, state) per
             visible key in the snapshot's order, hidden one pair (key, state) per tombstone
             (a timestamp-mode unset); state = (index of its order key in ords - 1) * 4 +
             (0 set, 1 set_once, 2 unset). An order key (ordering.lua: 20 digits, then the
             event uuid) whose uuid is canonical is stored in 26 bytes: "\0", the digits as
             two big-endian integers of 4 and 5 bytes (first 10 digits, last 10), the uuid's
             16 bytes; any other is stored as its text (which starts with a digit).
  others     the tree's distinct ids other than the root, each as its length, ':', the id,
             while the tree holds at most MEMBERS_INLINE ids; spilled (1) beyond: others is
             "", and the string <members prefix> .. root holds every id of the tree in the
             same form (append-only; written by write_back.lua)
The values of the properties are so stored once (in the snapshot), with no decoding on an event
that changes none; the per-key texts and states (meta and vals of records.lua) are sliced back
out of the snapshot only when properties change.

Format 6 (the release before format 7), still read: "R" person_id "|" created_at "|" last_seen "|"
identified (1/0) "|" version "|" id_count "|" len(meta) "|" len(vals) "|" meta vals snapshot
(meta and vals cjson objects key -> op code .. order key and key -> text), the ids of a tree of
two or more in the set <members prefix> .. root. A format-6 record is rewritten in format 9 (and
its set deleted) by the first call that loads it (records.lua).

record_codec.MEMBERS_INLINE: the most ids a tree keeps inside its record (PROTOCOL.members_inline).
record_codec.is_record(value) -> whether value (of the ids hash) is a person record (any
  format) rather than a parent reference ("P" .. parent).
record_codec.fill(fields, value) -> false when value is unreadable, else true, fields (a table)
  holding what decode returns, except the person id of an implicit record (person_id false):
  the caller's to derive.
record_codec.decode(value, root, tenant) -> fields, or nil when unreadable (or implicit without
  root and tenant: root the id whose value it is, tenant raw, record_codec.tenant_of):
  { person_id, person_id_bytes (the 16 bytes; nil: stored as text; false: implicit), implicit
  (the person id is root's, not stored), created_at and last_seen (numbers), created_at_text
  (digits), identified, spilled, version, version_text, id_count, snapshot, props, others_text,
  legacy (format 6: then meta_text and vals_text instead of props and others_text, the ids
  being in the set) }.
record_codec.encode(fields, implicit) -> the format-9 text of fields as decode returns them (the
  numbers: created_at, last_seen, version, id_count; the texts are not read); implicit: the
  person id is its root's (record_codec.person_uuid), not stored.
record_codec.uuid5(namespace, name) -> the uuid5 text of name in namespace (16 bytes).
record_codec.person_uuid(tenant, id) -> the person id id creates: uuid5 of "<tenant>:<id>" in
  PROTOCOL.person_namespace (worker/identity/ids.py, person_id_for, epoch 0).
record_codec.tenant_of(ids_key) -> the raw tenant of a tenant's ids key ("<p>:{<tenant,
  percent-encoded>}:ids", worker/store/keys.py), or nil.
record_codec.others_of(person) -> the array of the non-root ids of a person that is not
  spilled, decoded from person.others_text on first use (person.others).
record_codec.decode_props(snapshot, props) -> meta, vals (key -> op code .. order key, key ->
  text). The order key of a decoded meta is left in its stored form (26 bytes from "\0" on,
  or the text): only the keys an event compares are turned into text (meta_text), which costs
  a decoding less per order key of the record; encode_props takes either form.
record_codec.meta_text(meta) -> the meta with its order key as text (ordering.lua compares
  those): a meta of decode_props, or one already in text form (returned as is).
record_codec.pack_order(ord) -> the stored form of an order key text: "\0", its two 10-digit
  halves as big-endian integers of 4 and 5 bytes, its uuid's 16 bytes (26 bytes, which compare
  bytewise as the texts do), or the text itself when it is not 20 digits and a canonical uuid.
record_codec.snapshot_of(vals) -> snapshot, layout: the JSON object text of vals, and its
  layout (key, length of the key's cjson text, ... in the snapshot's order).
record_codec.encode_props(meta, vals, snapshot, layout) -> snapshot, props (snapshot and layout,
  when given, those of snapshot_of(vals)).
record_codec.view(root, fields, ids) -> a JSON text of the person for Python's reads
  (worker/store/person_record.py): {"root", "person_id", "created_at", "last_seen",
  "identified", "version", "ids", "meta", "vals"} (meta and vals as in records.lua).
record_codec.members_text(ids) -> the members string of ids (to APPEND).
record_codec.parse_members(text) -> array of the ids of a members string.
record_codec.root_of(id, get, who) -> root, its value: the root of id's tree, following the
  parent entries ("P" .. parent) that get(id) returns from the ids hash; nil when get(id) is
  false. Raises "<who>: broken parent chain at <id>" on a parent with no entry or more than
  100,000 hops.
record_codec.tree_ids(root, fields, read) -> array of every id of root's tree (root first
  unless the ids come from a members key); read(kind) returns what Redis holds at the members
  key: kind "set" (format 6, a tree of several ids) the members set, "string" (formats 7 and 9,
  a tree beyond MEMBERS_INLINE ids) the members string or false; this module never calls Redis.
record_codec.person_id_bytes(text) -> the 16 bytes of a canonical uuid text, or nil.
]]
local record_codec = {}

local byte, sub, format = string.byte, string.sub, string.format
local concat = table.concat
local pack, unpack_all = cmsgpack.pack, cmsgpack.unpack

record_codec.MEMBERS_INLINE = PROTOCOL.members_inline

local BINARY_ID, TEXT_ID = '\3', '\4' -- format 9
local BINARY_ID_BYTE, TEXT_ID_BYTE = 3, 4
local BINARY_ID_BYTE_7, TEXT_ID_BYTE_7, LEGACY_BYTE = 1, 2, byte('R')
local IDENTIFIED, SPILLED, WIDE, IMPLICIT = 1, 2, 4, 8 -- the flags byte of format 9
local NARROW_HEADER, WIDE_HEADER = '>I6I6I2I2I2I2', '>i8i8i8i8I4I4'
local NARROW_SIZE, WIDE_SIZE = 20, 40
local TIME_LIMIT, COUNT_LIMIT = 2 ^ 48, 65536
local char = string.char
-- No table is built when the script starts (it starts on every call): the 16 bytes of a uuid
-- are read and written as six big-endian integers (the groups of its text: 8, 4, 4, 4, then
-- 4 and 8 hex digits) by one struct.pack or struct.unpack, and one format.
local UUID_STRUCT = '>I4I2I2I2I2I4'
local UUID_FORMAT = '%08x-%04x-%04x-%04x-%04x%08x'
local ORDER_STRUCT = '>I4I5I4I2I2I2I2I4' -- a stored order key after its "\0"
local ORDER_FORMAT = '%010d%010d' .. UUID_FORMAT
-- The two patterns as literals, one concatenation each: built with string.rep on every call
-- (each call defines the script's modules anew) they cost 0.2% of the drain mix's instructions.
-- A canonical uuid: 8, 4, 4, 4 and 12 lowercase hex digits.
local CANONICAL_UUID = '^[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]' ..
  '%-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]%-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]' ..
  '%-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]' ..
  '%-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]' ..
  '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]$'
-- An order key that packs: 10 and 10 digits, then a canonical uuid (its 8, 4, 4, 4, 4 and 8
-- hex digits), each group captured.
local PACKABLE_ORDER = '^(%d%d%d%d%d%d%d%d%d%d)(%d%d%d%d%d%d%d%d%d%d)' ..
  '([0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f])' ..
  '%-([0-9a-f][0-9a-f][0-9a-f][0-9a-f])%-([0-9a-f][0-9a-f][0-9a-f][0-9a-f])' ..
  '%-([0-9a-f][0-9a-f][0-9a-f][0-9a-f])%-([0-9a-f][0-9a-f][0-9a-f][0-9a-f])' ..
  '([0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f])$'
local CODES = { [0] = PROTOCOL.code.set, [1] = PROTOCOL.code.set_once,
  [2] = PROTOCOL.code.unset }
local CODE_NUMBER = { [byte(PROTOCOL.code.set)] = 0, [byte(PROTOCOL.code.set_once)] = 1,
  [byte(PROTOCOL.code.unset)] = 2 }

function record_codec.is_record(value)
  local b = byte(value, 1)
  return b == BINARY_ID_BYTE or b == TEXT_ID_BYTE or b == BINARY_ID_BYTE_7 or
    b == TEXT_ID_BYTE_7 or b == LEGACY_BYTE
end

function record_codec.person_id_bytes(text)
  if #text ~= 36 or not string.find(text, CANONICAL_UUID) then -- lowercase hex only
    return nil
  end
  return struct.pack(UUID_STRUCT, tonumber(sub(text, 1, 8), 16), tonumber(sub(text, 10, 13), 16),
    tonumber(sub(text, 15, 18), 16), tonumber(sub(text, 20, 23), 16),
    tonumber(sub(text, 25, 28), 16), tonumber(sub(text, 29, 36), 16))
end

-- The canonical uuid text of 16 bytes.
local function uuid_text(bytes)
  return format(UUID_FORMAT, struct.unpack(UUID_STRUCT, bytes))
end

function record_codec.uuid5(namespace, name)
  local h = redis.sha1hex(namespace .. name)
  local variant = format('%x', 8 + tonumber(sub(h, 17, 17), 16) % 4)
  return sub(h, 1, 8) .. '-' .. sub(h, 9, 12) .. '-5' .. sub(h, 14, 16) .. '-' .. variant ..
    sub(h, 18, 20) .. '-' .. sub(h, 21, 32)
end

local person_namespace -- its 16 bytes, made on first use

function record_codec.person_uuid(tenant, id)
  if person_namespace == nil then
    person_namespace = record_codec.person_id_bytes(PROTOCOL.person_namespace)
  end
  return record_codec.uuid5(person_namespace, tenant .. ':' .. id)
end

local function unescape(hex)
  return string.char(tonumber(hex, 16))
end

function record_codec.tenant_of(ids_key)
  local escaped = string.match(ids_key, '{([^{}]*)}:ids$')
  return escaped and (string.gsub(escaped, '%%(%x%x)', unescape)) or nil
end

local function fill_legacy(fields, value)
  local person_id, created_at, last_seen, identified, version, id_count, meta_length,
      vals_length, tail = string.match(value,
        '^R([^|]*)|(-?%d+)|(-?%d+)|([01])|(%d+)|(%d+)|(%d+)|(%d+)|(.*)$')
  if person_id == nil then
    return false
  end
  meta_length, vals_length = tonumber(meta_length), tonumber(vals_length)
  fields.person_id, fields.created_at_text, fields.last_seen_text = person_id, created_at,
    last_seen
  fields.created_at, fields.last_seen = tonumber(created_at), tonumber(last_seen)
  fields.identified, fields.version, fields.version_text = identified == '1',
    tonumber(version), version
  fields.id_count, fields.legacy = tonumber(id_count), true
  fields.meta_text = sub(tail, 1, meta_length)
  fields.vals_text = sub(tail, meta_length + 1, meta_length + vals_length)
  fields.snapshot = sub(tail, meta_length + vals_length + 1)
  return true
end

local HEADER = '^(-?%d+)|(-?%d+)|([01])([01])|(%d+)|(%d+)|(%d+)|(%d+)|()'

-- The person id of a record (either format's marker): its text, its 16 bytes or nil, and the
-- position after it; nil when unreadable. pos is where the id's part starts.
local function person_id_at(value, binary, pos)
  if binary then
    local id_bytes = sub(value, pos, pos + 15)
    if #id_bytes ~= 16 then
      return nil
    end
    return uuid_text(id_bytes), id_bytes, pos + 16
  end
  local colon = string.find(value, ':', pos, true)
  local length = colon and tonumber(sub(value, pos, colon - 1))
  if length == nil then
    return nil
  end
  return sub(value, colon + 1, colon + length), nil, colon + length + 1
end

-- The snapshot, props and others of a record whose header ends before `at`.
local function fill_parts(fields, value, at, snapshot_length, props_length)
  local props_at = at + snapshot_length
  local others_at = props_at + props_length
  if others_at > #value + 1 then
    return false
  end
  fields.snapshot, fields.props = sub(value, at, props_at - 1), sub(value, props_at, others_at - 1)
  fields.others_text = sub(value, others_at)
  return true
end

local function fill_7(fields, value, binary)
  local person_id, id_bytes, pos = person_id_at(value, binary, 2)
  if person_id == nil then
    return false
  end
  local created_at, last_seen, identified, spilled, version, id_count, snapshot_length,
    props_length, at = string.match(value, HEADER, pos)
  if created_at == nil then
    return false
  end
  fields.person_id, fields.person_id_bytes = person_id, id_bytes
  fields.created_at_text, fields.last_seen_text = created_at, last_seen
  fields.created_at, fields.last_seen = tonumber(created_at), tonumber(last_seen)
  fields.identified, fields.spilled = identified == '1', spilled == '1'
  fields.version, fields.version_text, fields.id_count = tonumber(version), version,
    tonumber(id_count)
  return fill_parts(fields, value, at, snapshot_length, props_length)
end

function record_codec.fill(fields, value)
  local marker = byte(value, 1)
  if marker ~= BINARY_ID_BYTE and marker ~= TEXT_ID_BYTE then
    if marker == BINARY_ID_BYTE_7 or marker == TEXT_ID_BYTE_7 then
      return fill_7(fields, value, marker == BINARY_ID_BYTE_7)
    elseif marker == LEGACY_BYTE then
      return fill_legacy(fields, value)
    end
    return false
  end
  local flags = byte(value, 2)
  if flags == nil then
    return false
  end
  local person_id, id_bytes, pos
  if flags >= 16 then
    return false
  elseif flags >= IMPLICIT then -- the caller derives the person id (decode does)
    person_id, id_bytes, pos = false, false, 3
    flags = flags - IMPLICIT
    fields.implicit = true
  else
    person_id, id_bytes, pos = person_id_at(value, marker == BINARY_ID_BYTE, 3)
    if person_id == nil then
      return false
    end
  end
  local wide = flags >= WIDE
  if #value < pos + (wide and WIDE_SIZE or NARROW_SIZE) - 1 then
    return false
  end
  local created_at, last_seen, version, id_count, snapshot_length, props_length, at =
    struct.unpack(wide and WIDE_HEADER or NARROW_HEADER, value, pos)
  fields.person_id, fields.person_id_bytes = person_id, id_bytes
  fields.created_at, fields.last_seen = created_at, last_seen
  fields.created_at_text = format('%d', created_at)
  fields.identified, fields.spilled = flags % 2 == IDENTIFIED, flags % 4 >= SPILLED
  fields.version, fields.version_text, fields.id_count = version, format('%d', version), id_count
  return fill_parts(fields, value, at, snapshot_length, props_length)
end

function record_codec.decode(value, root, tenant)
  local fields = {}
  if not record_codec.fill(fields, value) then
    return nil
  end
  if fields.implicit then
    if root == nil or tenant == nil then
      return nil
    end
    fields.person_id = record_codec.person_uuid(tenant, root)
  end
  return fields
end

function record_codec.encode(fields, implicit)
  local id_bytes, snapshot, props = fields.person_id_bytes, fields.snapshot, fields.props
  local created_at, last_seen, version, id_count = fields.created_at, fields.last_seen,
    fields.version, fields.id_count
  local snapshot_length, props_length = #snapshot, #props
  local flags = (fields.identified and IDENTIFIED or 0) + (fields.spilled and SPILLED or 0)
  local header
  if created_at >= 0 and created_at < TIME_LIMIT and last_seen >= 0 and last_seen < TIME_LIMIT
      and version < COUNT_LIMIT and id_count < COUNT_LIMIT and snapshot_length < COUNT_LIMIT
      and props_length < COUNT_LIMIT then
    header = struct.pack(NARROW_HEADER, created_at, last_seen, version, id_count,
      snapshot_length, props_length)
  else
    flags = flags + WIDE
    header = struct.pack(WIDE_HEADER, created_at, last_seen, version, id_count,
      snapshot_length, props_length)
  end
  local head
  if implicit then
    head = BINARY_ID .. char(flags + IMPLICIT)
  elseif id_bytes then
    head = BINARY_ID .. char(flags) .. id_bytes
  else
    head = TEXT_ID .. char(flags) .. #fields.person_id .. ':' .. fields.person_id
  end
  return head .. header .. snapshot .. props .. (fields.spilled and '' or fields.others_text)
end

function record_codec.others_of(person)
  local others = person.others
  if others == nil then
    others = record_codec.parse_members(person.others_text)
    person.others = others
  end
  return others
end

-- The stored form of each order key met in this call (by its text), both ways: an event's
-- order key is packed once however many keys it sets and compares (properties.lua), and a
-- stored key turned into text (meta_text) is not packed again.
local PACKED, UNPACKED = {}, {}

function record_codec.pack_order(ord)
  local stored = PACKED[ord]
  if stored then
    return stored
  end
  stored = ord
  if #ord == 56 then -- 20 digits and a uuid text?
    local high, low, a, b, c, d, e, f = string.match(ord, PACKABLE_ORDER)
    if high then
      stored = '\0' .. struct.pack(ORDER_STRUCT, tonumber(high), tonumber(low), tonumber(a, 16),
        tonumber(b, 16), tonumber(c, 16), tonumber(d, 16), tonumber(e, 16), tonumber(f, 16))
    end
  end
  PACKED[ord] = stored
  return stored
end

local function unpack_order(stored)
  if byte(stored, 1) ~= 0 then
    return stored
  end
  local ord = UNPACKED[stored]
  if ord == nil then
    ord = format(ORDER_FORMAT, struct.unpack(ORDER_STRUCT, stored, 2))
    UNPACKED[stored] = ord
    if #ord == 56 then -- what pack_order makes of it (the digits fit their 10 places)
      PACKED[ord] = stored
    end
  end
  return ord
end

function record_codec.decode_props(snapshot, props)
  local meta, vals = {}, {}
  if props == '' then
    return meta, vals
  end
  local ords, visible, hidden = unpack_all(props) -- ords in their stored form (meta_text)
  local pos = 2 -- after '{'
  local escaped = string.find(snapshot, '\\', 1, true) -- else no key needs decoding
  for k = 1, #visible, 3 do
    local key_length, text_length, state = visible[k], visible[k + 1], visible[k + 2]
    local key = sub(snapshot, pos + 1, pos + key_length - 2) -- within its quotes
    if escaped and string.find(key, '\\', 1, true) then
      key = cjson.decode(sub(snapshot, pos, pos + key_length - 1))
    end
    pos = pos + key_length + 1
    vals[key] = sub(snapshot, pos, pos + text_length - 1)
    pos = pos + text_length + 1
    local code = state % 4
    meta[key] = CODES[code] .. ords[(state - code) / 4 + 1]
  end
  for k = 1, #hidden, 2 do
    local state = hidden[k + 1]
    local code = state % 4
    meta[hidden[k]] = CODES[code] .. ords[(state - code) / 4 + 1]
  end
  return meta, vals
end

-- The text form of each meta met in this call, by its stored form.
local META_TEXT = {}

function record_codec.meta_text(meta)
  if byte(meta, 2) ~= 0 then
    return meta -- text already (also an order key stored as text)
  end
  local text = META_TEXT[meta]
  if text == nil then
    text = sub(meta, 1, 1) .. unpack_order(sub(meta, 2))
    META_TEXT[meta] = text
  end
  return text
end

-- The cjson text of each property key met in this call: the same keys recur across persons.
local QUOTED = {}

function record_codec.snapshot_of(vals)
  -- the pieces joined once: no string is made per key; both arrays made at the size of four
  -- keys (a table grown one step at a time is resized, and rehashed, at 1, 2, 4, 8, 16)
  local parts = { '{', nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil,
    nil }
  local layout, n, m = { nil, nil, nil, nil, nil, nil, nil, nil }, 1, 0
  for key, text in pairs(vals) do
    local quoted = QUOTED[key]
    if quoted == nil then
      quoted = cjson.encode(key)
      QUOTED[key] = quoted
    end
    parts[n + 1], parts[n + 2], parts[n + 3], parts[n + 4] = quoted, ':', text, ','
    n = n + 4
    layout[m + 1], layout[m + 2] = key, #quoted
    m = m + 2
  end
  n = n > 1 and n or 2
  parts[n] = '}' -- in place of the last ','
  return concat(parts, '', 1, n), layout
end

-- The state of meta m (encode_props): its order key's index in ords (added, and indexed by
-- index, when new) and its code.
local function state_of(m, ords, index)
  local ord = sub(m, 2)
  if byte(ord, 1) ~= 0 then -- a text (pack_order is a lookup for a text met before)
    ord = record_codec.pack_order(ord)
  end
  local i = index[ord]
  if i == nil then
    i = #ords + 1
    ords[i], index[ord] = ord, i
  end
  return (i - 1) * 4 + CODE_NUMBER[byte(m, 1)]
end

function record_codec.encode_props(meta, vals, snapshot, layout)
  if not snapshot or not layout then
    snapshot, layout = record_codec.snapshot_of(vals)
  end
  -- (no closure made per call; ords and visible made at the size of four keys: a table grown
  -- from empty is resized at 1, 2, 4, 8, 16)
  local ords, index, hidden, n = { nil, nil, nil, nil }, {}, {}, 0
  local visible = { nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil }
  for k = 1, #layout, 2 do
    local key = layout[k]
    visible[n + 1], visible[n + 2], visible[n + 3] = layout[k + 1], #vals[key],
      state_of(meta[key], ords, index)
    n = n + 3
  end
  n = 0
  for key, m in pairs(meta) do
    if vals[key] == nil then
      hidden[n + 1], hidden[n + 2] = key, state_of(m, ords, index)
      n = n + 2
    end
  end
  if #ords == 0 then
    return snapshot, ''
  end
  return snapshot, pack(ords, visible, hidden)
end

function record_codec.view(root, fields, ids)
  local meta, vals
  if fields.legacy then
    meta, vals = cjson.decode(fields.meta_text), cjson.decode(fields.vals_text)
  else
    meta, vals = record_codec.decode_props(fields.snapshot, fields.props)
    for key, m in pairs(meta) do
      meta[key] = record_codec.meta_text(m)
    end
  end
  return '{"root":' .. cjson.encode(root) .. ',"person_id":' .. cjson.encode(fields.person_id)
    .. ',"created_at":' .. format('%d', fields.created_at) .. ',"last_seen":'
    .. format('%d', fields.last_seen)
    .. ',"identified":' .. (fields.identified and 'true' or 'false') .. ',"version":'
    .. format('%d', fields.version) .. ',"ids":' .. cjson.encode(ids) .. ',"meta":'
    .. cjson.encode(meta) .. ',"vals":' .. cjson.encode(vals) .. '}'
end

function record_codec.members_text(ids)
  local parts = {}
  for k, id in ipairs(ids) do
    parts[k] = #id .. ':' .. id
  end
  return concat(parts)
end

function record_codec.parse_members(text)
  local ids, pos, n = {}, 1, #text
  while pos <= n do
    local colon = string.find(text, ':', pos, true)
    local length = colon and tonumber(sub(text, pos, colon - 1))
    if length == nil then
      error('unreadable members string')
    end
    ids[#ids + 1] = sub(text, colon + 1, colon + length)
    pos = colon + length + 1
  end
  return ids
end

function record_codec.root_of(id, get, who)
  local node, value = id, get(id)
  if not value then
    return nil
  end
  local hops = 0
  while string.sub(value, 1, 1) == 'P' do
    node = string.sub(value, 2)
    value = get(node)
    hops = hops + 1
    if not value or hops > 100000 then
      error(who .. ': broken parent chain at ' .. node)
    end
  end
  return node, value
end

function record_codec.tree_ids(root, fields, read)
  if fields.legacy then
    return fields.id_count ~= 1 and read('set') or { root }
  end
  if fields.spilled then
    return record_codec.parse_members(read('string') or '')
  end
  local ids = { root }
  for _, id in ipairs(record_codec.parse_members(fields.others_text)) do
    ids[#ids + 1] = id
  end
  return ids
end

-- Forgets what the caches above (PACKED, UNPACKED, META_TEXT, QUOTED) hold: called at the start
-- of every call, so that a library loaded once and called many times (FCALL) holds no more
-- than one call's worth, as a script defined anew on every call (EVALSHA) does.
function record_codec.new_call()
  PACKED, UNPACKED, META_TEXT, QUOTED = {}, {}, {}, {}
end

return record_codec
