/**
 * The Lua scripts of the Redis bridge. Each runs atomically in Redis, which is what gives every
 * event one place in one order, the same on every worker, and lets a replay read history and
 * the head in one step.
 *
 * Keys (under the bridge's prefix): `meta` is a hash with `epoch`, `seq` and `run` (the run id
 * of the Redis server that handed out the current epoch); `events` is the one pub/sub channel;
 * `b` is the broadcast history and `c:<channel>` a channel's, both streams whose entry ids are
 * `<seq>-0` and whose entries hold `e` (epoch), `p` (the seq of the channel's previous event,
 * which is how a trimmed event is noticed), `m` (the payload, see `_message.ts`) and, for an id
 * the caller chose, `i`.
 * @module
 */

/**
 * Makes sure there is an epoch, starts a new one when the Redis server changed (a restart or a
 * failover: ids handed out since its last save could come back), and publishes a checkpoint
 * `f1 <epoch> <seq> head` through which every worker checks that it missed nothing.
 *
 * KEYS: meta, events. ARGV: a new epoch to use if needed.
 */
export const HEAD_SCRIPT = `
local meta = KEYS[1]
local epoch = redis.call('HGET', meta, 'epoch')
local info = redis.pcall('INFO', 'server')
if type(info) == 'string' then
  local run = string.match(info, 'run_id:(%x+)')
  local known = redis.call('HGET', meta, 'run')
  if run and known ~= run then
    if known then epoch = false end
    redis.call('HSET', meta, 'run', run)
  end
end
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch)
end
local seq = redis.call('HGET', meta, 'seq') or '0'
redis.call('PUBLISH', KEYS[2], 'f1 ' .. epoch .. ' ' .. seq .. ' head')
return {epoch, seq}
`;

/**
 * Gives an event the next seq, stores it in its channel's stream when history is kept (trimmed
 * to `history` entries), and publishes it. A new epoch is announced by a checkpoint first:
 * workers take a new epoch only from a checkpoint, so a stray message cannot switch them.
 *
 * KEYS: meta, events, stream. ARGV: a new epoch to use if needed, payload, history, caller's id
 * or "".
 */
export const PUBLISH_SCRIPT = `
local meta = KEYS[1]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch)
  redis.call('PUBLISH', KEYS[2], 'f1 ' .. epoch .. ' ' .. (redis.call('HGET', meta, 'seq') or '0') .. ' head')
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local s = string.format('%d', seq)
local history = tonumber(ARGV[3])
if history > 0 then
  local key = KEYS[3]
  local prev = '0'
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  if last then
    local p = string.match(last[1], '^(%d+)')
    if last[2][2] == epoch and tonumber(p) < seq then
      prev = p
    else
      -- left over from an earlier epoch: its events are no one's history any more
      redis.call('DEL', key)
    end
  end
  if ARGV[4] == '' then
    redis.call('XADD', key, 'MAXLEN', history, s .. '-0', 'e', epoch, 'p', prev, 'm', ARGV[2])
  else
    redis.call('XADD', key, 'MAXLEN', history, s .. '-0', 'e', epoch, 'p', prev, 'm', ARGV[2],
      'i', ARGV[4])
  end
end
redis.call('PUBLISH', KEYS[2], 'f1 ' .. epoch .. ' ' .. s .. ' ' .. ARGV[2])
return {epoch, s}
`;

/**
 * What a client at a position missed on some streams, and the head, in one atomic step.
 *
 * KEYS: meta, then the streams (broadcasts first). ARGV: a new epoch to use if needed, the
 * client's raw id (or "" when too long to look up), the epoch and seq parsed from it (or ""),
 * the channel (where a new epoch is announced).
 * Returns `{epoch, head, 0}` for an unknown position, else `{epoch, head, 1, gaps, events}` with
 * `gaps` the (1-based) stream numbers that lost events after the position and `events` a flat
 * list of seq, payload.
 */
export const REPLAY_SCRIPT = `
local meta = KEYS[1]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch)
  redis.call('PUBLISH', ARGV[5], 'f1 ' .. epoch .. ' ' .. (redis.call('HGET', meta, 'seq') or '0') .. ' head')
end
local head = tonumber(redis.call('HGET', meta, 'seq') or '0')
local after = nil
local position = tonumber(ARGV[4])
if ARGV[3] == epoch and position and position <= head then after = position end
local firsts = {}
for k = 2, #KEYS do
  local first = redis.call('XRANGE', KEYS[k], '-', '+', 'COUNT', 1)[1]
  if first and first[2][2] == epoch then firsts[k] = tonumber(first[2][4]) end
end
if after == nil and ARGV[2] ~= '' then
  -- an id the publisher chose: the newest event that carries it
  for k = 2, #KEYS do
    if firsts[k] then
      for _, entry in ipairs(redis.call('XRANGE', KEYS[k], '-', '+')) do
        local f = entry[2]
        if f[7] == 'i' and f[8] == ARGV[2] then
          local n = tonumber(string.match(entry[1], '^(%d+)'))
          if after == nil or n > after then after = n end
        end
      end
    end
  end
end
if after == nil then return {epoch, head, 0} end
local gaps, events = {}, {}
local from = string.format('%d', after + 1)
for k = 2, #KEYS do
  if firsts[k] then
    if firsts[k] > after then gaps[#gaps + 1] = k - 1 end
    for _, entry in ipairs(redis.call('XRANGE', KEYS[k], from, '+')) do
      events[#events + 1] = string.match(entry[1], '^(%d+)')
      events[#events + 1] = entry[2][6]
    end
  end
end
return {epoch, head, 1, gaps, events}
`;

/**
 * What Redis says about a message's claim, so that a message announcing a hole or a new epoch is
 * acted on only when Redis confirms it: the current epoch and seq and, for an event, whether its
 * stream holds that seq with that payload.
 *
 * KEYS: meta, the event's stream (any stream for a checkpoint). ARGV: the claimed epoch, seq,
 * and the event's payload ("" for a checkpoint).
 * Returns `{epoch or "", seq, stored}` with `stored` 1 (the same event), -1 (another event at
 * that seq) or 0 (nothing stored there: no history kept, or trimmed).
 */
export const CHECK_SCRIPT = `
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
local stored = 0
if ARGV[3] ~= '' then
  local id = ARGV[2] .. '-0'
  local entry = redis.call('XRANGE', KEYS[2], id, id)[1]
  if entry then
    if entry[2][2] == ARGV[1] and entry[2][6] == ARGV[3] then stored = 1 else stored = -1 end
  end
end
return {epoch, seq, stored}
`;

/** The SHA-1 of a script in hex, the name `EVALSHA` knows it by. */
export async function scriptSha(script: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(script));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
