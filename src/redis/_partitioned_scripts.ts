/**
 * The Lua scripts of the partitioned mode of the Redis bridge. Each runs atomically on one
 * partition: every key and the pub/sub channel it names start with the partition's hash tag
 * `{<prefix>p<k>}` (`{<prefix>pb}` for broadcasts), so one call touches one slot of a Redis
 * Cluster, and the cluster client routes it by its first key. The key names come from
 * `partitionNames()` of `_partition.ts`; the message text is the one `_message.ts` decodes.
 *
 * Keys of a partition: `meta` is a hash with `epoch`, `seq` (the partition's last seq), `n`
 * (partitions of channels: every script that writes refuses another count), `node` and `run`
 * (the cluster node id and run id of the server the data is on, see {@linkcode LINEAGE}), and in
 * the broadcast partition `lb` (`<epoch> <seq>` of the last broadcast kept in history). `c:<ch>`
 * (`b` for broadcasts) is a channel's history stream: entry ids `<seq>-0`, fields `e` (epoch),
 * `p` (the seq of the channel's previous event, how a trimmed event is noticed) and `m` (the
 * payload). `l:<ch>` is the channel's marker, `<epoch> <seq>` of its last event, written by every
 * publish (history or not) and living `4 × ttl` ms: its old value is the `prev` every message
 * carries. `log` is the heal log, entry ids `<seq>-0`, fields `e`, `c` (the channel, `""` for a
 * broadcast) and `m`, trimmed to about `healWindow` entries. `w` is the watermark (as in
 * `_scripts.ts`). `e:<ch>` (`e` for broadcasts) is a channel's shard channel and `h:<worker>` a
 * worker's private checkpoint channel.
 *
 * Messages (the `f2` format of `_message.ts`, numbers in decimal):
 * `f2 <k> <epoch> <seq> <prev> <payload>` for an event, `f2 <k> <epoch> <seq> head` for a
 * checkpoint. `prev` is the seq of the channel's previous event in this epoch, `0` when unknown
 * (the channel's first event, a marker expired or from another epoch); a broadcast's is always
 * `seq - 1`. A new epoch is not announced: workers see it in the next message (a `foreign` one,
 * confirmed with {@linkcode P_CHECK_SCRIPT}).
 *
 * Common ARGV of the scripts that may start an epoch (`P_HEAD`, `P_PUBLISH`, `P_REPLAY`):
 * `ARGV[1]` a new epoch to use if one is needed (6 of `[0-9a-z]`), `ARGV[2]` the bridge's
 * partitions of channels `n` (decimal), `ARGV[3]` `"S"` on a Redis Cluster (shard channels,
 * `SPUBLISH`, and the lineage check by `CLUSTER MYID`) or `""` on a single server (`PUBLISH`).
 * When `meta` records another `n`, they answer the error reply `PARTITIONS <n in Redis>` (the
 * client library rejects with an error whose message is that text) and change nothing.
 *
 * Seqs in replies are decimal strings, except `head` in `P_REPLAY`'s reply (an integer, as in
 * `REPLAY_SCRIPT`); "a flat list of seq, payload" has the seq as a decimal string.
 * @module
 */

import { COMMON, LINEAGE } from "./_scripts.ts";

/**
 * Lua: `partition_epoch(meta, full)`, the partition's epoch after the checks every writing
 * script makes: `nil, <n in Redis>` when `meta` has another partition count (ARGV[2]);
 * otherwise the epoch, a new one (ARGV[1]) when there was none or the lineage rule says the
 * data may have lost its tail. `full` (the HEAD script): the whole rule, run id included. Else
 * only on a Cluster (ARGV[3] `S`), with `CLUSTER MYID` compared to `meta`'s `node`, the rule
 * running only when they differ: a restart of the same node is left to the HEAD script that
 * every (re)connect runs, as in the single-order mode.
 */
const PARTITION_EPOCH = LINEAGE + `
local function partition_epoch(meta, full)
  local m = redis.call('HMGET', meta, 'epoch', 'n', 'node')
  if m[2] and m[2] ~= ARGV[2] then return nil, m[2] end
  local epoch = m[1]
  if full then
    if lineage(meta, node_id()) then epoch = false end
  elseif ARGV[3] == 'S' then
    local node = redis.call('CLUSTER', 'MYID')
    if node ~= m[3] and lineage(meta, node) then epoch = false end
  end
  if not epoch then
    epoch = ARGV[1]
    redis.call('HSET', meta, 'epoch', epoch, 'n', ARGV[2])
  elseif not m[2] then
    redis.call('HSET', meta, 'n', ARGV[2])
  end
  return epoch
end
`;

