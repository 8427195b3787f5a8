#!lua
-- A consumer group's live members: each records itself with the time (the server's clock, so
-- members on hosts whose clocks disagree still agree) until which it counts as alive.
--
-- KEYS[1]  the members   members:<group>   sorted set, scored by when each one's time runs out
-- ARGV[1]  the member (empty: only list)
-- ARGV[2]  its time to live in milliseconds
--
-- Returns the live members, by name.

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if ARGV[1] ~= '' then
    redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(members)
return members
