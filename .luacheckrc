-- luacheck (make lint-lua): the store's Lua scripts run inside Redis, on Lua 5.1.
std = "lua51"
read_globals = { "redis", "cjson", "cmsgpack", "struct", "bit", "KEYS", "ARGV" }
max_line_length = 100

-- A module of lua/resolve/ is joined into resolve_batch.lua (worker/store/lua_loader.py) after
-- the PROTOCOL table and the modules it uses; linted alone, those are its read-only globals.
-- The lists are the modules' dependencies: a module may only use modules included before it.
local resolve = "worker/store/lua/resolve/"
files[resolve .. "group_argv.lua"] = { read_globals = {} }
files[resolve .. "argv.lua"] = { read_globals = { "PROTOCOL", "group_argv" } }
files[resolve .. "ordering.lua"] = { read_globals = { "PROTOCOL" } }
files[resolve .. "record_codec.lua"] = { read_globals = { "PROTOCOL" } }
files[resolve .. "union_find.lua"] = { read_globals = { "record_codec" } }
files[resolve .. "records.lua"] = { read_globals = { "record_codec", "union_find" } }
files[resolve .. "properties.lua"] = {
  read_globals = { "PROTOCOL", "ordering", "record_codec", "records" },
}
files[resolve .. "reply.lua"] = { read_globals = { "PROTOCOL" } }
files[resolve .. "groups.lua"] = { read_globals = { "PROTOCOL", "records", "properties" } }
files[resolve .. "case_fold.lua"] = { read_globals = { "union_find" } }
files[resolve .. "deleted.lua"] = { read_globals = {} }
files[resolve .. "rules.lua"] = {
  read_globals = {
    "PROTOCOL", "union_find", "records", "properties", "reply", "groups", "case_fold",
    "deleted",
  },
}
files[resolve .. "buffer.lua"] = {
  read_globals = { "PROTOCOL", "argv", "union_find", "rules", "reply" },
}
files[resolve .. "receipts.lua"] = { read_globals = { "buffer" } }
files[resolve .. "round.lua"] = { read_globals = {} }
files[resolve .. "write_back.lua"] = {
  read_globals = {
    "record_codec", "union_find", "records", "reply", "groups", "case_fold", "round",
  },
}
-- The main script before joining (its `--- @include` lines are comments); the joined script
-- is linted too (make lint-lua writes it to .local/lua/).
files["worker/store/lua/resolve_batch.lua"] = {
  read_globals = {
    "PROTOCOL", "group_argv", "argv", "ordering", "record_codec", "union_find", "records",
    "properties", "reply", "groups", "case_fold", "deleted", "rules", "buffer", "receipts",
    "round", "write_back",
  },
}
files["worker/store/lua/delete_person.lua"] = { read_globals = { "PROTOCOL", "record_codec" } }
files["worker/store/lua/read_person.lua"] = { read_globals = { "PROTOCOL", "record_codec" } }
files["worker/store/lua/commit_batch.lua"] = { read_globals = { "PROTOCOL", "round" } }
