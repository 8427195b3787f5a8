#!lua
-- The shebang makes Redis 7 refuse the whole call up front when memory is full (OOM),
-- instead of failing at the first write with earlier requests of a batch written.
-- Replace read models, each only if it is at the expected version.
-- One call carries one write or a batch of them (all keys in one slot: one partition).
--
-- KEYS[1]    the partition's lease               lease:{pN}:<group>
-- KEYS[i+1]  the read model hash of write i      <name>:{pN}:<id>
-- ARGV[1]    the writer's fencing token (0: the writer holds no lease and is not checked)
-- ARGV[2]    number of writes
-- Then per write:
--   expected version (0: none stored yet), the new version, number of fields n,
--   then n field, value pairs
--
-- Returns, per write, two numbers: 1, new version when written; 0, stored version otherwise.
-- Returns {-1} and writes nothing when the token is not the lease's (a former holder's).

if ARGV[1] ~= '0' and redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
    return {-1}
end
local replies = {}
local a = 3
for i = 1, tonumber(ARGV[2]) do
    local key = KEYS[i + 1]
    local expected, version, count = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2])
    local stored = tonumber(redis.call('HGET', key, 'version') or '0')
    if stored == expected then
        -- Written over in place; fields the new model no longer has must not linger: when the
        -- hash holds more fields than were just written, it is written again from empty.
        local first, last = a + 3, a + 2 + 2 * count
        redis.call('HSET', key, 'version', version, unpack(ARGV, first, last))
        if redis.call('HLEN', key) > count + 1 then
            redis.call('DEL', key)
            redis.call('HSET', key, 'version', version, unpack(ARGV, first, last))
        end
        replies[#replies + 1] = 1
        replies[#replies + 1] = tonumber(version)
    else
        replies[#replies + 1] = 0
        replies[#replies + 1] = stored
    end
    a = a + 3 + 2 * count
end
return replies
