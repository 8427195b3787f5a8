#!lua
-- The shebang makes Redis 7 refuse the whole call up front when memory is full (OOM),
-- instead of failing at the first write with earlier requests of a batch written.
-- Append events to aggregate streams and to their category streams, atomically per request.
-- One call carries one request or a batch of them (all keys in one slot: one partition).
--
-- ARGV[1]  number of requests
-- Then per request, its KEYS (from the first unused one) and ARGV (likewise):
--   KEYS  the stream's version counter          version:{pN}:<stream>  (<version>|<last time>)
--         the stream                            <aggregate>:{pN}:<id>  (entry id <version>-0)
--         the idempotency record                idem:{pN}:<stream>:<key>
--         the category stream of each event     user_activity:{pN}, ...
--   ARGV  expected version: "any", or a number (0: no stream yet)
--         idempotency record lifetime in ms (0: no idempotency key)
--         number of events
--         the id field's name (user_id, group_id, ...) and the stream's id
--         the request's fingerprint (empty: not compared)
--         per event, 7 values: type, event_id, occurred_at, schema_version,
--         correlation_id, causation_id (empty when equal to correlation_id), payload
--
-- Returns, per request, two numbers: 1, version when appended; 0, actual on a version
-- conflict; 2, version when the idempotency key was used before (the version that first call
-- produced); 3, that version when the key was used before for another request (both
-- fingerprints known and different). The record holds `<version>:<fingerprint>` (a record
-- written before fingerprints holds the version alone). A request's checks all come before its first write: Redis does not roll a script
-- back. Requests are independent: one's conflict does not stop the next.
--
-- An event's occurred_at is never earlier than its stream's last event's.
--
-- The category entry carries every field, so XREAD alone shows what happened. The stream's own
-- entry leaves out the id and version: its key names the stream, its entry id is the version.

local PER_REQUEST, PER_EVENT = 6, 7

local function append(k, a)
    local version_key, stream_key, idempotency_key = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    local expected, ttl, count = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local id_field, id, fingerprint = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
    if ttl > 0 then
        local recorded = redis.call('GET', idempotency_key)
        if recorded then
            local version, first = string.match(recorded, '^(%d+):(.*)$')
            if not version then
                version, first = recorded, ''
            end
            if first ~= '' and fingerprint ~= '' and first ~= fingerprint then
                return 3, tonumber(version)
            end
            return 2, tonumber(version)
        end
    end

    -- The counter holds `<version>|<last event's occurred_at>` (a counter written before it
    -- kept the time holds the version alone).
    local recorded = redis.call('GET', version_key) or '0'
    local counted, last_time = string.match(recorded, '^(%d+)|(.*)$')
    if not counted then
        counted, last_time = recorded, ''
    end
    local current = tonumber(counted)
    if expected ~= 'any' and tonumber(expected) ~= current then
        return 0, current
    end

    -- Time never goes back within a stream: an event earlier than the stream's last (a clock
    -- stepped back) is stored at the last one's time. The times are fixed-width RFC 3339 in
    -- UTC, so they compare as text.
    local version = current
    local at = a + PER_REQUEST
    for i = 1, count do
        version = version + 1
        if ARGV[at + 2] < last_time then
            ARGV[at + 2] = last_time
        end
        last_time = ARGV[at + 2]
        redis.call('XADD', stream_key, version .. '-0',
            'type', ARGV[at],
            'event_id', ARGV[at + 1],
            'occurred_at', ARGV[at + 2],
            'schema_version', ARGV[at + 3],
            'correlation_id', ARGV[at + 4],
            'causation_id', ARGV[at + 5],
            'payload', ARGV[at + 6])
        redis.call('XADD', KEYS[k + 2 + i], '*',
            'type', ARGV[at],
            id_field, id,
            'version', tostring(version),
            'event_id', ARGV[at + 1],
            'occurred_at', ARGV[at + 2],
            'schema_version', ARGV[at + 3],
            'correlation_id', ARGV[at + 4],
            'causation_id', ARGV[at + 5],
            'payload', ARGV[at + 6])
        at = at + PER_EVENT
    end

    redis.call('SET', version_key, version .. '|' .. last_time)
    if ttl > 0 then
        redis.call('SET', idempotency_key, version .. ':' .. fingerprint, 'PX', ttl)
    end
    return 1, version
end

local replies = {}
local k, a = 1, 2
for _ = 1, tonumber(ARGV[1]) do
    local code, version = append(k, a)
    replies[#replies + 1] = code
    replies[#replies + 1] = version
    local count = tonumber(ARGV[a + 2])
    k = k + 3 + count
    a = a + PER_REQUEST + PER_EVENT * count
end
return replies
