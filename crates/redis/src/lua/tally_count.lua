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
-- ARGV[1]  number of sources
-- Then per source: its name (<aggregate>:<id>), the number of counts, then per count the
-- event's version, the key and the amount, in version order.
--
-- Returns {number of counts added} (the others were counted before). Scores are minus
-- the counts, so ZRANGE lists the most counted first and equal counts by key, ascending; a
-- key at 0 is removed.

local counts_key, sources_key = KEYS[1], KEYS[2]
local added = 0
local a = 2
for _ = 1, tonumber(ARGV[1]) do
    local source, n = ARGV[a], tonumber(ARGV[a + 1])
    local counted = tonumber(redis.call('HGET', sources_key, source) or '0')
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
return {added}
