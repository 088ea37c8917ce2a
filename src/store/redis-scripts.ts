// The Lua the Redis store runs. Each script is atomic on the server, so instances sharing the
// store never both take the last unit of a limit. Arithmetic mirrors window-counters.ts.
//
// Cost, measured on the 2-core development machine against a local redis-server 7.0 with four
// counters per call (test/integration/redis-store.test.ts prints the first figure): ~0.16-0.3 ms
// per RESERVE awaited one after another over loopback, ~0.08 ms each when many are in flight,
// of which ~50 µs is the script on the server (INFO commandstats). One call per transaction
// (plus one per recipient after the first); over a LAN add the network round trip.

/**
 * KEYS[i]: hash of counter i (field = bucket index, value = count).
 * ARGV: per counter, (limit, bucketMs, buckets, amount).
 * Returns {1, bucket1, left1, bucket2, left2, ...} when every counter took its amount, or
 * {0, i, retryInMs} for the first counter that would go over (then nothing is charged).
 * The server's clock (TIME) is the fleet's one clock.
 */
export const RESERVE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur, left = {}, {}
for i = 1, #KEYS do
  local o = (i - 1) * 4
  local limit, bucketMs = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
  local buckets, amount = tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
  local idx = math.floor(now / bucketMs)
  local flat = redis.call('HGETALL', KEYS[i])
  local used, live = 0, {}
  for j = 1, #flat, 2 do
    local b, c = tonumber(flat[j]), tonumber(flat[j + 1])
    if b < idx - buckets then
      redis.call('HDEL', KEYS[i], flat[j])
    elseif c > 0 then
      used = used + c
      live[#live + 1] = { b, c }
    end
  end
  if used + amount > limit then
    table.sort(live, function(x, y) return x[1] < y[1] end)
    local need, retry = used + amount - limit, (buckets + 1) * bucketMs
    for _, e in ipairs(live) do
      need = need - e[2]
      if need <= 0 then
        retry = (e[1] + buckets + 1) * bucketMs - now
        break
      end
    end
    return { 0, i, retry }
  end
  cur[i] = idx
  left[i] = limit - used - amount
end
local out = { 1 }
for i = 1, #KEYS do
  local o = (i - 1) * 4
  redis.call('HINCRBY', KEYS[i], cur[i], ARGV[o + 4])
  redis.call('PEXPIRE', KEYS[i], (tonumber(ARGV[o + 3]) + 2) * tonumber(ARGV[o + 2]))
  out[#out + 1] = cur[i]
  out[#out + 1] = left[i]
end
return out
`;

/** KEYS[i]: counter hash; ARGV: per counter, (bucket, amount). Never goes below zero. */
export const RELEASE_LUA = `
for i = 1, #KEYS do
  local b, a = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  local c = tonumber(redis.call('HGET', KEYS[i], b) or '0')
  if c > 0 then
    if c <= a then redis.call('HDEL', KEYS[i], b) else redis.call('HINCRBY', KEYS[i], b, -a) end
  end
end
return 1
`;

/** KEYS[1]: the lock; ARGV[1]: its owner. Deletes it only if the owner still holds it. */
export const UNLOCK_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

// Connection slots (issue 22): one sorted set per mailbox, member = holder (instance:connection),
// score = expiry on the server's clock. Expired members are dropped before counting, so the
// slots of an instance that died free themselves at their expiry.
const SLOTS_NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
`;

/** KEYS[1]: the mailbox's slots; ARGV: holder, cap, ttlMs. 1 when the holder now has a slot. */
export const SLOT_TAKE_LUA = `${SLOTS_NOW}
local ttl = tonumber(ARGV[3])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
return 1
`;

/**
 * KEYS[1]: the mailbox's slots; ARGV: cap, ttlMs, holder... Extends each holder's slot, or takes
 * it again when it lapsed and there is room (a Redis that failed over without it); returns the
 * holders that could not keep theirs.
 */
export const SLOT_RENEW_LUA = `${SLOTS_NOW}
local cap, ttl, lost = tonumber(ARGV[1]), tonumber(ARGV[2]), {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) or redis.call('ZCARD', KEYS[1]) < cap then
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
return lost
`;
