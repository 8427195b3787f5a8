#!lua
-- The shebang makes Redis 7 refuse the whole call up front when memory is full (OOM),
-- instead of failing at the first write with earlier requests of a batch written.
-- Apply changes to a tally, each only if its source stream's position is the expected one.
-- One call carries many changes, all in one slot (one partition).
--
-- ARGV[1]  number of changes
-- Then per change, its KEYS (2, from the first unused one) and ARGV (likewise):
--   KEYS  the source stream's position        tally:{pN}:<tally>:<aggregate>:<id>
--         the partition's counts              tally:{pN}:<tally>   (sorted set)
--   ARGV  expected position, new position, number of counts, then key and amount per count
--
-- Returns, per change, two numbers: 1, new position when applied; 0, stored position when
-- another consumer counted first (nothing changed). Scores are minus the counts, so ZRANGE
-- lists the most counted first and equal counts by key, ascending; a key at 0 is removed.

local replies = {}
local k, a = 1, 2
for _ = 1, tonumber(ARGV[1]) do
    local position_key, counts_key = KEYS[k], KEYS[k + 1]
    local expected, position, n = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2])
    local stored = tonumber(redis.call('GET', position_key) or '0')
    if stored ~= expected then
        replies[#replies + 1] = 0
        replies[#replies + 1] = stored
    else
        for i = 0, n - 1 do
            local key, amount = ARGV[a + 3 + 2 * i], tonumber(ARGV[a + 4 + 2 * i])
            local score = tonumber(redis.call('ZINCRBY', counts_key, -amount, key))
            if score >= 0 then
                redis.call('ZREM', counts_key, key)
            end
        end
        redis.call('SET', position_key, position)
        replies[#replies + 1] = 1
        replies[#replies + 1] = tonumber(position)
    end
    k = k + 2
    a = a + 3 + 2 * n
end
return replies
