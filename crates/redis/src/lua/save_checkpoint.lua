#!lua
-- Keep a read model's checkpoint, only if the writer still holds its partition's lease.
--
-- KEYS[1]  the partition's lease    lease:{pN}:<group>
-- KEYS[2]  the stream's checkpoints checkpoint:<name>:{pN}:<stream>   sorted set
-- ARGV[1]  the writer's fencing token (0: not checked)
-- ARGV[2]  the checkpoint's time in microseconds (its score)
-- ARGV[3]  the checkpoint (MessagePack of version, time, fields)
--
-- Returns {1} when kept, {-1} when the token is not the lease's (nothing written).

if ARGV[1] ~= '0' and redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then
    return {-1}
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return {1}
