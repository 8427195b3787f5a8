#!lua
-- The shebang makes Redis 7 refuse the whole call up front when memory is full (OOM),
-- instead of failing at the first write with earlier requests of a batch written.
-- Store an aggregate snapshot unless one at the same or a newer version is stored.
--
-- KEYS[1]  the snapshot hash                   snapshot:{pN}:<stream>
-- ARGV[1]  the snapshot's version
-- ARGV[2]  the encoded state
--
-- Returns 1 when written, 0 otherwise.

local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if stored >= tonumber(ARGV[1]) then
    return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'state', ARGV[2])
return 1
