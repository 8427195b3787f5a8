#!lua
-- The shebang makes Redis 7 refuse the whole call up front when memory is full (OOM),
-- instead of failing at the first write with earlier requests of a batch written.
-- Move tally positions, each only if its source stream's position is the expected one. The
-- counts were added before (tally_count.lua), each marked with its event's version there, so
-- this is only the record of how far each stream has been counted. One call, one partition.
--
-- ARGV[1]  number of changes
-- Then per change KEYS[i]  the source stream's position   tally:{pN}:<tally>:<aggregate>:<id>
--          and ARGV       expected position, new position (two per change, from ARGV[2])
--
-- Returns, per change, two numbers: 1, new position when moved; 0, stored position when
-- another consumer moved it first (nothing changed).

local replies = {}
for i = 1, tonumber(ARGV[1]) do
    local position_key = KEYS[i]
    local expected, position = tonumber(ARGV[2 * i]), ARGV[2 * i + 1]
    local stored = tonumber(redis.call('GET', position_key) or '0')
    if stored ~= expected then
        replies[#replies + 1] = 0
        replies[#replies + 1] = stored
    else
        redis.call('SET', position_key, position)
        replies[#replies + 1] = 1
        replies[#replies + 1] = tonumber(position)
    end
end
return replies
