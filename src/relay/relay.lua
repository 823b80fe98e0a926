#!lua name=fsrelay
--[[
flashsale-relay's Redis Functions. The relay loads this library (FUNCTION LOAD REPLACE) on every
connect, next to (never instead of) the server's `flashsale` library. Layout: docs/relay.md.

Per SKU `{L:S}` the relay uses, besides the order stream `fs:{L:S}:orders` (written only by
fs_confirm, never trimmed):
  fs:{L:S}:replay    stream: dead letters sent back for delivery (same fields as an order, plus
                     `order_stream_id` and `replay_of`); entries are deleted once delivered
  fs:{L:S}:delivery  hash: order_id -> "<attempts>|<last_attempt_ms>|<last error>" while an order
                     is being retried; removed when it is delivered or dead-lettered
  fs:{L:S}:dead      stream: orders given up on (the order fields plus `source`, `source_id`,
                     `order_stream_id`, `reason`, `error`, `attempts`, `dead_ms`)
Both streams are read through one consumer group (ARGV group, `relay` by default).

Invariant kept by every function: an entry leaves the group's pending list (XACK) only in the same
call that records where it went (delivered: its retry record is dropped; dead: a dead-letter entry
is appended). An entry that is no longer pending is never dead-lettered twice.
Errors: `ERR fsrelay <function>: <reason>` for malformed calls.
]]

local ORDER_FIELDS = {'order_id', 'reservation_id', 'launch', 'sku', 'user_id', 'qty',
                      'price_cents', 'payment_ref', 'confirmed_at'}

local function fail(fn, why)
    return redis.error_reply('ERR fsrelay ' .. fn .. ': ' .. why)
end

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The consumer that holds `id` in the pending list, or nil when it is not pending.
local function owner(stream, group, id)
    local p = redis.call('XPENDING', stream, group, id, id, 1)
    if #p == 0 then return nil end
    return p[1][2]
end

-- Fields of one stream entry as a table name -> value (nil when the entry is gone).
local function entry(stream, id)
    local r = redis.call('XRANGE', stream, id, id)
    if #r == 0 then return nil end
    local f, t = r[1][2], {}
    for i = 1, #f, 2 do t[f[i]] = f[i + 1] end
    return t
end

