"""The Lua scripts the Redis adapter runs: each is one atomic step in Redis.

Keys built inside a script from the prefix are not declared in ``KEYS``: the
adapter targets one Redis server (or a primary with replicas), not a cluster.
"""

from __future__ import annotations

__all__ = ["HEARTBEAT", "MEMBERS", "PRESENCE", "PUBLISH", "REAP", "RESTORE", "SAVE_SESSION"]

# Store (optionally) and publish in one step, so that the order of the stream
# is the order in which every subscriber receives the events. The stream is
# trimmed by age (the recovery window) and by length (entries of the average
# size that fit max_stored_bytes); "~" lets Redis trim whole nodes, cheaply.
# KEYS[1] stream
# ARGV[1] body, ARGV[2] recovery window in ms ("0": not stored),
# ARGV[3] most entries kept ("0": no bound), ARGV[4..] channels
# -> {offset or "", number of subscribers that received a copy}
PUBLISH = """
local head = ''
if ARGV[2] ~= '0' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local minid = tostring(now - tonumber(ARGV[2]))
  head = redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', 'm', ARGV[1])
  if ARGV[3] ~= '0' then
    redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[3])
  end
end
local payload = head .. '\\n' .. ARGV[1]
local count = 0
for i = 4, #ARGV do
  count = count + redis.call('PUBLISH', ARGV[i], payload)
end
return {head, count}
"""

# Save a socket's session, keeping where it started listening: the stream
# offset recorded the first time ("o", the newest entry then: a client that
# received nothing resumes after it, and no client resumes before it), and for
# each room the newest entry when the room first appeared in a save ("j",
# JSON room -> id): recovery replays a room's events only from there. The sid
# key marks the sid as taken (no other socket may join a room of that name).
# KEYS[1] session hash, KEYS[2] stream, KEYS[3] sid key
# ARGV[1] session JSON, ARGV[2] TTL in ms, ARGV[3] JSON list of its rooms
SAVE_SESSION = """
redis.call('HSET', KEYS[1], 's', ARGV[1])
local newest = nil
local function head()
  if newest == nil then
    local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
    newest = '0-0'
    if #last > 0 then newest = last[1][1] end
  end
  return newest
end
if redis.call('HEXISTS', KEYS[1], 'o') == 0 then
  redis.call('HSET', KEYS[1], 'o', head())
end
local old = redis.call('HGET', KEYS[1], 'j')
local marks = {}
if old then marks = cjson.decode(old) end
local joined = {}
local count = 0
for _, room in ipairs(cjson.decode(ARGV[3])) do
  joined[room] = marks[room] or head()
  count = count + 1
end
if count > 0 then
  redis.call('HSET', KEYS[1], 'j', cjson.encode(joined))
else
  redis.call('HDEL', KEYS[1], 'j')
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
return 1
"""

# Take a saved session (it can be recovered once) and the stream entries after
# the offset, or nothing when that offset is no longer in the stream. The
# client's offset is its word: one older than where the socket started ("o")
# starts there instead.
# KEYS[1] session hash, KEYS[2] stream; ARGV[1] the client's offset (a valid
# stream id) or ""
# -> {session JSON, start offset, room marks JSON, entries...} | {} |
#    {session JSON} (too old)
RESTORE = """
local session = redis.call('HGET', KEYS[1], 's')
if not session then return {} end
local origin = redis.call('HGET', KEYS[1], 'o') or '0-0'
local marks = redis.call('HGET', KEYS[1], 'j') or '{}'
redis.call('DEL', KEYS[1])
local function id(s)
  local ms, seq = string.match(s, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local start = origin
if ARGV[1] ~= '' then
  local cms, cseq = id(ARGV[1])
  local oms, oseq = id(origin)
  if cms > oms or (cms == oms and cseq > oseq) then start = ARGV[1] end
end
if start ~= '0-0' and #redis.call('XRANGE', KEYS[2], start, start) == 0 then
  return {session}
end
local out = {session, start, marks}
local entries = redis.call('XRANGE', KEYS[2], '(' .. start, '+')
for _, entry in ipairs(entries) do
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2][2]
end
return out
"""

# Presence: add or remove one socket from a room or a user, indexed under its
# node so that the node's entries can be reaped if it dies.
# KEYS[1] presence hash (room or user), KEYS[2] node index set
# ARGV[1] "add" | "remove", ARGV[2] sid, ARGV[3] value (JSON), ARGV[4] index entry
# -> {changed (0/1), members left (after removal) or members now (after adding)}
PRESENCE = """
if ARGV[1] == 'add' then
  local added = redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[4])
  return {added, redis.call('HLEN', KEYS[1])}
end
local removed = redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('SREM', KEYS[2], ARGV[4])
return {removed, redis.call('HLEN', KEYS[1])}
"""

# Claim a dead node (one reaper wins the ZREM) and remove its presence
# entries and sessions' liveness; returns the entries removed, each followed by
# the members left in its hash, for the reaper to announce.
# KEYS[1] nodes zset, KEYS[2] the dead node's index set; ARGV[1] node, ARGV[2] prefix
REAP = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return {} end
local out = {}
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local e = cjson.decode(entry)
  local key = ARGV[2] .. e[1]
  local removed = redis.call('HDEL', key, e[2])
  if removed == 1 then
    out[#out + 1] = entry
    out[#out + 1] = redis.call('HLEN', key)
  end
end
redis.call('DEL', KEYS[2])
return out
"""

# The members of a presence hash whose node is alive (its score in the nodes
# zset is in the future, Redis clock), as {field, value, ...}.
# KEYS[1] presence hash, KEYS[2] nodes zset
MEMBERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local node = cjson.decode(all[i + 1])[1]
  local until_ = redis.call('ZSCORE', KEYS[2], node)
  if until_ and tonumber(until_) >= now then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
"""

# A node says it is alive for ARGV[2] ms more; returns the nodes that are not.
# KEYS[1] nodes zset; ARGV[1] node, ARGV[2] TTL in ms
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
"""