/**
 * The head of a partition, checked with the whole lineage rule, and a checkpoint to one worker:
 * run at `open()` for every partition, when a partition goes live on a worker, and by every
 * audit. The checkpoint `f2 <k> <epoch> <seq> head` reaches the worker's inbox after every
 * message of the partition published before it; the markers it returns were read in the same
 * atomic step, so "a marker above the worker's `last[c]` and at most `seq`" is an event of `c`
 * the worker must have by the time the checkpoint arrives.
 *
 * KEYS: `meta`, the worker's inbox `h:<worker>`, then zero or more channel markers `l:<ch>`
 * (never `meta`: the broadcast partition needs none).
 * ARGV: new epoch, `n`, `S` or `""` (see the module doc), `k` (the partition, decimal, as written
 * in the checkpoint).
 * Returns `{epoch, seq, marker...}`: `seq` the partition's last seq (`"0"` for none), then per
 * marker key its value `<epoch> <seq>`, or `""` when it does not exist. Error reply
 * `PARTITIONS <n>` on a partition-count mismatch.
 */
export const P_HEAD_SCRIPT: string = PARTITION_EPOCH + `
local meta = KEYS[1]
local epoch, n = partition_epoch(meta, true)
if not epoch then return redis.error_reply('PARTITIONS ' .. n) end
local seq = redis.call('HGET', meta, 'seq') or '0'
local publish = ARGV[3] == 'S' and 'SPUBLISH' or 'PUBLISH'
redis.call(publish, KEYS[2], 'f2 ' .. ARGV[4] .. ' ' .. epoch .. ' ' .. seq .. ' head')
local reply = {epoch, seq}
for i = 3, #KEYS do reply[#reply + 1] = redis.call('GET', KEYS[i]) or '' end
return reply
`;

/**
 * Gives an event the partition's next seq, moves its channel's marker (the old value gives
 * `prev`), writes the heal log (field `c`: the channel), stores it in its channel's stream when
 * history is kept (as `PUBLISH_SCRIPT`: trimmed to `history`, expiring `ttl` ms later, the
 * watermark moved), and publishes `f2 <k> <epoch> <seq> <prev> <payload>` on the channel's shard
 * channel. On a Cluster it compares `CLUSTER MYID` with `meta`'s `node` (about 0.35 us) and runs
 * the lineage rule only when they differ (a slot moved or failed over).
 *
 * KEYS: `meta`, the shard channel `e:<ch>` (`e`), the stream `c:<ch>` (`b`), the marker `l:<ch>`
 * (`meta` for a broadcast: the marker is its `lb` field, written only with history), `w`,
 * `log`.
 * ARGV: new epoch, `n`, `S` or `""` (see the module doc), `k` (decimal, as written in the
 * message), the payload (`encodePayload()`: no caller's id), the channel (`""` for a broadcast:
 * the log's field `c`), history (entries kept, `0` for none), ttl (ms, > 0), healWindow (`0`: no
 * heal log).
 * Returns `{epoch, seq, prev}`, all strings: what the message carries. Error reply
 * `PARTITIONS <n>` on a partition-count mismatch.
 */
