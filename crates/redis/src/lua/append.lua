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
--         per event, 8 values: type, event_id, occurred_at, schema_version,
--         correlation_id, causation_id (empty when equal to correlation_id), actor (empty:
--         none recorded), payload
--
-- Returns, per request, two numbers: 1, version when appended; 0, actual on a version
-- conflict; 2, version when the idempotency key was used before (the version that first call
-- produced); 3, that version when the key was used before for another request (both
-- fingerprints known and different); 4, which key (1 counter, 2 stream, 3 idempotency record,
-- 3 + i the i-th event's category stream) holds a type this script does not write; 5, the
-- counter when the stream holds an entry this script did not write past it. The record holds
-- `<version>:<fingerprint>` (a record written before fingerprints holds the version alone).
-- A request's checks all come before its first write, but one: a category key of another
-- type is found by its write failing, and the request's writes are then undone.
-- Requests are independent: one's conflict or refusal does not stop the next.
--
-- A lost counter (evicted, deleted) is taken up again from the stream's last entry.
--
-- An event's occurred_at is never earlier than its stream's last event's. A request whose
-- first event is already stored at the version after the one it expected is the same call
-- delivered twice: code 2 with the version it produced.
--
-- The category entry carries every field, so XREAD alone shows what happened. The stream's own
-- entry leaves out the id and version: its key names the stream, its entry id is the version.

local PER_REQUEST, PER_EVENT = 6, 8

-- Codes for a request refused before its first write (see the header).
local UNUSABLE_KEY, STREAM_AHEAD = 4, 5

local function failed(reply)
    return type(reply) == 'table' and reply.err ~= nil
end

local function field_of(fields, name)
    for i = 1, #fields, 2 do
        if fields[i] == name then
            return fields[i + 1]
        end
    end
end

-- Take back a request's writes when one fails part way (a category key of another type):
-- its entries in the category streams, then in its stream, whose last id goes back to the
-- version before (an emptied new stream is removed), so the stream can be written again.
local function undo(stream_key, current, version, k, categories_written)
    for i, id in ipairs(categories_written) do
        redis.call('XDEL', KEYS[k + 2 + i], id)
    end
    for v = current + 1, version do
        redis.call('XDEL', stream_key, v .. '-0')
    end
    if redis.call('XLEN', stream_key) == 0 then
        redis.call('DEL', stream_key)
    else
        redis.call('XSETID', stream_key, current .. '-0')
    end
end

local function append(k, a)
    local version_key, stream_key, idempotency_key = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    local expected, ttl, count = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local id_field, id, fingerprint = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
    -- Redis does not roll a script back, and a stream written without its counter could never
    -- be written again: what can be read is checked before the first write; a category key of
    -- another type, found only by its write failing, has this request's writes undone.
    if ttl > 0 then
        local recorded = redis.pcall('GET', idempotency_key)
        if failed(recorded) then
            return UNUSABLE_KEY, 3
        end
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
    local recorded = redis.pcall('GET', version_key)
    if failed(recorded) then
        return UNUSABLE_KEY, 1
    end
    if not recorded then
        -- No counter: a new stream, or a counter lost (evicted, deleted) whose stream is
        -- still there: taken up again from the stream's last entry.
        local last = redis.pcall('XREVRANGE', stream_key, '+', '-', 'COUNT', 1)
        if failed(last) then
            return UNUSABLE_KEY, 2
        end
        if last[1] then
            local version = string.match(last[1][1], '^(%d+)-0$')
            local time = field_of(last[1][2], 'occurred_at')
            if not version or not field_of(last[1][2], 'event_id') or not time then
                return STREAM_AHEAD, 0
            end
            recorded = version .. '|' .. time
        else
            recorded = '0'
        end
    end
    local counted, last_time = recorded, ''
    local bar = string.find(recorded, '|', 1, true)
    if bar then
        counted, last_time = string.sub(recorded, 1, bar - 1), string.sub(recorded, bar + 1)
    end
    local current = tonumber(counted)
    if expected ~= 'any' and tonumber(expected) ~= current then
        -- The same call delivered again (a client resends after a dropped connection) finds
        -- its own first event right after the version it expected: answered as a duplicate.
        local first = tonumber(expected) + 1
        if current >= first + count - 1 then
            local found = redis.call('XRANGE', stream_key, first .. '-0', first .. '-0')
            if found[1] and field_of(found[1][2], 'event_id') == ARGV[a + PER_REQUEST + 1] then
                return 2, first + count - 1
            end
        end
        return 0, current
    end

    -- Time never goes back within a stream: an event earlier than the stream's last (a clock
    -- stepped back) is stored at the last one's time. The times are fixed-width RFC 3339 in
    -- UTC, so they compare as text.
    local version = current
    local at = a + PER_REQUEST
    -- The entry ids written to the category streams (event i's in KEYS[k + 2 + i]).
    local categories_written = {}
    local text = counted
    for i = 1, count do
        version = version + 1
        -- Formatted once: a number becomes text through the C library's formatting.
        text = tostring(version)
        if ARGV[at + 2] < last_time then
            ARGV[at + 2] = last_time
        end
        last_time = ARGV[at + 2]
        local written = redis.pcall('XADD', stream_key, text .. '-0',
            'type', ARGV[at],
            'event_id', ARGV[at + 1],
            'occurred_at', ARGV[at + 2],
            'schema_version', ARGV[at + 3],
            'correlation_id', ARGV[at + 4],
            'causation_id', ARGV[at + 5],
            'actor', ARGV[at + 6],
            'payload', ARGV[at + 7])
        -- Only the first can fail (later ids are higher still), and nothing is written yet:
        -- the key holds another type, or an entry past the counter not written here.
        if failed(written) then
            if redis.call('TYPE', stream_key)['ok'] ~= 'stream' then
                return UNUSABLE_KEY, 2
            end
            return STREAM_AHEAD, current
        end
        local category_key = KEYS[k + 2 + i]
        local entry = redis.pcall('XADD', category_key, '*',
            'type', ARGV[at],
            id_field, id,
            'version', text,
            'event_id', ARGV[at + 1],
            'occurred_at', ARGV[at + 2],
            'schema_version', ARGV[at + 3],
            'correlation_id', ARGV[at + 4],
            'causation_id', ARGV[at + 5],
            'actor', ARGV[at + 6],
            'payload', ARGV[at + 7])
        if failed(entry) then
            undo(stream_key, current, version, k, categories_written)
            return UNUSABLE_KEY, 3 + i
        end
        categories_written[i] = entry
        at = at + PER_EVENT
    end

    redis.call('SET', version_key, text .. '|' .. last_time)
    if ttl > 0 then
        redis.call('SET', idempotency_key, text .. ':' .. fingerprint, 'PX', ttl)
    end
    return 1, version
end

local replies = {}
local k, a = 1, 2
for _ = 1, tonumber(ARGV[1]) do
    local code, version = append(k, a)
    if code == 2 then
        -- A duplicate is answered after the caller's WAIT, which covers this connection's
        -- writes: rewriting the counter as it is puts a write after the first call's in the
        -- replication stream, so that WAIT waits for them too (the first call may have come
        -- through another connection, and been answered 503 for want of replicas).
        local counter = redis.call('GET', KEYS[k])
        if counter then
            redis.call('SET', KEYS[k], counter)
        end
    end
    replies[#replies + 1] = code
    replies[#replies + 1] = version
    local count = tonumber(ARGV[a + 2])
    k = k + 3 + count
    a = a + PER_REQUEST + PER_EVENT * count
end
return replies
