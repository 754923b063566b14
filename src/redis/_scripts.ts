/**
 * The Lua scripts of the Redis bridge. Each runs atomically in Redis, which is what gives every
 * event one place in one order, the same on every worker, and lets a replay read history and
 * the head in one step.
 *
 * Keys (under the bridge's prefix): `meta` is a hash with `epoch`, `seq`, `run` and `node` (the
 * run id and cluster node id of the Redis server the data is on, see `LINEAGE`) and `lb`
 * (`<epoch> <seq>` of the last broadcast kept in history); `events` is the one pub/sub channel (a shard channel, `SPUBLISH`,
 * on a Redis Cluster); `b` is the broadcast history
 * and `c:<channel>` a channel's, both streams whose entry ids are `<seq>-0` and whose entries
 * hold `e` (epoch), `p` (the seq of the channel's previous event, which is how a trimmed event is
 * noticed), `m` (the payload, see `_message.ts`) and, for an id the caller chose, `i`;
 * `i:<channel>` (`ib` for broadcasts) is a hash from each such id to the seq of the newest stored
 * event that carries it, so that a replay finds a caller's id with one `HGET` per channel.
 *
 * `log` is the heal log: every event (history kept or not), entry id `<seq>-0`, fields `e`
 * (epoch) and `m` (payload), trimmed to about `healWindow` entries (`MAXLEN ~`). A worker whose
 * subscription missed events reads them from there and delivers them in order.
 *
 * History expires: a stream lives `ttl` ms after its channel's last publish or replay. So that a
 * stream that is gone is never read as "no events" (a hole), each channel also has a marker
 * `l:<channel>` = `<epoch> <seq>` of its last event, living four times as long (broadcasts keep
 * theirs in `meta`, which never expires), and the hash `w` records the watermark: once per
 * `ttl / 4` ms, the head at that time, with the shortest marker lifetime used since and Redis's
 * `evicted_keys` count. When a stream and its marker are both gone, the marker expired (or was
 * evicted, which the count shows), so the channel's last event is older than what the watermark
 * gives: a client before the watermark gets the gap signal. It may be a gap that was not real
 * for a very old position; never a hole.
 * @module
 */

/**
 * Lua shared by the publish and replay scripts (and by those of the partitioned mode, see
 * `_partitioned_scripts.ts`): the time, Redis's eviction count, the watermark, and a lifetime
 * that only grows.
 */
