#!lua
-- A partition's lease for one consumer group: who holds it and its fencing token. The token
-- grows with every new holder (a counter beside the lease, kept when the lease expires), so
-- the write scripts can tell the current holder's writes from a former holder's.
--
-- KEYS[1]  the lease             lease:{pN}:<group>        hash owner, token; expires
-- KEYS[2]  the last token given  lease:{pN}:<group>:token  string
-- ARGV[1]  acquire | renew | release
-- ARGV[2]  the owner
-- ARGV[3]  the lease time in milliseconds (acquire, renew)
-- ARGV[4]  the token held (renew, release)
--
-- Returns {token} when acquired or still held, {0} when another holds it (acquire) or the
-- caller no longer does (renew, release: {1} when released).

local lease, counter = KEYS[1], KEYS[2]
local op, owner = ARGV[1], ARGV[2]
local holder = redis.call('HMGET', lease, 'owner', 'token')
local held = holder[1] == owner and (op == 'acquire' or holder[2] == ARGV[4])

if op == 'acquire' then
    if held then
        redis.call('PEXPIRE', lease, ARGV[3])
        return {tonumber(holder[2])}
    end
    if holder[1] then
        return {0}
    end
    local token = redis.call('INCR', counter)
    redis.call('HSET', lease, 'owner', owner, 'token', token)
    redis.call('PEXPIRE', lease, ARGV[3])
    return {token}
elseif op == 'renew' then
    if not held then
        return {0}
    end
    redis.call('PEXPIRE', lease, ARGV[3])
    return {tonumber(holder[2])}
elseif op == 'release' then
    if not held then
        return {0}
    end
    redis.call('DEL', lease)
    return {1}
end
return redis.error_reply('unknown lease operation ' .. tostring(op))