export const P_PUBLISH_SCRIPT: string = COMMON + PARTITION_EPOCH + `
local meta, marker = KEYS[1], KEYS[4]
local epoch, n = partition_epoch(meta, false)
if not epoch then return redis.error_reply('PARTITIONS ' .. n) end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local s = string.format('%d', seq)
local ttl = tonumber(ARGV[8])
local life = ttl * 4
local broadcast = marker == meta
-- mark: the marker before this event, '<epoch> <seq>' of the channel's previous event
local mark = false
local prev = '0'
if broadcast then
  -- every event of the broadcast partition is a broadcast
  prev = string.format('%d', seq - 1)
else
  mark = redis.call('SET', marker, epoch .. ' ' .. s, 'PX', life, 'GET')
  if mark then
    local e, m = string.match(mark, '^(%S+) (%d+)$')
    if e == epoch and tonumber(m) < seq then prev = m end
  end
end
local window = tonumber(ARGV[9])
if window > 0 then
  local log = KEYS[6]
  local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
  if top and (top[2][2] ~= epoch or tonumber(string.match(top[1], '^(%d+)')) >= seq) then
    -- left over from an earlier epoch (or a Redis that went back): no one can heal from it
    redis.call('DEL', log)
  end
  redis.call('XADD', log, 'MAXLEN', '~', window, s .. '-0', 'e', epoch, 'c', ARGV[6], 'm', ARGV[5])
  redis.call('PEXPIRE', log, ttl)
end
local history = tonumber(ARGV[7])
if history > 0 then
  local key, w = KEYS[3], KEYS[5]
  local now = clock()
  -- p: the seq of the channel's previous event, from its stream when it has one of this epoch
  local p = nil
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  if last then
    local q = string.match(last[1], '^(%d+)')
    if last[2][2] == epoch and tonumber(q) < seq then
      p = q
    else
      -- left over from an earlier epoch: its events are no one's history any more
      redis.call('DEL', key)
    end
  end
  if p == nil then
    -- No stream of this epoch: new, expired or evicted. Its first entry's p must still cover
    -- every event the channel had, or a replay would read the gone ones as "none".
    if broadcast then mark = redis.call('HGET', meta, 'lb') end
    p = '0'
    if mark then
      local e, m = string.match(mark, '^(%S+) (%d+)$')
      if e == epoch and tonumber(m) < seq then
        p = m
      elseif e == nil or e == epoch then
        -- unreadable, or Redis went back: every seq before this one may be the channel's
        p = string.format('%d', seq - 1)
      end
    elseif not broadcast then
      -- (meta never expires: without lb there was no broadcast in history yet)
      p = string.format('%d', watermark(w, now, seq - 1))
    end
  end
  redis.call('XADD', key, 'MAXLEN', history, s .. '-0', 'e', epoch, 'p', p, 'm', ARGV[5])
  redis.call('PEXPIRE', key, ttl)
  if broadcast then redis.call('HSET', meta, 'lb', epoch .. ' ' .. s) end
  record_watermark(w, now, seq, life, ttl)
end
local publish = ARGV[3] == 'S' and 'SPUBLISH' or 'PUBLISH'
redis.call(publish, KEYS[2], 'f2 ' .. ARGV[4] .. ' ' .. epoch .. ' ' .. s .. ' ' .. prev .. ' ' .. ARGV[5])
return {epoch, s, prev}
`;

/**
 * What a client at a position missed on some channels of one partition, up to `upTo` (the
 * worker's own delivered position: its live feed brings the rest), and the head, in one atomic
 * step. Every stream it reads lives `ttl` ms more, every marker at least four times that. On a
 * Cluster it checks the lineage as `P_PUBLISH` does (a failover shows as another epoch in the
 * reply, and the bridge then reports the partition's channels as gaps).
 *
 * KEYS: `meta`, `w`, then per channel its stream `c:<ch>` and marker `l:<ch>` (the broadcast
 * partition: `b` and `meta`).
 * ARGV: new epoch, `n`, `S` or `""` (see the module doc), the position's epoch (or `""`), its seq
 * (or `""`), `upTo` (the last seq to return, decimal; malformed: the head), ttl (ms).
 * Returns `{epoch, head, 0}` when the position is unknown (another epoch, or past the head),
 * else `{epoch, head, 1, gaps, events}`: `head` an integer, `gaps` the (1-based) channel numbers
 * that lost events after the position (trimmed, expired or never stored: conservative, it may
 * name a channel whose lost events are all past `upTo`), `events` a flat list of seq, payload of
 * the events in `(position, upTo]`, channel by channel in KEYS order, each channel's in seq order
 * (merge by seq across channels). Error reply `PARTITIONS <n>` on a partition-count mismatch.
 */