export const COMMON = `
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- How many keys Redis has evicted (any key: only its changes matter), '-' when INFO is refused.
local function evicted()
  local info = redis.pcall('INFO', 'stats')
  if type(info) == 'string' then return string.match(info, 'evicted_keys:(%d+)') or '-' end
  return '-'
end
-- The watermark records of hash w, oldest first: {time, head, shortest marker life, evicted}.
local function records(w)
  local all = redis.call('HGETALL', w)
  local list = {}
  for i = 1, #all, 2 do
    local h, m, e = string.match(all[i + 1], '^(%d+) (%d+) (%S+)$')
    if h and all[i] ~= 'last' then
      list[#list + 1] = {tonumber(all[i]), tonumber(h), tonumber(m), e}
    end
  end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  return list
end
-- A publish after record i can have lost its marker by now: it expired (the shortest life
-- used after the record has passed; 5 ms for the rounding between TIME and key expiry) or
-- keys were evicted since. The answer is the head at the next record (every event before it
-- has a lower seq), or the current head.
local function watermark(w, now, head)
  local list = records(w)
  local n = #list
  if n == 0 or list[n][4] ~= evicted() or list[n][1] > now then return head end
  local k = 0
  for i = 1, n do
    if list[i][1] + list[i][3] <= now + 5 then k = i end
    if i > 1 and list[i][4] ~= list[i - 1][4] then k = math.max(k, i - 1) end
  end
  if k == n then return head end
  return list[k + 1][2]
end
-- Sets a key's lifetime to at least ms: a marker must never expire earlier than its publisher
-- said, or the watermark would not cover it.
local function extend(key, ms)
  local left = redis.call('PTTL', key)
  if left >= 0 and left < ms then redis.call('PEXPIRE', key, ms) end
end
-- Records the watermark: a record per ttl/4 ms with the head before event seq; the record's
-- shortest marker life drops to life if it is shorter.
local function record_watermark(w, now, seq, life, ttl)
  local newest = tonumber(redis.call('HGET', w, 'last'))
  if newest and now < newest then
    -- The clock went back: older records would say "before t" of times that came again.
    -- Starting over is safe (fewer records only make the watermark later).
    redis.call('DEL', w)
    newest = nil
  end
  if newest == nil or now - newest >= math.max(1, math.floor(ttl / 4)) then
    local t = string.format('%d', now)
    redis.call('HSET', w, t, string.format('%d %d ', seq - 1, life) .. evicted(), 'last', t)
    -- Records before the newest one that is fully expired no longer decide anything; at most
    -- 64 are kept (dropping the oldest only makes the watermark later: more gaps, no hole).
    local list = records(w)
    local drop = #list - 64
    for i = 1, #list do
      if list[i][1] + list[i][3] <= now then drop = math.max(drop, i - 1) end
    end
    for i = 1, drop do redis.call('HDEL', w, string.format('%d', list[i][1])) end
  else
    local t = string.format('%d', newest)
    local h, m, e = string.match(redis.call('HGET', w, t) or '', '^(%d+) (%d+) (%S+)$')
    if h and life < tonumber(m) then
      redis.call('HSET', w, t, h .. ' ' .. string.format('%d', life) .. ' ' .. e)
    end
  end
end
-- What a replay knows of one channel's history in this epoch: the p of the first entry its
-- stream keeps (whose entries it renews), or, when the stream is gone, the last seq the channel's
-- events can have had: from its marker (meta's lb for broadcasts), else the watermark (below, a
-- cache of it for the script's other channels). Renews the marker. Returns first, limit, below.
local function reach(stream, marker, meta, w, epoch, head, ttl, below)
  local first, limit = nil, nil
  local entry = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  if entry then
    -- (a stream left from an earlier epoch holds no one's history: let it expire)
    if entry[2][2] == epoch then
      first = tonumber(entry[2][4])
      redis.call('PEXPIRE', stream, ttl)
    end
  else
    local mark
    if marker == meta then mark = redis.call('HGET', meta, 'lb') else mark = redis.call('GET', marker) end
    if mark then
      local e, m = string.match(mark, '^(%S+) (%d+)$')
      if e == epoch then limit = tonumber(m) elseif e == nil then limit = head end
    elseif marker ~= meta then
      if below == nil then below = watermark(w, clock(), head) end
      limit = below
    end
  end
  if marker ~= meta then extend(marker, ttl * 4) end
  return first, limit, below
end
`;

/**
 * Lua shared by the HEAD and publish scripts of both modes: `lineage(meta, node)`, whether the
 * data under `meta` may have lost its last events since its epoch was handed out, so that a new
 * epoch must start (a seq must never be handed out twice). It records the server it runs on
 * (`node`, the cluster node id, and `run`, the process's run id) in `meta`.
 *
 * - Same cluster node (or no cluster, or no node recorded yet), same run id: the same process,
 *   keep the epoch. Another run id: the server restarted (with a persistence that may lack the
 *   tail), a new epoch.
 * - Another cluster node: the keys came by `MIGRATE` (a reshard moves them whole, keep the
 *   epoch) when this node is a master that was never a replica since it started
 *   (`second_repl_offset:-1` in `INFO replication`); else it is a promoted replica (a failover:
 *   its copy may lack the tail), a new epoch.
 *
 * `node` is this server's `CLUSTER MYID`, or false without cluster support (`node_id()` gives
 * it). `CLUSTER MYID` costs about 0.35 us, so a publish on a Cluster compares it with `meta`'s
 * `node` every time and calls `lineage` only when they differ; the two `INFO` calls (about 6 us
 * each) run only then and in the HEAD scripts. When `INFO` is refused, a node change counts as a
 * failover and a run id is not compared. Residual risk: a replica promoted and then restarted
 * from its own persistence before any script ran on it looks like a reshard.
 */
