--[[
properties.lua: person properties (contract A4) in both ordering modes, on person tables of
records.lua.

properties.update(ctx, person, op, stored) -> changed, refused_for_size: applies the op's property
  operations (op.props: code, key, text, flat as argv.lua reads them; one per key,
  PROTOCOL.code):
  timestamp mode: each key's state is replaced when the new one outranks it (ordering.lua);
  arrival mode: set replaces a different value, set_once sets an absent key, unset removes a
    present key, set_then_unset sets a key absent before the event and removes a present one;
    a state records the event that last changed its value (op set).
  Nothing changes (refused_for_size) when the visible properties would grow past
  ctx.config.max_bytes. With stored true (a person record's properties, which record_codec
  encodes), a timestamp-mode state's meta is made with the op's order key in stored form
  (record_codec.pack_order, once per order key), as decode_props gives them, so that it is
  compared and encoded without being packed again; group states (stored, stored as cjson)
  keep text metas. A snapshot made in this call (person.layout set) is kept when no
  visible text changed (a key set again to its value: only its state moves).
properties.join(ctx, into_person, other_person) -> meta, vals, size: the properties of two
  merged persons: timestamp mode, the outranking state of each key; arrival mode,
  {...other, ...into}.
A meta may hold its order key in stored form (record_codec.decode_props): it is compared in
that form (with a text order key packed, record_codec.pack_order, when it packs; else as its
record_codec.meta_text) and kept as it is.
properties.compare_metas(x, y) -> -1, 0 or 1: ordering.compare of two metas, either of which
  may hold its order key stored.
]]
local properties = {}

local SET, SET_ONCE = PROTOCOL.code.set, PROTOCOL.code.set_once
local UNSET, SET_THEN_UNSET = PROTOCOL.code.unset, PROTOCOL.code.set_then_unset
local byte, sub = string.byte, string.sub
local meta_text, pack_order = record_codec.meta_text, record_codec.pack_order

-- Two stored order keys (record_codec.pack_order) compared from a (at ai) and b (at bi), where
-- their 4-byte halves start: as the texts would compare (ordering.compare).
local function stored_compare(a, ai, b, bi)
  local a_high, a_low = struct.unpack('>I4I5', a, ai)
  local b_high, b_low = struct.unpack('>I4I5', b, bi)
  if a_high ~= b_high then
    return a_high < b_high and -1 or 1
  end
  if a_low ~= b_low then
    return a_low < b_low and -1 or 1
  end
  for k = 9, 24 do -- the uuids' bytes
    local p, q = byte(a, ai + k), byte(b, bi + k)
    if p ~= q then
      return p < q and -1 or 1
    end
  end
  return 0
end

-- ordering.compare for metas whose order keys are stored (record_codec.decode_props: 27 bytes,
-- code then the 26 of the key) or text: no stored key is turned into text to be compared.
function properties.compare_metas(x, y)
  local x_stored, y_stored = byte(x, 2) == 0 and #x == 27, byte(y, 2) == 0 and #y == 27
  if x_stored and y_stored then
    return stored_compare(x, 3, y, 3)
  end
  if x_stored or y_stored then
    local packed = pack_order(sub(x_stored and y or x, 2)) -- the text one, stored if it packs
    if byte(packed, 1) == 0 then
      if x_stored then
        return stored_compare(x, 3, packed, 2)
      end
      return stored_compare(packed, 2, y, 3)
    end
    return ordering.compare(meta_text(x), meta_text(y))
  end
  return ordering.compare(x, y)
end

local compare_metas = properties.compare_metas
local NO_CHANGES = {} -- (never changed: an op that changes nothing makes no table)

function properties.update(ctx, person, op, stored)
  -- (records.vals_of and meta_of called only when not decoded yet: false)
  local vals = person.vals or records.vals_of(person)
  local meta = person.meta or records.meta_of(person)
  local changes, n = NO_CHANGES, 0 -- key, meta, text, ... (flat: no table per change)
  local size = person.properties_size
  local visible = false -- vals change (else the snapshot of this call still holds)
  local props, ord, timestamp_mode = op.props, op.ord, ctx.config.timestamp_mode
  local state_ord = ord -- the order key of a timestamp-mode meta
  if stored and timestamp_mode then
    state_ord = pack_order(ord)
  end
  for k = 1, #props, 3 do
    local code, key, text = props[k], props[k + 1], props[k + 2]
    local current_meta, current_text = meta[key], vals[key]
    local new_meta, new_text = false, false -- false: no state (arrival-mode unset)
    local replace
    if timestamp_mode then
      new_meta = code .. state_ord
      if code ~= UNSET then
        new_text = text
      end
      replace = current_meta == nil -- a new key (ordering.outranks' first case, without a call)
        or ordering.outranks(new_meta, text, current_meta, current_text or '', compare_metas)
    elseif code == SET then -- a state records the event that last changed its value
      new_meta, new_text = SET .. ord, text
      replace = text ~= current_text
    elseif code == SET_ONCE then
      new_meta, new_text = SET .. ord, text
      replace = current_text == nil
    elseif code == SET_THEN_UNSET then -- set, then unset of a key present before the event
      if current_text == nil then
        new_meta, new_text = SET .. ord, text
      end
      replace = true
    else -- unset: only a key present before the event
      replace = current_text ~= nil
    end
    if replace then
      if n == 0 then
        changes = { nil, nil, nil }
      end
      changes[n + 1], changes[n + 2], changes[n + 3] = key, new_meta, new_text
      n = n + 3
      -- the snapshot stays only when the key keeps its text (a nil stored, even over no key,
      -- may change the table, and so the order pairs walks it in)
      if not new_text or new_text ~= current_text then
        visible = true
      end
      if current_text then
        size = size - #key - #current_text
      end
      if new_text then
        size = size + #key + #new_text
      end
    end
  end
  if n == 0 then
    return false, false
  end
  if size > ctx.config.max_bytes and size > person.properties_size then
    return false, true
  end
  for k = 1, n, 3 do
    local key = changes[k]
    meta[key] = changes[k + 1] or nil
    vals[key] = changes[k + 2] or nil
  end
  person.properties_size = size
  if visible or not person.layout then -- a stored snapshot (no layout) is made again
    person.snapshot, person.layout = false, nil
  end
  person.properties_changed = true
  return true, false
end

function properties.join(ctx, into_person, other_person)
  local into_meta, into_vals = records.meta_of(into_person), records.vals_of(into_person)
  local other_meta, other_vals = records.meta_of(other_person), records.vals_of(other_person)
  local meta, vals = {}, {}
  if ctx.config.timestamp_mode then -- the join of both registers, key by key
    for key, m in pairs(into_meta) do
      meta[key], vals[key] = m, into_vals[key]
    end
    for key, m in pairs(other_meta) do
      local text = other_vals[key]
      if ordering.outranks(m, text or '', meta[key], vals[key] or '', properties.compare_metas) then
        meta[key], vals[key] = m, text
      end
    end
  else -- arrival: {...other, ...into}
    for key, m in pairs(other_meta) do
      meta[key], vals[key] = m, other_vals[key]
    end
    for key, m in pairs(into_meta) do
      meta[key], vals[key] = m, into_vals[key]
    end
  end
  local size = 0
  for key, text in pairs(vals) do
    size = size + #key + #text
  end
  return meta, vals, size
end

return properties