export const P_REPLAY_SCRIPT: string = COMMON + PARTITION_EPOCH + `
local meta, w = KEYS[1], KEYS[2]
local epoch, n = partition_epoch(meta, false)
if not epoch then return redis.error_reply('PARTITIONS ' .. n) end
local head = tonumber(redis.call('HGET', meta, 'seq') or '0')
local ttl = tonumber(ARGV[7])
local upto = tonumber(ARGV[6]) or head
local after = nil
local position = tonumber(ARGV[5])
if ARGV[4] == epoch and position and position <= head then after = position end
-- firsts[k]: the seq before channel k's oldest stored event; limits[k]: for a channel whose
-- stream is gone, the seq its last event had at most.
local firsts, limits = {}, {}
local channels = (#KEYS - 2) / 2
local below = nil
for k = 1, channels do
  local stream, marker = KEYS[2 * k + 1], KEYS[2 * k + 2]
  firsts[k], limits[k], below = reach(stream, marker, meta, w, epoch, head, ttl, below)
end
if after == nil then return {epoch, head, 0} end
local gaps, events = {}, {}
local from = string.format('%d', after + 1)
local to = string.format('%d', upto)
for k = 1, channels do
  if firsts[k] then
    if firsts[k] > after then gaps[#gaps + 1] = k end
    if upto > after then
      for _, entry in ipairs(redis.call('XRANGE', KEYS[2 * k + 1], from, to)) do
        events[#events + 1] = string.match(entry[1], '^(%d+)')
        events[#events + 1] = entry[2][6]
      end
    end
  elseif limits[k] and limits[k] > after then
    gaps[#gaps + 1] = k
  end
end
return {epoch, head, 1, gaps, events}
`;

/**
 * The events `first` to `last` of an epoch from a partition's heal log, only those of some
 * channels, for a worker whose subscription missed them (a hole on a channel, an audit).
 *
 * KEYS: `meta`, `log`.
 * ARGV: the epoch, first, last (seqs, decimal), then the channels wanted (`""` names
 * broadcasts); none: every entry.
 * Returns `{epoch or "", seq, events, oldest}`: `seq` the partition's last seq, `events` a flat
 * list of seq, payload in seq order (none when the epoch is not the current one), `oldest` an
 * integer, the lowest seq the log holds (`seq + 1` when it holds none): the log has every event
 * of the epoch from `oldest` to `seq`, so `oldest > first` means the range was partly trimmed
 * or expired, and the channels' events there are lost.
 */
export const P_HEAL_SCRIPT: string = `
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
local events = {}
local oldest = tonumber(seq) + 1
if epoch ~= ARGV[1] then return {epoch, seq, events, oldest} end
local bottom = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
if bottom and bottom[2][2] == epoch then oldest = tonumber(string.match(bottom[1], '^(%d+)')) end
local wanted = nil
if #ARGV > 3 then
  wanted = {}
  for i = 4, #ARGV do wanted[ARGV[i]] = true end
end
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], ARGV[2] .. '-0', ARGV[3] .. '-0')) do
  local f = entry[2]
  if f[2] == epoch and (wanted == nil or wanted[f[4]]) then
    events[#events + 1] = string.match(entry[1], '^(%d+)')
    events[#events + 1] = f[6]
  end
end
return {epoch, seq, events, oldest}
`;

/**
 * What Redis says about a message's claim in one partition (as `CHECK_SCRIPT`), so that a
 * message announcing a hole or a new epoch is acted on only when Redis confirms it: the current
 * epoch and seq and, for an event, whether the heal log (or else its stream) holds that seq with
 * that payload.
 *
 * KEYS: `meta`, the event's stream (any stream of the partition for a checkpoint), `log`.
 * ARGV: the claimed epoch, seq, and the event's payload (`""` for a checkpoint).
 * Returns `{epoch or "", seq, stored}`: `seq` a string, `stored` an integer, 1 (the same event),
 * -1 (another event at that seq) or 0 (nothing stored there: no history, trimmed, or a
 * checkpoint).
 */
export const P_CHECK_SCRIPT: string = `
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
local stored = 0
if ARGV[3] ~= '' then
  local id = ARGV[2] .. '-0'
  local entry = redis.call('XRANGE', KEYS[3], id, id)[1]
  if entry then
    if entry[2][2] == ARGV[1] and entry[2][6] == ARGV[3] then stored = 1 else stored = -1 end
    return {epoch, seq, stored}
  end
  entry = redis.call('XRANGE', KEYS[2], id, id)[1]
  if entry then
    if entry[2][2] == ARGV[1] and entry[2][6] == ARGV[3] then stored = 1 else stored = -1 end
  end
end
return {epoch, seq, stored}
`;
