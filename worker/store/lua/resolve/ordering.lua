--[[
ordering.lua: how property states rank in timestamp mode (pure: no ctx, no Redis call).

A state's meta is its op code (PROTOCOL.code: set, set_once or unset) followed by its order key:
the 20-digit (ts + 2^63) then the event uuid (worker/store/codec.py's order_key), so comparing
order keys bytewise orders by (ts, uuid). Its text is the value's canonical JSON ("" for an
unset).

ordering.bytecmp(x, y, from) -> -1, 0 or 1: x and y compared bytewise from byte `from` on.
ordering.compare(meta_x, meta_y) -> -1, 0 or 1: the order of two metas by their order keys.
ordering.outranks(new_meta, new_text, current_meta, current_text, compare) -> bool: whether
  the new state replaces the current one; worker/identity/properties.outranks, the same rule.
  compare (default ordering.compare) orders the two metas by their order keys.
]]
local ordering = {}

local byte, sub = string.byte, string.sub
local SET_ONCE = byte(PROTOCOL.code.set_once)

-- Lua's own `<` on strings uses strcoll, and Redis sets LC_COLLATE from its environment, so
-- `<` might not be byte order.
function ordering.bytecmp(x, y, from)
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

-- The 20-digit timestamps compared as two exact 10-digit numbers (cheaper than a byte loop),
-- then the uuids bytewise.
function ordering.compare(x, y)
  local hx, hy = sub(x, 2, 11), sub(y, 2, 11)
  if hx ~= hy then
    return tonumber(hx) < tonumber(hy) and -1 or 1
  end
  hx, hy = sub(x, 12, 21), sub(y, 12, 21)
  if hx ~= hy then
    return tonumber(hx) < tonumber(hy) and -1 or 1
  end
  return ordering.bytecmp(x, y, 22)
end

-- current_meta nil means no state. Strong ops (set, unset) outrank weak ones (set_once); among
-- strong ops the later order key wins, among weak ones the earlier; on an equal order key the
-- larger value text wins.
function ordering.outranks(new_meta, new_text, current_meta, current_text, compare)
  if current_meta == nil then
    return true
  end
  local new_strong = byte(new_meta, 1) ~= SET_ONCE
  if new_strong ~= (byte(current_meta, 1) ~= SET_ONCE) then
    return new_strong
  end
  local c = (compare or ordering.compare)(new_meta, current_meta)
  if c == 0 then
    return ordering.bytecmp(new_text, current_text, 1) > 0
  end
  if new_strong then
    return c > 0
  end
  return c < 0
end

return ordering
