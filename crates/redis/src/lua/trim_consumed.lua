#!lua
-- Trim a category stream below what every consumer group on it has been handed and acked:
-- the floor is, over the groups, the lowest of the entry after each group's last delivered one
-- and its oldest pending one. A stream without groups is never trimmed (nobody has read it). One
-- script, so no group can be created or handed an entry between the reading and the trim.
--
-- KEYS[1]  the category stream
-- Returns how many entries were removed.

if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then
    return 0
end

local function parse(id)
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    return tonumber(ms), tonumber(seq)
end

-- The smallest id after `id`.
local function after(id)
    local ms, seq = parse(id)
    return string.format('%d-%d', ms, seq + 1)
end

local function lower(a, b)
    if a == nil then return b end
    local am, as = parse(a)
    local bm, bs = parse(b)
    if am < bm or (am == bm and as < bs) then return a end
    return b
end

local floor = nil
for _, group in ipairs(groups) do
    local name, last, pending
    for i = 1, #group, 2 do
        local field = group[i]
        if field == 'name' then name = group[i + 1]
        elseif field == 'last-delivered-id' then last = group[i + 1]
        elseif field == 'pending' then pending = group[i + 1]
        end
    end
    floor = lower(floor, after(last))
    if pending > 0 then
        -- Summary form: count, smallest id, largest id, consumers.
        local summary = redis.call('XPENDING', KEYS[1], name)
        floor = lower(floor, summary[2])
    end
end
-- Exact MINID: entries below the floor go.
return redis.call('XTRIM', KEYS[1], 'MINID', floor)
