--[[
round.lua: what a call of a pipelined round does before its work and at its end, the same for
the resolve script and for commit_batch.lua (worker/store/redis_store.py, "Rounds" and "A lost
reply").

round.kept(reply_key) -> the reply an earlier attempt of this very call kept (a retry whose
  first reply was lost: it gets that reply back and applies nothing twice), or nil.
round.refusal(predecessor) -> the IWCHAIN error reply when the reply key of this call's
  predecessor in its round does not exist (the predecessor was refused or did not run), so a
  tenant's calls apply in order or not at all; nil when it exists or there is none (nil).
round.next_due(buffer_prefix) -> the tenant's earliest due time or lease deadline of its buffer
  (digits; read after the call's writes), or nil when nothing waits.
]]
local round = {}

function round.kept(reply_key)
  return redis.call('GET', reply_key) or nil
end

function round.refusal(predecessor)
  if predecessor and redis.call('EXISTS', predecessor) == 0 then
    return redis.error_reply('IWCHAIN the previous call of this round did not run')
  end
  return nil
end

function round.next_due(buffer_prefix)
  local first
  for _, name in ipairs({ 'due', 'pending' }) do
    local got = redis.call('ZRANGE', buffer_prefix .. name, 0, 0, 'WITHSCORES')
    if got[2] then
      local score = tonumber(got[2])
      if first == nil or score < first then
        first = score
      end
    end
  end
  return first and string.format('%d', first) or nil
end

return round
