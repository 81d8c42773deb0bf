--[[
record_codec.lua: the stored text of a person record, the value of a root in the ids hash (pure:
no ctx, no Redis call; resolve_batch.lua, read_person.lua and delete_person.lua share it;
worker/store/person_record.py decodes the same layout in Python).

Format 7 (written by this version):
  marker, then cmsgpack.pack(person_id, created_at, last_seen, identified, version, id_count,
                             snapshot, props, others)
  marker     "\1": person_id is the 16 bytes of a canonical (lowercase) uuid text;
             "\2": person_id is its text as is
  created_at, last_seen: digits (the texts the events carried); identified: a boolean;
  version, id_count: integers (id_count: the distinct ids of the tree)
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
  others     the tree's distinct ids other than the root (an array), while the tree holds at
             most MEMBERS_INLINE ids; false beyond: then the string <members prefix> .. root
             holds every id of the tree, each as its length, ':', the id (append-only; written
             by write_back.lua)
The values of the properties are so stored once (in the snapshot), with no decoding on an event
that changes none; the per-key texts and states (meta and vals of records.lua) are sliced back
out of the snapshot only when properties change.

Format 6 (the previous release), still read: "R" person_id "|" created_at "|" last_seen "|"
identified (1/0) "|" version "|" id_count "|" len(meta) "|" len(vals) "|" meta vals snapshot
(meta and vals cjson objects key -> op code .. order key and key -> text), the ids of a tree of
two or more in the set <members prefix> .. root. A format-6 record is rewritten in format 7 (and
its set deleted) by the first call that loads it (records.lua).

record_codec.MEMBERS_INLINE: the most ids a tree keeps inside its record (PROTOCOL.members_inline).
record_codec.is_record(value) -> whether value (of the ids hash) is a person record (either
  format) rather than a parent reference ("P" .. parent).
record_codec.decode(value) -> fields, or nil when unreadable: { person_id, person_id_bytes (the
  16 bytes, or nil), created_at_text, last_seen_text, identified, version, id_count, snapshot,
  props (format 7), others (array, or false), legacy (format 6: then meta_text and vals_text,
  and others is nil: the ids are in the set) }.
record_codec.encode(fields) -> the format-7 text of fields as decode returns them.
record_codec.decode_props(snapshot, props) -> meta, vals (key -> op code .. order key, key ->
  text).
record_codec.encode_props(meta, vals) -> snapshot, props.
record_codec.view(root, fields, ids) -> a JSON text of the person for Python's reads
  (worker/store/person_record.py): {"root", "person_id", "created_at", "last_seen",
  "identified", "version", "ids", "meta", "vals"} (meta and vals as in records.lua).
record_codec.members_text(ids) -> the members string of ids (to APPEND).
record_codec.parse_members(text) -> array of the ids of a members string.
record_codec.person_id_bytes(text) -> the 16 bytes of a canonical uuid text, or nil.
]]
local record_codec = {}

local byte, sub, char, format = string.byte, string.sub, string.char, string.format
local concat = table.concat
local pack, unpack_all = cmsgpack.pack, cmsgpack.unpack
local floor = math.floor

record_codec.MEMBERS_INLINE = PROTOCOL.members_inline

local BINARY_ID, TEXT_ID = '\1', '\2'
local BINARY_ID_BYTE, TEXT_ID_BYTE, LEGACY_BYTE = 1, 2, byte('R')
local UUID_FORMAT = '%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x'
local UUID_PATTERN = '^' .. string.rep('[0-9a-f]', 8) .. '%-' .. string.rep('[0-9a-f]', 4) ..
  '%-' .. string.rep('[0-9a-f]', 4) .. '%-' .. string.rep('[0-9a-f]', 4) .. '%-' ..
  string.rep('[0-9a-f]', 12) .. '$'
local ORDER_DIGITS = '^(' .. string.rep('%d', 10) .. ')(' .. string.rep('%d', 10) .. ')(.*)$'
local CODES = { [0] = PROTOCOL.code.set, [1] = PROTOCOL.code.set_once,
  [2] = PROTOCOL.code.unset }
local CODE_NUMBER = { [byte(PROTOCOL.code.set)] = 0, [byte(PROTOCOL.code.set_once)] = 1,
  [byte(PROTOCOL.code.unset)] = 2 }

function record_codec.is_record(value)
  local b = byte(value, 1)
  return b == BINARY_ID_BYTE or b == TEXT_ID_BYTE or b == LEGACY_BYTE
end

function record_codec.person_id_bytes(text)
  if #text ~= 36 or not string.find(text, UUID_PATTERN) then
    return nil
  end
  local hex = string.gsub(text, '%-', '')
  return (string.gsub(hex, '..', function(h) return char(tonumber(h, 16)) end))
end

