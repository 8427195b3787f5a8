#!lua
-- The shebang makes Redis 7 refuse the whole call up front when memory is full (OOM),
-- instead of failing at the first write with earlier requests of a batch written.
-- Move tally positions, each only if its source stream's position is the expected one. The
-- counts were added before (tally_count.lua), each marked with its event's version there, so
-- this is only the record of how far each stream has been counted. One call, one partition.
--
-- KEYS[1]  the partition's lease   lease:{pN}:<tally>
-- ARGV[1]  the writer's fencing token (0: not checked)
-- ARGV[2]  number of changes
-- Then per change KEYS[i+1]  the source stream's position   tally:{pN}:<tally>:<aggregate>:<id>
--          and ARGV         expected position, new position (two per change, from ARGV[3])
--
-- Returns, per change, two numbers: 1, new position when moved; 0, stored position when
-- another consumer moved it first (nothing changed). {-1} when the token is not the lease's.

if ARGV[1] ~= '0' and redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
    return {-1}
end
local replies = {}
for i = 1, tonumber(ARGV[2]) do
    local position_key = KEYS[i + 1]
    local expected, position = tonumber(ARGV[2 * i + 1]), ARGV[2 * i + 2]
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
