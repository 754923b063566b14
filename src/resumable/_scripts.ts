/**
 * The Lua scripts of the Redis store. Each runs atomically in Redis: that is what makes a
 * second `start` of a running id a no-op on any worker, and what gives every event of a
 * generation one place in one order.
 *
 * Keys of a generation (under the prefix): `<id>:m`, a hash with `t` (the token of its event
 * ids), `s` (the last seq), `b` (bytes of the bodies stored), `st` (`r` running, `e` ended) and
 * `r` (the end reason); `<id>:l`, a stream whose entry ids are `<seq>-0` and whose entries hold
 * `b` (the body) and, on the end marker, `e` (the reason); `<id>:o`, the lease: the id of the
 * instance that runs the producer, with a time to live that it renews. While running, `m` and
 * `l` live `lease + retention` ms after the last append or renewal; once ended, `retention` ms.
 * A running generation whose lease is gone lost its worker: the next read or start ends it
 * with the reason `lost`, so that no reader waits for an end that never comes.
 *
 * Every script that changes a generation publishes on the store's one channel: `a <id>` (events
 * appended), `e <id>` (ended) and `c <id>` (cancelled: the worker running it stops).
 * @module
 */

/** Lua shared by the scripts: stores the end marker. KEYS are always m, l, o. */
const FINISH = `
local function finish(body, reason, retention, channel, id)
  local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
  redis.call('XADD', KEYS[2], seq .. '-0', 'b', body, 'e', reason)
  redis.call('HSET', KEYS[1], 'st', 'e', 'r', reason)
  redis.call('PEXPIRE', KEYS[1], retention)
  redis.call('PEXPIRE', KEYS[2], retention)
  redis.call('DEL', KEYS[3])
  redis.call('PUBLISH', channel, 'e ' .. id)
end
local function reap(lostBody, retention, channel, id)
  if redis.call('HGET', KEYS[1], 'st') == 'r' and redis.call('EXISTS', KEYS[3]) == 0 then
    finish(lostBody, 'lost', retention, channel, id)
  end
end
`;

/**
 * ARGV: token, owner, lease ms, running ttl ms, lost body, retention ms, channel, id.
 * Returns `started`, `running` or `ended`.
 */
export const START = FINISH + `
reap(ARGV[5], ARGV[6], ARGV[7], ARGV[8])
local st = redis.call('HGET', KEYS[1], 'st')
if st == 'r' then return 'running' end
if st == 'e' then return 'ended' end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 't', ARGV[1], 's', 0, 'b', 0, 'st', 'r')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return 'started'
`;

/**
 * ARGV: max events, max bytes, running ttl ms, limit body, retention ms, channel, id, then the
 * bodies. Returns `ok`, `limit` (what fit is stored, then the end marker) or `ended`.
 */
export const APPEND = FINISH + `
if redis.call('HGET', KEYS[1], 'st') ~= 'r' then return 'ended' end
local seq = tonumber(redis.call('HGET', KEYS[1], 's'))
local bytes = tonumber(redis.call('HGET', KEYS[1], 'b'))
local maxEvents, maxBytes = tonumber(ARGV[1]), tonumber(ARGV[2])
local outcome = 'ok'
for i = 8, #ARGV do
  local body = ARGV[i]
  if seq + 1 > maxEvents or bytes + #body > maxBytes then
    outcome = 'limit'
    break
  end
  seq = seq + 1
  bytes = bytes + #body
  redis.call('XADD', KEYS[2], seq .. '-0', 'b', body)
end
redis.call('HSET', KEYS[1], 's', seq, 'b', bytes)
if outcome == 'limit' then
  finish(ARGV[4], 'limit', ARGV[5], ARGV[6], ARGV[7])
  return 'limit'
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[6], 'a ' .. ARGV[7])
return 'ok'
`;

/**
 * ARGV: end body, reason, retention ms, channel, id. Returns 1 when it stored the end marker,
 * 0 when the generation had ended (or is gone). A cancel also publishes `c <id>`.
 */
export const END = FINISH + `
if redis.call('HGET', KEYS[1], 'st') ~= 'r' then return 0 end
finish(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if ARGV[2] == 'cancelled' then redis.call('PUBLISH', ARGV[4], 'c ' .. ARGV[5]) end
return 1
`;

/**
 * ARGV: owner, lease ms, running ttl ms. Returns 1 while this owner holds the lease of a
 * running generation (and extends it), 0 otherwise: the producer must stop.
 */
export const RENEW = `
if redis.call('HGET', KEYS[1], 'st') ~= 'r' or redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
`;

/**
 * ARGV: after seq, count, lost body, retention ms, channel, id. Returns false when the
 * generation is gone, else {token, state, reason, last seq, then seq, body, end for each of the}
 * at most `count` entries after `after` (end is 1 on the end marker, else 0).
 */
export const READ = FINISH + `
reap(ARGV[3], ARGV[4], ARGV[5], ARGV[6])
local meta = redis.call('HMGET', KEYS[1], 't', 'st', 'r', 's')
if not meta[1] then return false end
local out = {meta[1], meta[2], meta[3] or '', meta[4]}
local entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
for _, entry in ipairs(entries) do
  local seq = string.match(entry[1], '^(%d+)-')
  local fields = entry[2]
  local body, ended = '', '0'
  for i = 1, #fields, 2 do
    if fields[i] == 'b' then body = fields[i + 1] end
    if fields[i] == 'e' then ended = '1' end
  end
  out[#out + 1] = seq
  out[#out + 1] = body
  out[#out + 1] = ended
end
return out
`;

/** The SHA-1 of a script in hex, the name `EVALSHA` knows it by. */
export { scriptSha } from "../redis/_adapters.ts";
