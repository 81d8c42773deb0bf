--[[
rules.lua: the stateful identity rules (docs/IDENTITY.md, contract A3.3-A3.6, A6), one op at a
time, on the union-find (union_find.lua) and the person records (records.lua);
worker/identity/reference.py is the same ladder with the same names.

The two ids of a merge are `into` (the event's distinct id) and `other` (the id to merge with);
their roots are into_root and other_root, their persons into_person and other_person.

rules.apply(ctx, op, warning) -> the op's reply entry text (reply.lua). `warning` (or nil) is
  put first in the entry's warnings. Never called with an op that is to wait in the buffer
  (buffer.lua decides that first). It is rules.structure then rules.finish, in short for the
  common event: a track without property operations of an id a person holds.
rules.structure(ctx, op, warning) -> part: the op without its property operations (person
  created, joined or merged, identified, created_at/last_seen), its version bump still pending;
  op must process its person. part: { root, warnings, overrides, merged, created, remade, bump,
  moved }.
rules.settle(ctx, part): the pending bump of part is applied now (a release comes between the
  op's structure and its property operations: docs/BUFFER.md, "arrival order").
rules.finish(ctx, op, part) -> the reply entry: the op's property operations, on the person
  that holds op.into now (after rules.settle they bump the version on their own), then its
  group operations (groups.apply), so in arrival mode those too come after the released
  entries.
The ids an op makes known (a person created for into, an id joining one) are checked for case
variants of known ids (case_fold.lua: warning distinct_id_case_collision, after the merge
warnings).
rules.merge(ctx, into_root, into_person, other_root, other_person, overrides) -> the root of
  the merged person (A3.6, allowed): other_person is merged into into_person, which keeps its
  person id and lives at the root of the larger tree (union by size); an override per id of
  other's tree is appended to overrides.
]]
local rules = {}

local MERGE_LIMIT = PROTOCOL.warning.merge_limit
local ALREADY_IDENTIFIED = PROTOCOL.warning.already_identified
local PROPERTIES_SIZE = PROTOCOL.warning.properties_size
local CASE_COLLISION = PROTOCOL.warning.case_collision
local FULL = PROTOCOL.person_mode.full
local NONE = reply.NONE

-- list with item appended: a new list in place of NONE (shared, never changed).
local function add(list, item)
  if list == NONE then
    return { item }
  end
  list[#list + 1] = item
  return list
end

function rules.merge(ctx, into_root, into_person, other_root, other_person, overrides)
  local other_ids = union_find.members_of(ctx, other_root, other_person)
  for _, id in ipairs(other_ids) do
    overrides[#overrides + 1] = { id, other_person.person_id, into_person.person_id }
  end
  local big, small, small_ids, big_person, small_person =
    into_root, other_root, other_ids, into_person, other_person
  if other_person.id_count > into_person.id_count then
    big, small, big_person, small_person = other_root, into_root, other_person, into_person
    small_ids = union_find.members_of(ctx, into_root, into_person)
  end
  union_find.union(ctx, big, small, small_ids, small_person, big_person)
  groups.merge(ctx, into_person, other_person)

  local meta, vals, size = properties.join(ctx, into_person, other_person)
  local version = math.max(into_person.version, other_person.version) + 1
  local merged = records.new_person({
    person_id = into_person.person_id,
    person_id_bytes = into_person.person_id_bytes,
    created_at = into_person.created_at,
    created_at_text = into_person.created_at_text,
    last_seen = into_person.last_seen,
    last_seen_text = into_person.last_seen_text,
    identified = true,
    version = version,
    version_text = tostring(version),
    id_count = into_person.id_count + other_person.id_count,
    spilled = big_person.spilled,
    others_text = big_person.others_text,
    others = big_person.others,
    stored_members = big_person.stored_members,
    meta = meta,
    vals = vals,
    properties_size = size,
    snapshot = false,
  })
  if other_person.created_at < into_person.created_at then
    merged.created_at, merged.created_at_text = other_person.created_at,
      other_person.created_at_text
  end
  if other_person.last_seen > into_person.last_seen then
    merged.last_seen, merged.last_seen_text = other_person.last_seen,
      other_person.last_seen_text
  end
  ctx.persons[small] = nil
  ctx.dirty[small] = nil
  ctx.persons[big] = merged
  ctx.dirty[big] = true
  return big
end

-- The first and last seen times of person (at root) widened to the op's (the last seen time
-- rounded down to the last-seen resolution: records.seen_at), and the person marked for
-- write-back. Called only when either moves (the test before each call): a track that changes
-- nothing writes nothing, and an event inside its person's last-seen minute, the common case,
-- formats no last-seen text.
local function widen(ctx, root, person, op)
  local ts = op.ts
  if ts < person.created_at then
    person.created_at, person.created_at_text = ts, op.ts_text
  end
  if ts - ts % ctx.config.last_seen_ms > person.last_seen then
    person.last_seen, person.last_seen_text = records.seen_at(ctx, ts, op.ts_text)
  end
  ctx.dirty[root] = true
end

-- A6: personless. Nothing is created or updated.
local function apply_personless(ctx, op, warning)
  local root = union_find.find(ctx, op.into)
  local grouped = groups.apply(ctx, op, nil) -- explicit groups only, no membership change
  local warnings = { warning }
  for k = 1, #grouped.warnings do
    warnings[#warnings + 1] = grouped.warnings[k]
  end
  if root then
    local person = records.load(ctx, root)
    local mode = op.ts > person.created_at + ctx.config.force_upgrade_ms
      and PROTOCOL.person_mode.force_upgrade or PROTOCOL.person_mode.propertyless
    return reply.entry(person.person_id, mode, person.created_at_text, person.identified,
      '{}', false, false, warnings, reply.NONE, nil, false, grouped.groups, grouped.changes)
  end
  return reply.entry(op.into_person_id, PROTOCOL.person_mode.propertyless, nil, false, '{}',
    false, false, warnings, reply.NONE, nil, false, grouped.groups, grouped.changes)
end

-- rules.structure's part as values: root, warnings, overrides, merged, created, remade, bump
-- (rules.apply passes them on to finish: no part table made per op).
local function structure(ctx, op, warning)
  if ctx.any_deleted ~= false then -- (as in rules.apply)
    deleted.rederive(ctx, op)
  end
  local max_ids = ctx.config.max_ids
  local warnings = warning and { warning } or NONE -- (NONE: made on the first warning)
  local overrides = NONE -- (made by the merge that has some)
  local merged = false -- A3.3, A3.4, allowed A3.6
  local created = false -- the event created its person (its version stays 0)
  local remade = false -- A3.6 merge: version already set to max + 1
  local bump = false -- the person's distinct ids changed (a join)
  local into_root = union_find.find(ctx, op.into)
  -- (a merge's other is prefetched: union_find.get only for one that was not)
  local other_new = op.merge and not (ctx.values[op.other] or union_find.get(ctx, op.other))
  local root
  if not op.merge then
    if into_root then
      root = into_root
    else
      root, created = op.into, true
      records.create(ctx, op.into, op.into_person_id, op.ts, op.ts_text)
    end
  else
    local other_root = union_find.find(ctx, op.other)
    if not into_root and not other_root then
      -- A3.3: one new person, created by into, holds both.
      root, created = op.into, true
      local person = records.create(ctx, op.into, op.into_person_id, op.ts, op.ts_text)
      if max_ids < 2 then
        warnings = add(warnings, MERGE_LIMIT)
      else
        union_find.join(ctx, op.other, root, person)
        overrides = { { op.other, op.other_person_id, op.into_person_id } }
        merged = true
      end
    elseif not other_root then
      -- A3.4: other joins into's person.
      root = into_root
      local into_person = ctx.persons[into_root] or records.load(ctx, into_root)
      if into_person.id_count >= max_ids then
        warnings = add(warnings, MERGE_LIMIT)
      else
        union_find.join(ctx, op.other, into_root, into_person)
        overrides = { { op.other, op.other_person_id, into_person.person_id } }
        merged, bump = true, true
      end
    elseif not into_root then
      -- A3.4: into joins other's person (which keeps its id).
      local other_person = ctx.persons[other_root] or records.load(ctx, other_root)
      if other_person.id_count >= max_ids then
        warnings = add(warnings, MERGE_LIMIT)
        root, created = op.into, true
        records.create(ctx, op.into, op.into_person_id, op.ts, op.ts_text)
      else
        root = other_root
        union_find.join(ctx, op.into, other_root, other_person)
        overrides = { { op.into, op.into_person_id, other_person.person_id } }
        merged, bump = true, true
      end
    elseif into_root == other_root then
      -- A3.5: same person.
      root = into_root
    else
      -- A3.6: different persons.
      local into_person = ctx.persons[into_root] or records.load(ctx, into_root)
      local other_person = ctx.persons[other_root] or records.load(ctx, other_root)
      root = into_root
      if other_person.identified and not op.dangerous then
        warnings = add(warnings, ALREADY_IDENTIFIED)
      elseif into_person.id_count + other_person.id_count > max_ids then
        warnings = add(warnings, MERGE_LIMIT)
      else
        overrides = {}
        root = rules.merge(ctx, into_root, into_person, other_root, other_person, overrides)
        merged, remade = true, true
      end
    end
  end

  -- The event itself, on the person it landed on: its first and last seen times widened to the
  -- op's (widen, called only when one moves; records.load only for a person not loaded yet)
  local person = ctx.persons[root] or records.load(ctx, root)
  local ts = op.ts
  if ts < person.created_at or ts - ts % ctx.config.last_seen_ms > person.last_seen then
    widen(ctx, root, person, op)
  end
  if op.merge and not person.identified then
    person.identified = true
    bump = true
  end
  -- The ids the op made known (into first), checked for case variants (case_fold.lua).
  local fresh -- nil when none (the common case: no table)
  if not into_root then
    fresh = { op.into }
  end
  if other_new and union_find.get(ctx, op.other) then
    fresh = fresh or {}
    fresh[#fresh + 1] = op.other
  end
  if fresh and case_fold.collides(ctx, fresh) then
    warnings = add(warnings, CASE_COLLISION) -- informational, after the merge warnings
  end
  return root, warnings, overrides, merged, created, remade, bump
end

function rules.structure(ctx, op, warning)
  local root, warnings, overrides, merged, created, remade, bump = structure(ctx, op, warning)
  return {
    root = root, warnings = warnings, overrides = overrides, merged = merged,
    created = created, remade = remade, bump = bump, moved = created or remade,
    settled = false,
  }
end

local function bump_version(person)
  person.version = person.version + 1
  person.version_text = tostring(person.version)
end

function rules.settle(ctx, part)
  if part.bump and not part.created and not part.remade then
    bump_version(records.load(ctx, part.root))
    part.moved = true
  end
  part.settled = true
end

-- rules.finish of a part given as values (moved: the part's created or remade, or settled).
local function finish(ctx, op, root, warnings, overrides, merged, created, remade, bump, moved,
    settled)
  if settled then
    root = union_find.find(ctx, op.into)
  end
  local person = ctx.persons[root] or records.load(ctx, root)
  local changed = false
  if #op.props > 0 then
    local refused
    changed, refused = properties.update(ctx, person, op, true)
    if refused then
      warnings = add(warnings, PROPERTIES_SIZE)
    end
  end
  if settled then
    if changed then
      bump_version(person)
      moved = true
    end
  elseif (bump or changed) and not created and not remade then
    bump_version(person)
    moved = true
  end
  -- written back only when the op changed it: an identify of an id already identified with
  -- its anonymous id, or a $set of the values it holds, writes nothing (seen() marks a moved
  -- created_at or last_seen itself)
  if changed or settled or merged or created or bump or remade then
    ctx.dirty[root] = true
  end
  local grouped = ctx.no_group_types and #op.groups == 0 and groups.NOTHING
    or groups.apply(ctx, op, person)
  for k = 1, #grouped.warnings do -- (none mostly: no ipairs call)
    warnings = add(warnings, grouped.warnings[k])
  end
  return reply.entry(person.person_id, FULL, person.created_at_text, person.identified,
    person.snapshot or records.snapshot(person), -- (made only when false: records.lua)
    merged, created, warnings, overrides, person.version_text, moved,
    grouped.groups, grouped.changes)
end

function rules.finish(ctx, op, part)
  return finish(ctx, op, part.root, part.warnings, part.overrides, part.merged, part.created,
    part.remade, part.bump, part.moved, part.settled)
end

function rules.apply(ctx, op, warning)
  if ctx.any_deleted ~= false then -- false: the tenant never deleted anyone (deleted.lua)
    deleted.rederive(ctx, op)
  end
  if not op.process then
    return apply_personless(ctx, op, warning)
  end
  if not op.merge and #op.props == 0 then
    local root = union_find.find(ctx, op.into)
    if root then
      -- The common event, a track of an id a person holds without property operations:
      -- rules.structure then rules.finish in short (no person made, joined or merged, no
      -- version bump, no new id), here rather than in a function of its own (a call less).
      -- its first and last seen times widened as in rules.structure
      local person = ctx.persons[root] or records.load(ctx, root)
      local ts = op.ts
      if ts < person.created_at or ts - ts % ctx.config.last_seen_ms > person.last_seen then
        widen(ctx, root, person, op)
      end
      local grouped = ctx.no_group_types and #op.groups == 0 and groups.NOTHING
        or groups.apply(ctx, op, person)
      local warnings = NONE
      if warning or #grouped.warnings > 0 then
        warnings = { warning }
        for k = 1, #grouped.warnings do
          warnings[#warnings + 1] = grouped.warnings[k]
        end
      end
      return reply.entry(person.person_id, FULL, person.created_at_text, person.identified,
        person.snapshot or records.snapshot(person), -- (made only when false: records.lua)
        false, false, warnings, NONE, person.version_text, false,
        grouped.groups, grouped.changes)
    end
  end
  local root, warnings, overrides, merged, created, remade, bump = structure(ctx, op, warning)
  return finish(ctx, op, root, warnings, overrides, merged, created, remade, bump,
    created or remade, false)
end

return rules