export const LINEAGE = `
local function node_id()
  local id = redis.pcall('CLUSTER', 'MYID')
  if type(id) == 'string' then return id end
  return false
end
local function info_field(section, name)
  local info = redis.pcall('INFO', section)
  if type(info) ~= 'string' then return nil end
  return string.match(info, name .. ':(%S+)')
end
local function lineage(meta, node)
  local known = redis.call('HMGET', meta, 'node', 'run')
  local run = info_field('server', 'run_id')
  local new = false
  if node and known[1] and known[1] ~= node then
    local second = tonumber(info_field('replication', 'second_repl_offset'))
    new = second == nil or second >= 0
  elseif run and known[2] and known[2] ~= run then
    new = true
  end
  if node and known[1] ~= node then redis.call('HSET', meta, 'node', node) end
  if run and known[2] ~= run then redis.call('HSET', meta, 'run', run) end
  return new
end
`;

/**
 * Makes sure there is an epoch, starts a new one when the Redis server changed (a restart or a
 * failover: ids handed out since its last save could come back), and publishes a checkpoint
 * `f1 <epoch> <seq> head` through which every worker checks that it missed nothing.
 *
 * KEYS: meta, events. ARGV: a new epoch to use if needed, `S` to publish on a shard channel
 * (`SPUBLISH`, Redis Cluster) or `""` (`PUBLISH`).
 */
export const HEAD_SCRIPT = LINEAGE + `
local publish = ARGV[2] == 'S' and 'SPUBLISH' or 'PUBLISH'
local meta = KEYS[1]
local epoch = redis.call('HGET', meta, 'epoch')
if lineage(meta, node_id()) then epoch = false end
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch)
end
local seq = redis.call('HGET', meta, 'seq') or '0'
redis.call(publish, KEYS[2], 'f1 ' .. epoch .. ' ' .. seq .. ' head')
return {epoch, seq}
`;

/**
 * Gives an event the next seq, stores it in its channel's stream when history is kept (trimmed
 * to `history` entries, expiring `ttl` ms later), moves the channel's marker and the watermark,
 * and publishes it. A new epoch is announced by a checkpoint first: workers take a new epoch
 * only from a checkpoint, so a stray message cannot switch them.
 *
 * Every event also goes to the heal log (when `healWindow` > 0), and a caller's id into its
 * channel's index; the index entries of the events the trim removes are removed with them.
 *
 * KEYS: meta, events, stream, marker (meta for a broadcast: its marker is the `lb` field),
 * watermark, log, index. ARGV: a new epoch to use if needed, payload, history, caller's id or "",
 * ttl (ms), healWindow, `S` for `SPUBLISH` (as in the HEAD script).
 */
