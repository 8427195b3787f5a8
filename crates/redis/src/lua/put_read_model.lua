-- Replace a read model only if it is at the expected version.
--
-- KEYS[1]  the read model hash                 <name>:{pN}:<user>
-- ARGV[1]  expected version (0: none stored yet)
-- ARGV[2]  the new version
-- ARGV[3..] field, value, field, value, ...
--
-- Returns {1, new version} when written, {0, stored version} otherwise.

local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if stored ~= tonumber(ARGV[1]) then
    return {0, stored}
end
-- Replaced whole: fields the new model no longer has must not linger.
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[2], unpack(ARGV, 3))
return {1, tonumber(ARGV[2])}
