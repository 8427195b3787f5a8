#!lua
-- Remove a consumer from a group only if it holds nothing pending: XGROUP DELCONSUMER drops
-- the consumer's pending entries from the group, so the check and the removal are one step.
--
-- KEYS[1]  the stream
-- ARGV[1]  the group, ARGV[2] the consumer
-- Returns 1 when removed, 0 when it holds pending entries (kept).

local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #held > 0 then
    return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
