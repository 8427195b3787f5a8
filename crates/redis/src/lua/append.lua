-- Append events to one user's stream and to their category streams, atomically.
--
-- KEYS[1]  the user's version counter          version:{pN}:<user>
-- KEYS[2]  the user's stream                   user:{pN}:<user>      (entry id <version>-0)
-- KEYS[3]  the idempotency record              idem:{pN}:<user>:<key>
-- KEYS[4..] the category stream of each event   user_activity:{pN}, ...
-- ARGV[1]  expected version: "any", or a number (0: no stream yet)
-- ARGV[2]  idempotency record lifetime in ms (0: no idempotency key)
-- ARGV[3]  number of events
-- ARGV[4..] per event, 8 values: type, user_id, event_id, occurred_at, schema_version,
--           correlation_id, causation_id (empty when equal to correlation_id), payload
--
-- The category entry carries every field, so XREAD alone shows what happened. The user stream's
-- entry leaves out user_id and version: its key names the user, its entry id is the version.
--
-- Returns {1, version} when appended, {0, actual} on a version conflict, {2, version} when
-- the idempotency key was used before (version: the one that first call produced).
-- Every check comes before the first write: Redis does not roll a script back.

local ttl = tonumber(ARGV[2])
if ttl > 0 then
    local recorded = redis.call('GET', KEYS[3])
    if recorded then
        return {2, tonumber(recorded)}
    end
end

local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[1] ~= 'any' and tonumber(ARGV[1]) ~= current then
    return {0, current}
end

local count = tonumber(ARGV[3])
local version = current
local at = 4
for i = 1, count do
    version = version + 1
    redis.call('XADD', KEYS[2], version .. '-0',
        'type', ARGV[at],
        'event_id', ARGV[at + 2],
        'occurred_at', ARGV[at + 3],
        'schema_version', ARGV[at + 4],
        'correlation_id', ARGV[at + 5],
        'causation_id', ARGV[at + 6],
        'payload', ARGV[at + 7])
    redis.call('XADD', KEYS[3 + i], '*',
        'type', ARGV[at],
        'user_id', ARGV[at + 1],
        'version', tostring(version),
        'event_id', ARGV[at + 2],
        'occurred_at', ARGV[at + 3],
        'schema_version', ARGV[at + 4],
        'correlation_id', ARGV[at + 5],
        'causation_id', ARGV[at + 6],
        'payload', ARGV[at + 7])
    at = at + 8
end

redis.call('SET', KEYS[1], version)
if ttl > 0 then
    redis.call('SET', KEYS[3], version, 'PX', ttl)
end
return {1, version}