-- fs_relay_skus: every SKU of every launch (what the relay follows).
-- KEYS: fs:launches. ARGV: none. Returns a flat array L1, S1, L2, S2, ... (launches sorted).
local function fs_relay_skus(keys, args)
    if #keys ~= 1 then return fail('fs_relay_skus', 'wrong number of keys') end
    local launches = redis.call('SMEMBERS', keys[1])
    table.sort(launches)
    local out = {}
    for _, l in ipairs(launches) do
        for _, s in ipairs(redis.call('LRANGE', 'fs:launch:{' .. l .. '}:skus', 0, -1)) do
            out[#out + 1] = l
            out[#out + 1] = s
        end
    end
    return out
end

-- fs_relay_ack: entries delivered.
-- KEYS: stream, delivery. ARGV: group, is_replay (0/1), then pairs id, order_id.
-- XACKs each entry, drops its retry record and, for the replay stream, deletes the entry.
-- Returns the number of entries that were still pending.
local function fs_relay_ack(keys, args)
    if #keys ~= 2 then return fail('fs_relay_ack', 'wrong number of keys') end
    if #args < 4 or #args % 2 ~= 0 then return fail('fs_relay_ack', 'wrong number of arguments') end
    local group, replay, n = args[1], args[2] == '1', 0
    for i = 3, #args, 2 do
        n = n + redis.call('XACK', keys[1], group, args[i])
        redis.call('HDEL', keys[2], args[i + 1])
        if replay then redis.call('XDEL', keys[1], args[i]) end
    end
    return n
end

-- fs_relay_fail: one failed attempt.
-- KEYS: stream, delivery. ARGV: group, consumer, id, order_id, attempts, error.
-- Returns 'ok' (recorded; the entry's idle time is reset, so it stays with this consumer),
-- 'gone' (not pending any more: delivered or dead-lettered elsewhere; nothing written) or
-- 'lost' (another consumer holds it now; nothing written).
local function fs_relay_fail(keys, args)
    if #keys ~= 2 then return fail('fs_relay_fail', 'wrong number of keys') end
    if #args ~= 6 then return fail('fs_relay_fail', 'wrong number of arguments') end
    local group, consumer, id = args[1], args[2], args[3]
    local who = owner(keys[1], group, id)
    if who == nil then return 'gone' end
    if who ~= consumer then return 'lost' end
    redis.call('HSET', keys[2], args[4], args[5] .. '|' .. now_ms() .. '|' .. args[6])
    redis.call('XCLAIM', keys[1], group, consumer, 0, id, 'JUSTID')
    return 'ok'
end

-- fs_relay_dead: give up on one entry.
-- KEYS: stream, delivery, dead. ARGV: group, id, order_id, source ('orders' or 'replay'),
-- reason, error, attempts.
-- Appends the entry's order fields with the reason to the dead stream, XACKs it, drops its retry
-- record (and deletes it from a replay stream), all at once. Returns the dead-letter id, or
-- 'gone' when the entry was not pending any more (then nothing is written).
local function fs_relay_dead(keys, args)
    if #keys ~= 3 then return fail('fs_relay_dead', 'wrong number of keys') end
    if #args ~= 7 then return fail('fs_relay_dead', 'wrong number of arguments') end
    local group, id, order_id, source = args[1], args[2], args[3], args[4]
    if source ~= 'orders' and source ~= 'replay' then
        return fail('fs_relay_dead', 'source must be orders or replay')
    end
    if owner(keys[1], group, id) == nil then return 'gone' end
    local f = entry(keys[1], id) or {}
    local fields = {}
    for _, name in ipairs(ORDER_FIELDS) do
        if f[name] ~= nil then
            fields[#fields + 1] = name
            fields[#fields + 1] = f[name]
        end
    end
    if f.order_id == nil and order_id ~= '' then
        fields[#fields + 1] = 'order_id'
        fields[#fields + 1] = order_id
    end
    local origin = f.order_stream_id or (source == 'orders' and id) or ''
    local dead_id = redis.call('XADD', keys[3], '*', 'source', source, 'source_id', id,
        'order_stream_id', origin, 'reason', args[5], 'error', args[6], 'attempts', args[7],
        'dead_ms', now_ms(), unpack(fields))
    redis.call('XACK', keys[1], group, id)
    if order_id ~= '' then redis.call('HDEL', keys[2], order_id) end
    if source == 'replay' then redis.call('XDEL', keys[1], id) end
    return dead_id
end

-- fs_relay_replay: send dead letters back for delivery.
-- KEYS: dead, replay. ARGV: 'one', dead_id | 'all', max (1..10000).
-- Moves the dead letter(s) to the replay stream (order fields, `order_stream_id`, `replay_of`)
-- and deletes them from the dead stream. Returns a flat array dead_id1, replay_id1, ...
-- (empty when there was nothing to replay: 'one' with an unknown id answers []).
local function fs_relay_replay(keys, args)
    if #keys ~= 2 then return fail('fs_relay_replay', 'wrong number of keys') end
    if #args ~= 2 then return fail('fs_relay_replay', 'wrong number of arguments') end
    local ids
    if args[1] == 'one' then
        ids = redis.call('XRANGE', keys[1], args[2], args[2])
    elseif args[1] == 'all' then
        local max = tonumber(args[2])
        if not max or max < 1 or max > 10000 or max % 1 ~= 0 then
            return fail('fs_relay_replay', 'max must be an integer from 1 to 10000')
        end
        ids = redis.call('XRANGE', keys[1], '-', '+', 'COUNT', max)
    else
        return fail('fs_relay_replay', 'mode must be one or all')
    end
    local out = {}
    for _, e in ipairs(ids) do
        local f, t = e[2], {}
        for i = 1, #f, 2 do t[f[i]] = f[i + 1] end
        local fields = {}
        for _, name in ipairs(ORDER_FIELDS) do
            if t[name] ~= nil then
                fields[#fields + 1] = name
                fields[#fields + 1] = t[name]
            end
        end
        local rid = redis.call('XADD', keys[2], '*', 'order_stream_id', t.order_stream_id or '',
            'replay_of', e[1], unpack(fields))
        redis.call('XDEL', keys[1], e[1])
        out[#out + 1] = e[1]
        out[#out + 1] = rid
    end
    return out
end

-- fs_relay_touch: heartbeat for the entries a relay holds (in flight or waiting to be retried).
-- KEYS: stream. ARGV: group, consumer, id...
-- Resets the idle time of each entry this consumer still holds, so XAUTOCLAIM of other relays
-- leaves it alone. Returns the ids it does not hold any more (acked, or claimed by another).
local function fs_relay_touch(keys, args)
    if #keys ~= 1 then return fail('fs_relay_touch', 'wrong number of keys') end
    if #args < 3 then return fail('fs_relay_touch', 'wrong number of arguments') end
    local group, consumer, lost, mine = args[1], args[2], {}, {}
    for i = 3, #args do
        if owner(keys[1], group, args[i]) == consumer then
            mine[#mine + 1] = args[i]
        else
            lost[#lost + 1] = args[i]
        end
    end
    if #mine > 0 then
        mine[#mine + 1] = 'JUSTID'
        redis.call('XCLAIM', keys[1], group, consumer, 0, unpack(mine))
    end
    return lost
end

-- fs_relay_lag: how far behind delivery is.
-- KEYS: streams... ARGV: group.
-- Returns [oldest_ms, undelivered, now_ms]: the creation time (ms, from the entry id) of the
-- oldest entry not yet acknowledged (pending or never read) over all the streams, 0 if none; and
-- the number of such entries (pending plus never read).
local function fs_relay_lag(keys, args)
    if #args ~= 1 then return fail('fs_relay_lag', 'wrong number of arguments') end
    local group, oldest, count = args[1], nil, 0
    local function consider(id)
        local ms = tonumber(string.match(id, '^(%d+)-'))
        if ms and (oldest == nil or ms < oldest) then oldest = ms end
    end
    for _, key in ipairs(keys) do
        if redis.call('EXISTS', key) == 1 then
            local last, lag
            for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
                local t = {}
                for i = 1, #g, 2 do t[g[i]] = g[i + 1] end
                if t.name == group then
                    last, lag = t['last-delivered-id'], t['lag']
                end
            end
            if last ~= nil then
                local p = redis.call('XPENDING', key, group)
                if p[1] > 0 then
                    count = count + p[1]
                    consider(p[2])
                end
                local unread = redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', 1)
                if #unread > 0 then
                    consider(unread[1][1])
                    -- Never-read entries: the group's lag when Redis knows it (7.0), else counted
                    -- up to 10000 (the figure is then a lower bound).
                    if type(lag) == 'number' then
                        count = count + lag
                    else
                        count = count + #redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', 10000)
                    end
                end
            end
        end
    end
    return {oldest or 0, count, now_ms()}
end

redis.register_function{function_name = 'fs_relay_skus', callback = fs_relay_skus,
                        flags = {'no-writes'}}
redis.register_function('fs_relay_ack', fs_relay_ack)
redis.register_function('fs_relay_fail', fs_relay_fail)
redis.register_function('fs_relay_dead', fs_relay_dead)
redis.register_function('fs_relay_replay', fs_relay_replay)
redis.register_function('fs_relay_touch', fs_relay_touch)
redis.register_function{function_name = 'fs_relay_lag', callback = fs_relay_lag,
                        flags = {'no-writes'}}