local function decode_legacy(value)
  local person_id, created_at, last_seen, identified, version, id_count, meta_length,
      vals_length, tail = string.match(value,
        '^R([^|]*)|(-?%d+)|(-?%d+)|([01])|(%d+)|(%d+)|(%d+)|(%d+)|(.*)$')
  if person_id == nil then
    return nil
  end
  meta_length, vals_length = tonumber(meta_length), tonumber(vals_length)
  return {
    person_id = person_id, created_at_text = created_at, last_seen_text = last_seen,
    identified = identified == '1', version = tonumber(version), id_count = tonumber(id_count),
    legacy = true, meta_text = sub(tail, 1, meta_length),
    vals_text = sub(tail, meta_length + 1, meta_length + vals_length),
    snapshot = sub(tail, meta_length + vals_length + 1),
  }
end

function record_codec.decode(value)
  local marker = byte(value, 1)
  if marker == LEGACY_BYTE then
    return decode_legacy(value)
  end
  if marker ~= BINARY_ID_BYTE and marker ~= TEXT_ID_BYTE then
    return nil
  end
  local ok, id, created_at, last_seen, identified, version, id_count, snapshot, props, others =
    pcall(unpack_all, sub(value, 2))
  if not ok or type(id) ~= 'string' or type(snapshot) ~= 'string' or type(props) ~= 'string'
      or type(version) ~= 'number' or type(id_count) ~= 'number' then
    return nil
  end
  local fields = {
    person_id = id, created_at_text = created_at, last_seen_text = last_seen,
    identified = identified == true, version = version, id_count = id_count,
    snapshot = snapshot, props = props, others = others or false,
  }
  if marker == BINARY_ID_BYTE then
    if #id ~= 16 then
      return nil
    end
    fields.person_id_bytes = id
    fields.person_id = format(UUID_FORMAT, byte(id, 1, 16))
  end
  return fields
end

function record_codec.encode(fields)
  local id_bytes = fields.person_id_bytes
  local others = fields.others
  if id_bytes then
    return BINARY_ID .. pack(id_bytes, fields.created_at_text, fields.last_seen_text,
      fields.identified, fields.version, fields.id_count, fields.snapshot, fields.props, others)
  end
  return TEXT_ID .. pack(fields.person_id, fields.created_at_text, fields.last_seen_text,
    fields.identified, fields.version, fields.id_count, fields.snapshot, fields.props, others)
end

local function pack_order(ord)
  local high, low, id = string.match(ord, ORDER_DIGITS)
  local id_bytes = high and record_codec.person_id_bytes(id)
  if not id_bytes then
    return ord
  end
  return '\0' .. struct.pack('>I4I5', tonumber(high), tonumber(low)) .. id_bytes
end

local function unpack_order(stored)
  if byte(stored, 1) ~= 0 then
    return stored
  end
  local high, low = struct.unpack('>I4I5', stored, 2)
  return format('%010d%010d', high, low) .. format(UUID_FORMAT, byte(stored, 11, 26))
end

function record_codec.decode_props(snapshot, props)
  local meta, vals = {}, {}
  if props == '' then
    return meta, vals
  end
  local stored, visible, hidden = unpack_all(props)
  local ords = {}
  for k, ord in ipairs(stored) do
    ords[k] = unpack_order(ord)
  end
  local pos = 2 -- after '{'
  for k = 1, #visible, 3 do
    local key_length, text_length, state = visible[k], visible[k + 1], visible[k + 2]
    local key = cjson.decode(sub(snapshot, pos, pos + key_length - 1))
    pos = pos + key_length + 1
    vals[key] = sub(snapshot, pos, pos + text_length - 1)
    pos = pos + text_length + 1
    meta[key] = CODES[state % 4] .. ords[floor(state / 4) + 1]
  end
  for k = 1, #hidden, 2 do
    local state = hidden[k + 1]
    meta[hidden[k]] = CODES[state % 4] .. ords[floor(state / 4) + 1]
  end
  return meta, vals
end

function record_codec.encode_props(meta, vals)
  local ords, index = {}, {}
  local parts, visible, hidden = {}, {}, {}
  for key, m in pairs(meta) do
    local ord = sub(m, 2)
    local i = index[ord]
    if i == nil then
      i = #ords + 1
      ords[i], index[ord] = pack_order(ord), i
    end
    local state = (i - 1) * 4 + CODE_NUMBER[byte(m, 1)]
    local text = vals[key]
    if text then
      local quoted = cjson.encode(key)
      parts[#parts + 1] = quoted .. ':' .. text
      visible[#visible + 1] = #quoted
      visible[#visible + 1] = #text
      visible[#visible + 1] = state
    else
      hidden[#hidden + 1] = key
      hidden[#hidden + 1] = state
    end
  end
  local snapshot = '{' .. concat(parts, ',') .. '}'
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
  end
  return '{"root":' .. cjson.encode(root) .. ',"person_id":' .. cjson.encode(fields.person_id)
    .. ',"created_at":' .. fields.created_at_text .. ',"last_seen":' .. fields.last_seen_text
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

return record_codec