export const PUBLISH_SCRIPT = COMMON + LINEAGE + `
local publish = ARGV[7] == 'S' and 'SPUBLISH' or 'PUBLISH'
local meta = KEYS[1]
local epoch = redis.call('HGET', meta, 'epoch')
-- On a Cluster a failover hands the keys to a replica that may lack the last events, and a
-- publish can reach it before any worker's HEAD script: a seq must never be handed out twice.
-- (CLUSTER MYID per publish, about 0.35 us; the lineage rule only when the node changed. On a
-- single server the HEAD script that every reconnect runs checks it.)
if publish == 'SPUBLISH' then
  local node = redis.call('CLUSTER', 'MYID')
  if node ~= redis.call('HGET', meta, 'node') and lineage(meta, node) then epoch = false end
end
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch)
  redis.call(publish, KEYS[2], 'f1 ' .. epoch .. ' ' .. (redis.call('HGET', meta, 'seq') or '0') .. ' head')
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local s = string.format('%d', seq)
local history = tonumber(ARGV[3])
local window = tonumber(ARGV[6])
if window > 0 then
  local log = KEYS[6]
  local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
  if top and (top[2][2] ~= epoch or tonumber(string.match(top[1], '^(%d+)')) >= seq) then
    -- left over from an earlier epoch (or a Redis that went back): no one can heal from it
    redis.call('DEL', log)
  end
  redis.call('XADD', log, 'MAXLEN', '~', window, s .. '-0', 'e', epoch, 'm', ARGV[2])
  redis.call('PEXPIRE', log, tonumber(ARGV[5]))
end
if history > 0 then
  local key, marker, w, index = KEYS[3], KEYS[4], KEYS[5], KEYS[7]
  local ttl = tonumber(ARGV[5])
  local life = ttl * 4
  local now = clock()
  local prev = '0'
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  if last then
    local p = string.match(last[1], '^(%d+)')
    if last[2][2] == epoch and tonumber(p) < seq then
      prev = p
    else
      -- left over from an earlier epoch: its events are no one's history any more
      redis.call('DEL', key, index)
    end
  else
    -- No stream: new, expired or evicted. Its first entry's p must still cover every event
    -- the channel had, or a replay would read the gone ones as "none". (An index left without
    -- its stream names no stored event.)
    redis.call('DEL', index)
    local mark
    if marker == meta then mark = redis.call('HGET', meta, 'lb') else mark = redis.call('GET', marker) end
    if mark then
      local e, m = string.match(mark, '^(%S+) (%d+)$')
      if e == epoch then prev = m elseif e == nil then prev = string.format('%d', seq - 1) end
    elseif marker ~= meta then
      -- (meta never expires: without lb there was no broadcast in history yet)
      prev = string.format('%d', watermark(w, now, seq - 1))
    end
  end
  -- The entries the trim below removes take their index entries with them (unless a newer
  -- event carries the same id): the index never outgrows the stream.
  local over = redis.call('XLEN', key) + 1 - history
  if over > 0 then
    for _, entry in ipairs(redis.call('XRANGE', key, '-', '+', 'COUNT', over)) do
      local f = entry[2]
      if f[7] == 'i' and redis.call('HGET', index, f[8]) == string.match(entry[1], '^(%d+)') then
        redis.call('HDEL', index, f[8])
      end
    end
  end
  if ARGV[4] == '' then
    redis.call('XADD', key, 'MAXLEN', history, s .. '-0', 'e', epoch, 'p', prev, 'm', ARGV[2])
  else
    redis.call('XADD', key, 'MAXLEN', history, s .. '-0', 'e', epoch, 'p', prev, 'm', ARGV[2],
      'i', ARGV[4])
    redis.call('HSET', index, ARGV[4], s)
  end
  redis.call('PEXPIRE', key, ttl)
  redis.call('PEXPIRE', index, ttl)
  if marker == meta then
    redis.call('HSET', meta, 'lb', epoch .. ' ' .. s)
  else
    redis.call('SET', marker, epoch .. ' ' .. s, 'PX', life)
  end
  record_watermark(w, now, seq, life, ttl)
end
redis.call(publish, KEYS[2], 'f1 ' .. epoch .. ' ' .. s .. ' ' .. ARGV[2])
return {epoch, s}
`;

/**
 * What a client at a position missed on some channels, and the head, in one atomic step. Every
 * stream it reads lives `ttl` ms more, every marker at least four times that: a client that
 * keeps coming back keeps its channels' history.
 *
 * A caller's id is looked up in each channel's index (one `HGET`, then the entry it names is
 * checked), never by reading the streams: a forged id costs a few commands per channel.
 *
 * KEYS: meta, watermark, then a stream, its marker and its index per channel (broadcasts first,
 * with meta as their marker). ARGV: a new epoch to use if needed, the client's raw id (or "" when too
 * long to look up), the epoch and seq parsed from it (or ""), the channel (where a new epoch is
 * announced), ttl (ms), `S` for `SPUBLISH` (as in the HEAD script).
 * Returns `{epoch, head, 0}` for an unknown position, else `{epoch, head, 1, gaps, events}` with
 * `gaps` the (1-based) channel numbers that lost events after the position and `events` a flat
 * list of seq, payload.
 */
