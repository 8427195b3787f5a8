#!lua
-- The shebang makes Redis 7 refuse the whole call up front when memory is full (OOM),
-- instead of failing at the first write with earlier requests of a batch written.
-- Add counts to the keys of one partition of a tally. A key's whole count lives in the one
-- partition its name picks, so the top of each partition is the top of its keys, and the
-- top of the tally is a merge of the partitions' tops (bounded work, however long the tail).
-- Counts come from many source streams; this partition records, per source, the version of
-- the last event it counted, and counts only newer events: a redelivery, a claim, or two
-- consumers with overlapping batches never count an event twice.
--
-- KEYS[1]  the partition's counts                 tally:{pN}:<tally>         (sorted set)
-- KEYS[2]  the versions counted here per source   tally:{pN}:<tally>:sources (hash)
-- KEYS[3]  the newest fencing token seen here per source partition
--                                                 tally:{pN}:<tally>:fences  (hash)
-- ARGV[1]  number of sources
-- Then per source: its name (<aggregate>:<id>), its partition, the writer's fencing token
-- for that partition (0: not checked), the number of counts, then per count the event's
-- version, the key and the amount, in version order.
--
-- The lease of the source's partition lives in another slot, so it cannot be read here:
-- instead a source's counts are refused once a newer token of its partition was seen here
-- (a former holder that wakes up after the new one wrote). Counts a former holder adds before
-- that are still right: each event is counted once, by its version, whoever counts it.
--
-- Returns {number of counts added, number of sources refused} (the others were counted
-- before). Scores are minus
-- the counts, so ZRANGE lists the most counted first and equal counts by key, ascending; a
-- key at 0 is removed.

local counts_key, sources_key, fences_key = KEYS[1], KEYS[2], KEYS[3]
local added, refused = 0, 0
-- The newest token seen per source partition, read once per call.
local newest = {}
local a = 2
for _ = 1, tonumber(ARGV[1]) do
    local source, partition, token = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
    local n = tonumber(ARGV[a + 3])
    a = a + 2
    local counted = tonumber(redis.call('HGET', sources_key, source) or '0')
    if token > 0 then
        local seen = newest[partition]
        if seen == nil then
            seen = tonumber(redis.call('HGET', fences_key, partition) or '0')
        end
        if seen > token then
            refused = refused + 1
            counted = math.huge
        elseif token > seen then
            redis.call('HSET', fences_key, partition, token)
            seen = token
        end
        newest[partition] = seen
    end
    local last = counted
    for i = 0, n - 1 do
        local version = tonumber(ARGV[a + 2 + 3 * i])
        if version > counted then
            local key, amount = ARGV[a + 3 + 3 * i], tonumber(ARGV[a + 4 + 3 * i])
            local score = tonumber(redis.call('ZINCRBY', counts_key, -amount, key))
            if score >= 0 then
                redis.call('ZREM', counts_key, key)
            end
            added = added + 1
            if version > last then
                last = version
            end
        end
    end
    if last > counted then
        redis.call('HSET', sources_key, source, last)
    end
    a = a + 2 + 3 * n
end
return {added, refused}
