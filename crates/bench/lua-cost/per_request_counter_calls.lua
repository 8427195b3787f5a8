-- per_request.lua plus one HGET and one HSET per request (a version counter's two calls),
-- constant values.
local PER_REQUEST, PER_EVENT = 7, 7
local usable = {}
local function append(k, a)
    local stream_key, idem = KEYS[k], KEYS[k + 1]
    local expected, ttl, count = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local id_field, id, fingerprint = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
    for i = 1, count do
        local c = KEYS[k + 1 + i]
        if not usable[c] then usable[c] = true end
    end
    local at = a + PER_REQUEST
    local recorded = redis.call('HGET', KEYS[1], ARGV[a + 6])
    local version = 0
    for i = 1, count do
        version = version + 1
        redis.call('XADD', stream_key, '*', 'type', ARGV[at], 'event_id', ARGV[at + 1], 'occurred_at', ARGV[at + 2], 'schema_version', ARGV[at + 3], 'correlation_id', ARGV[at + 4], 'causation_id', ARGV[at + 5], 'payload', ARGV[at + 6])
        redis.call('XADD', KEYS[k + 1 + i], '*', 'type', ARGV[at], id_field, id, 'version', '1', 'event_id', ARGV[at + 1], 'occurred_at', ARGV[at + 2], 'schema_version', ARGV[at + 3], 'correlation_id', ARGV[at + 4], 'causation_id', ARGV[at + 5], 'payload', ARGV[at + 6])
        at = at + PER_EVENT
    end
    redis.call('HSET', KEYS[1], ARGV[a + 6], '7|2026-11-26T13:00:00.000000Z')
    return 1, version
end
local replies = {}
local k, a = 2, 2
for _ = 1, tonumber(ARGV[1]) do
    local code, version = append(k, a)
    replies[#replies + 1] = code
    replies[#replies + 1] = version
    local count = tonumber(ARGV[a + 2])
    k = k + 2 + count
    a = a + PER_REQUEST + PER_EVENT * count
end
return replies