export const REPLAY_SCRIPT = COMMON + `
local publish = ARGV[7] == 'S' and 'SPUBLISH' or 'PUBLISH'
local meta, w = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch)
  redis.call(publish, ARGV[5], 'f1 ' .. epoch .. ' ' .. (redis.call('HGET', meta, 'seq') or '0') .. ' head')
end
local head = tonumber(redis.call('HGET', meta, 'seq') or '0')
local ttl = tonumber(ARGV[6])
local after = nil
local position = tonumber(ARGV[4])
if ARGV[3] == epoch and position and position <= head then after = position end
-- firsts[k]: the seq before channel k's oldest stored event; limits[k]: for a channel whose
-- stream is gone, the seq its last event had at most.
local firsts, limits = {}, {}
local channels = (#KEYS - 2) / 3
local below = nil
for k = 1, channels do
  local stream, marker, index = KEYS[3 * k], KEYS[3 * k + 1], KEYS[3 * k + 2]
  firsts[k], limits[k], below = reach(stream, marker, meta, w, epoch, head, ttl, below)
  if firsts[k] then redis.call('PEXPIRE', index, ttl) end
end
if after == nil and ARGV[2] ~= '' then
  -- an id the publisher chose: the newest stored event that carries it, from the indexes (an
  -- index entry whose event is gone, e.g. the stream expired first, does not count)
  for k = 1, channels do
    if firsts[k] then
      local n = redis.call('HGET', KEYS[3 * k + 2], ARGV[2])
      if n then
        local entry = redis.call('XRANGE', KEYS[3 * k], n .. '-0', n .. '-0')[1]
        if entry and entry[2][7] == 'i' and entry[2][8] == ARGV[2] then
          n = tonumber(n)
          if after == nil or n > after then after = n end
        end
      end
    end
  end
end
if after == nil then return {epoch, head, 0} end
local gaps, events = {}, {}
local from = string.format('%d', after + 1)
for k = 1, channels do
  if firsts[k] then
    if firsts[k] > after then gaps[#gaps + 1] = k end
    for _, entry in ipairs(redis.call('XRANGE', KEYS[3 * k], from, '+')) do
      events[#events + 1] = string.match(entry[1], '^(%d+)')
      events[#events + 1] = entry[2][6]
    end
  elseif limits[k] and limits[k] > after then
    gaps[#gaps + 1] = k
  end
end
return {epoch, head, 1, gaps, events}
`;

/**
 * What Redis says about a message's claim, so that a message announcing a hole or a new epoch is
 * acted on only when Redis confirms it: the current epoch and seq and, for an event, whether the
 * heal log (or else its stream) holds that seq with that payload.
 *
 * KEYS: meta, the event's stream (any stream for a checkpoint), log. ARGV: the claimed epoch,
 * seq, and the event's payload ("" for a checkpoint).
 * Returns `{epoch or "", seq, stored}` with `stored` 1 (the same event), -1 (another event at
 * that seq) or 0 (nothing stored there: no history kept, or trimmed).
 */
export const CHECK_SCRIPT = `
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
local stored = 0
if ARGV[3] ~= '' then
  local id = ARGV[2] .. '-0'
  local entry = redis.call('XRANGE', KEYS[3], id, id)[1]
  if entry then
    if entry[2][2] == ARGV[1] and entry[2][4] == ARGV[3] then stored = 1 else stored = -1 end
    return {epoch, seq, stored}
  end
  entry = redis.call('XRANGE', KEYS[2], id, id)[1]
  if entry then
    if entry[2][2] == ARGV[1] and entry[2][6] == ARGV[3] then stored = 1 else stored = -1 end
  end
end
return {epoch, seq, stored}
`;

/**
 * The events `first` to `last` of an epoch from the heal log, for a worker whose subscription
 * missed them. Only entries of that epoch: a log is never read across a Redis restart.
 *
 * KEYS: meta, log. ARGV: the epoch, first, last.
 * Returns `{epoch or "", seq, events}` with `events` a flat list of seq, payload in order (none
 * when the epoch is not the current one); the range may be partly or wholly gone (trimmed,
 * expired).
 */
export const HEAL_SCRIPT = `
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
local events = {}
if epoch ~= ARGV[1] then return {epoch, seq, events} end
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], ARGV[2] .. '-0', ARGV[3] .. '-0')) do
  if entry[2][2] == epoch then
    events[#events + 1] = string.match(entry[1], '^(%d+)')
    events[#events + 1] = entry[2][4]
  end
end
return {epoch, seq, events}
`;
