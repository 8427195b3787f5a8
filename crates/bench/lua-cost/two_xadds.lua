-- The two XADDs of each event and nothing else: what any script keeping two copies costs.
local n = tonumber(ARGV[1])
local a = 2
local k = 2
for r = 1, n do
  local v = r
  redis.call('XADD', KEYS[k], '*', 'type', ARGV[a+7], 'event_id', ARGV[a+8], 'occurred_at', ARGV[a+9], 'schema_version', ARGV[a+10], 'correlation_id', ARGV[a+11], 'causation_id', ARGV[a+12], 'payload', ARGV[a+13])
  redis.call('XADD', KEYS[k+2], '*', 'type', ARGV[a+7], ARGV[a+3], ARGV[a+4], 'version', '1', 'event_id', ARGV[a+8], 'occurred_at', ARGV[a+9], 'schema_version', ARGV[a+10], 'correlation_id', ARGV[a+11], 'causation_id', ARGV[a+12], 'payload', ARGV[a+13])
  a = a + 14
  k = k + 3
end
return 1
