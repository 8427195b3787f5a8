#!lua
-- Hand a dead-lettered entry back to its group, record that, and delete the dead letter: all
-- three or none. Every check comes before the first write: Redis does not roll a script back.
--
-- KEYS[1]  the category stream the entry is in       <category>:{pN}
-- KEYS[2]  the dead letters                          dead_letters:{pN}
-- KEYS[3]  the redrive records                       redriven:{pN}
-- ARGV[1]  the group, ARGV[2] the consumer to hand it to, ARGV[3] the entry id,
-- ARGV[4]  the dead letter's id, then the record's field/value pairs
-- Returns 1 when redriven; 0 when the dead letter is gone (redriven or purged meanwhile);
-- -1 when the entry is no longer in its stream; -2 when the group no longer exists.

local entry = ARGV[3]
if #redis.call('XRANGE', KEYS[2], ARGV[4], ARGV[4]) == 0 then
    return 0
end
if #redis.call('XRANGE', KEYS[1], entry, entry) == 0 then
    return -1
end
local found = false
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    for i = 1, #group, 2 do
        if group[i] == 'name' and group[i + 1] == ARGV[1] then
            found = true
        end
    end
end
if not found then
    return -2
end
-- Idle since the epoch: older than any claim's minimum idle time, so the next claim of any
-- consumer hands it over, its delivery count reset.
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, entry, 'TIME', 1, 'RETRYCOUNT', 0, 'FORCE',
    'JUSTID')
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 5))
redis.call('XDEL', KEYS[2], ARGV[4])
return 1
