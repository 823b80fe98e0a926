#!lua name=flashsale_v5
--[[
flashsale: every rule about stock, as one Redis 7.0 Functions library.

The server (flashsale-server) loads this text with FUNCTION LOAD REPLACE and calls the functions
below with FCALL. docs/redis.md is the contract: key layout, arguments and reply formats. In short:

  fs:launches                  set     every launch id
  fs:launches:ver              string  a count fs_launch_put raises: the version of fs_sku_list
  fs:launch:{L}                hash    name state hold_seconds starts_at_ms ends_at_ms created_ms updated_ms
  fs:launch:{L}:skus           list    SKU ids in the order they were added
  fs:{L:S}:sku                 hash    launch sku stock total available held sold per_user_limit
                                       price_cents + copies of state hold_ms starts_at_ms ends_at_ms
  fs:{L:S}:holds               zset    reservation id or group id -> expires_ms, one member per
                                       held reservation or group of held reservations
  fs:{L:S}:held                hash    reservation id -> "qty|created_ms|expires_ms|user", each held
                                       one made by fs_reserve(_plain); group id G ->
                                       "#created_ms|expires_ms" then "\n<i> <user>" per held
                                       one-unit reservation G.<i> of fs_reserve_group (see "Held
                                       reservations")
  fs:{L:S}:users               hash    user -> units held + sold by that user
  fs:{L:S}:r:<rid>             hash    one reservation once it ended (confirmed, cancelled, expired)
  fs:{L:S}:i:<n>:<user>:<key>  string  idempotency record  code|rid|qty|expires_ms|created_ms
  fs:{L:S}:orders              stream  one entry per confirmed order
  fs:wr:{L}, fs:wr:{L}:users   hash    the optional waiting room (fs_wr_pass)

Invariant kept by every function, for every SKU:
  available + held + sold == total, none negative;
  held == sum of qty over the held reservations (single or in a group) of held and holds;
  sold == sum of qty over the entries of orders;
  users[u] == qty of u's held and confirmed reservations.

Conventions:
  * The clock is Redis's TIME (now_ms); the server's clock never decides anything here.
  * Check, then change: every function reads and checks all it needs before its first write, so a
    rule outcome or an error never leaves a half-done change behind.
  * Bad arity, malformed arguments and corrupt data raise an error reply
    "ERR flashsale <function>: <reason>"; rule outcomes are status strings in the reply.
  * Integers are read from ARGV as decimal strings and returned as Redis integers.
]]

local ENDED_TTL_S = 7 * 86400 -- a reservation hash lives this long after it ends
local IDEM_TTL_S = 86400 -- idempotency records live 24 h
local MAX_BATCH = 1000 -- most requests per fs_reserve call and holds per fs_expire call

---------------------------------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------------------------------

-- Raises an error that guard() turns into "ERR flashsale <function>: <msg>".
local function fail(msg)
    error({ fs_msg = msg }, 0)
end

-- Wraps a function so that our own failures come back as clean error replies, and errors raised by
-- redis.call (WRONGTYPE, OOM, ...) pass through unchanged.
local function guard(name, fn)
    return function(keys, args)
        local ok, res = pcall(fn, keys, args)
        if ok then
            return res
        end
        if type(res) == 'table' then
            if res.fs_msg then
                return redis.error_reply('ERR flashsale ' .. name .. ': ' .. res.fs_msg)
            end
            if res.err then
                return redis.error_reply(res.err)
            end
        end
        return redis.error_reply('ERR flashsale ' .. name .. ': ' .. tostring(res))
    end
end

-- A table whose array part already has room for m entries (its contents are junk: callers
-- overwrite what they use and keep their own count). Lua 5.1 has no table.new: a table that grows
-- one entry at a time is rehashed at 1, 2, 4, 8, ... entries, which made an append cost about
-- 480 instructions here, against about 50 for this copy (the rush path fills several tables per
-- request). src: any table; its first m entries (nil past its end) are the junk.
local function presized(src, m)
    return { unpack(src, 1, m) }
end

-- Scratch arrays of the rush path, kept in this library's Lua state between calls: scratch(k, m)
-- is array k (a small integer: each use has its own), with room for m entries and junk contents,
-- as presized's. A call of fs_reserve then allocates few tables, and the garbage collector, which
-- Redis steps after calls, has less to do. (Each is grown to the largest batch seen: at most
-- 2 * MAX_BATCH entries.)
local SCRATCH_FILL = {}
for i = 1, 2 * MAX_BATCH do
    SCRATCH_FILL[i] = false
end
local scratch_t, scratch_cap = {}, {}
local function scratch(k, m)
    if (scratch_cap[k] or -1) < m then
        scratch_t[k], scratch_cap[k] = presized(SCRATCH_FILL, m), m
    end
    return scratch_t[k]
end
local S_USERS, S_USLOT, S_USED, S_USED0, S_ZADD, S_HELD, S_CODES = 1, 2, 3, 4, 5, 6, 7
local S_TAT1, S_TAT2, S_RLSET = 8, 9, 10

-- Returns a memo m of convert: m.get(text) -> convert(text), remembering up to max results (then
-- it starts over). On the rush path the same texts come back again and again (counts, stored
-- times), and tonumber costs ~1,800 instructions here. convert must be a pure function of the
-- text (it may raise; nothing is remembered then). The memo lives in this library's Lua state,
-- between calls. A loop may look texts up in m.known itself and call m.get only on a miss (a
-- Lua call per lookup costs more than the lookup): a table it took before get started over is
-- still right, only emptier.
local function text_memo(max, convert)
    local m = { known = {} }
    local count = 0
    function m.get(x)
        local y = m.known[x]
        if y == nil then
            y = convert(x)
            if count >= max then
                m.known, count = {}, 0
            end
            m.known[x] = y
            count = count + 1
        end
        return y
    end
    return m
end

-- Strict decimal integer (no sign tricks, no hex, no exponent, fits a double exactly).
local function parse_int(s, what)
    if type(s) ~= 'string' or #s > 16 or not string.find(s, '^%-?%d+$') then
        fail('bad integer for ' .. what)
    end
    return tonumber(s)
end

local function parse_nonneg(s, what)
    local v = parse_int(s, what)
    if v < 0 then
        fail(what .. ' must not be negative')
    end
    return v
end

-- Integer read back from data this library wrote; anything else means the data is corrupt.
-- (Cheaper than parse_int: it runs for every field the rush path reads.)
local function stored_int(s, what)
    local v = tonumber(s)
    if not v or v % 1 ~= 0 then
        fail('corrupt data: ' .. what)
    end
    return v
end

local function fmt_int(n)
    return string.format('%d', n)
end

-- The seconds of the last TIME, as text and as a number: calls within one second (most of a
-- rush's) skip one tonumber, which costs as much as a small redis.call's arguments.
local time_s, time_n = nil, 0

-- '000' .. '999': the milliseconds of a time as text.
local MS3 = {}
for i = 0, 999 do
    MS3[i] = i < 10 and '00' .. i or i < 100 and '0' .. i or '' .. i
end

-- Now in ms, as a number and as text (the seconds Redis gave and the milliseconds: no
-- string.format, about 1,300 instructions).
local function now_ms()
    local t = redis.call('TIME')
    if t[1] ~= time_s then
        time_s, time_n = t[1], tonumber(t[1])
    end
    local ms = math.floor(tonumber(t[2]) / 1000)
    return time_n * 1000 + ms, time_s .. MS3[ms]
end

-- The text of integer n (= s * 1000 + ms, ms < 1000): the seconds' text of the last call, or
-- formatted (the expiry times of a second's calls share their seconds).
local last_secs, last_secs_s = nil, nil
local function ms_text(n)
    local ms = n % 1000
    local secs = (n - ms) / 1000
    if secs < 1 then
        return fmt_int(n)
    end
    if secs ~= last_secs then
        last_secs, last_secs_s = secs, fmt_int(secs)
    end
    return last_secs_s .. MS3[ms]
end

-- n of fs_reserve's ARGV (1..MAX_BATCH) by its text: no pattern match and tonumber per call.
local N_OF = {}
for i = 1, MAX_BATCH do
    N_OF['' .. i] = i
end

-- A table the rush path reads as empty where a mode never writes it (instead of a new one).
local EMPTY = {}

-- RFC 3339 UTC with milliseconds from Unix milliseconds, e.g. 2026-11-27T01:02:03.456Z.
-- Civil date from a day count: shift the epoch to 0000-03-01 so that leap days fall at the end of
-- a year, split into 400-year eras (146097 days each), then year-of-era, day-of-year and a month
-- index counted from March (153 days per 5 months).
local function rfc3339_ms(ms)
    local secs = math.floor(ms / 1000)
    local milli = ms - secs * 1000
    local days = math.floor(secs / 86400)
    local sod = secs - days * 86400
    local z = days + 719468 -- days since 0000-03-01
    local era = math.floor(z / 146097)
    local doe = z - era * 146097 -- day of era, 0..146096
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
        - math.floor(doe / 146096)) / 365) -- year of era, 0..399
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100)) -- 0..365
    local mp = math.floor((5 * doy + 2) / 153) -- month from March, 0..11
    local day = doy - math.floor((153 * mp + 2) / 5) + 1
    local month = mp < 10 and mp + 3 or mp - 9
    local year = yoe + era * 400
    if month <= 2 then
        year = year + 1
    end
    return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', year, month, day,
        math.floor(sod / 3600), math.floor(sod / 60) % 60, sod % 60, milli)
end

-- The state the rules use (docs/redis.md, "Effective launch state").
local function effective_state(state, starts_at_ms, ends_at_ms, now)
    if state == 'closed' or (ends_at_ms > 0 and now >= ends_at_ms) then
        return 'closed'
    end
    if state == 'scheduled' and starts_at_ms > 0 and now >= starts_at_ms then
        return 'open'
    end
    return state
end

local STATES = { scheduled = true, open = true, paused = true, closed = true }

-- "fs:{L:S}:sku" -> "fs:{L:S}", the prefix of every key of that SKU.
local function sku_prefix(key)
    local prefix = type(key) == 'string' and string.match(key, '^(fs:{[^{}:]+:[^{}:]+}):sku$')
    if not prefix then
        fail('bad SKU key')
    end
    return prefix
end

-- Tells every server that the stock or state of SKU "fs:{L:S}" changed (units came back, a
-- restock, a state change), so that they drop what they cached about it, e.g. "sold out". The
-- message is "L:S" on channel fs:stock. Pub/sub is best effort: servers re-check on their own too.
local STOCK_CHANNEL = 'fs:stock'
local function announce(prefix)
    redis.call('PUBLISH', STOCK_CHANNEL, string.sub(prefix, 5, -2))
end

local function expect_key(got, want, what)
    if got ~= want then
        fail('bad key for ' .. what)
    end
end

-- Checks that keys[2], keys[3], ... are the SKU's keys named by suffixes (e.g. holds, users, held),
-- in that order, given keys[1] = "fs:{L:S}:sku"; returns the SKU's key prefix "fs:{L:S}".
local function sku_keys(keys, suffixes)
    local prefix = sku_prefix(keys[1])
    for i = 1, #suffixes do
        local what = string.sub(suffixes[i], 1, 2) == 'r:' and 'reservation' or suffixes[i]
        expect_key(keys[i + 1], prefix .. ':' .. suffixes[i], what)
    end
    return prefix
end

-- "fs:launch:{L}" -> "L"
local function launch_id_of(key)
    local id = type(key) == 'string' and string.match(key, '^fs:launch:{([^{}:]+)}$')
    if not id then
        fail('bad launch key')
    end
    return id
end

local function sku_key(launch, sku)
    return 'fs:{' .. launch .. ':' .. sku .. '}:sku'
end

-- Field lists for read_sku: each caller reads only what it uses (the first must be total).
local SKU_COUNTERS = { 'total', 'available', 'held', 'sold' }
local SKU_RESERVE = { 'total', 'available', 'held', 'sold', 'per_user_limit', 'state', 'hold_ms',
    'starts_at_ms', 'ends_at_ms', 'rl_shopper_milli', 'rl_shopper_burst', 'rl_address_milli',
    'rl_address_burst' }
local SKU_CONFIRM = { 'total', 'available', 'held', 'sold', 'price_cents', 'launch', 'sku' }
local SKU_VIEW = { 'total', 'available', 'held', 'sold', 'per_user_limit', 'price_cents' }
local SKU_STRINGS = { state = true, launch = true, sku = true }
-- Fields that may be absent (then 0): the rate limits, off until an operator sets them.
local SKU_OPTIONAL = { rl_shopper_milli = true, rl_shopper_burst = true, rl_address_milli = true,
    rl_address_burst = true }

-- A field of every SKU hash that nothing reads: its value is longer than Redis's default
-- hash-max-listpack-value (64 bytes), which keeps the hash in hashtable encoding. In the listpack
-- encoding Redis gives small hashes, every field read or written scans the list: the 13 fields
-- fs_reserve reads and the 2 it writes cost about 20,000 instructions per batch, 3% of a rush
-- reservation (lua-cost.py). Written whenever a launch is put or changes state, so SKUs created
-- before it existed get it too.
local SKU_ENCODING = { '_encoding',
    'kept longer than hash-max-listpack-value: fields found by hash, not by scanning' }

-- The same for a SKU's held and users hashes and its holds sorted set, without a field that
-- stays: fs_reserve creates them (its first holds after none were held, and with none sold, its
-- first users entries) together with FILLER, longer than hash-max-listpack-value and
-- zset-max-listpack-value, and removes FILLER in the same call. Redis never turns a hash or
-- sorted set back into a listpack, and in one every lookup scans: hash-max-listpack-entries is
-- 512, so the first 512 shoppers of every SKU were each found by a scan of the list (about
-- 170,000 instructions per call near the end of it, lua-cost.py -n 1). No user id, group or
-- reservation id of the server's has a control character, and a call checks its own.
local FILLER = '\0---------------------------------------------------------------------------'
    .. '-' -- 77 bytes

-- HSET key with the field-value pairs h[1..nh]. created: the hash may not exist yet, so FILLER is
-- written with them and removed at once (above); h then needs room for two more entries.
local function hset_large(key, h, nh, created)
    if created then
        h[nh + 1], h[nh + 2] = FILLER, FILLER
        redis.call('HSET', key, unpack(h, 1, nh + 2))
        redis.call('HDEL', key, FILLER)
    else
        redis.call('HSET', key, unpack(h, 1, nh))
    end
end

-- The checks of every SKU read: a known state (if read) and the counter invariant.
local function check_sku(s, key)
    if s.state and not STATES[s.state] then
        fail('corrupt data: state of ' .. key)
    end
    if s.total < 0 or s.available < 0 or s.held < 0 or s.sold < 0
        or s.available + s.held + s.sold ~= s.total then
        fail('corrupt data: counters of ' .. key)
    end
    return s
end

-- Reads the given fields of one SKU hash with a single HMGET and checks the counter invariant.
-- Returns nil when the SKU does not exist; raises on a partial or inconsistent hash.
local function read_sku(key, fields)
    local v = redis.call('HMGET', key, unpack(fields))
    if not v[1] then
        for i = 2, #fields do
            if v[i] then
                fail('corrupt data: SKU hash without total: ' .. key)
            end
        end
        return nil
    end
    local s = {}
    for i = 1, #fields do
        local name, x = fields[i], v[i]
        if not x and SKU_OPTIONAL[name] then
            x = '0'
        elseif not x then
            fail('corrupt data: SKU hash without ' .. name .. ': ' .. key)
        end
        if SKU_STRINGS[name] then
            s[name] = x
        else
            -- stored_int, inline: the message is built only on failure (this runs per batch)
            local num = tonumber(x)
            if not num or num % 1 ~= 0 then
                fail('corrupt data: ' .. name .. ' of ' .. key)
            end
            s[name] = num
        end
    end
    return check_sku(s, key)
end

-- read_sku for fs_reserve (once per batch on the rush path): the same checks, with the table
-- built in one constructor (a table filled field by field is rehashed four times on the way to
-- 13 fields). Turning text into a number (tonumber) costs ~1,800 instructions here, and most
-- fields of a SKU (its limits, times, hold) read the same from batch to batch: each field's last
-- text and number are kept per SKU key (sku_nums, emptied when it reaches SKU_NUMS_MAX SKUs), so
-- only what changed (the counters) is converted again. Same text, same number: nothing stale.
-- fs_reserve also notes the available and held it writes (sku_wrote), so the next call of the
-- same SKU converts neither unless something else wrote them meanwhile.
local SKU_NUMS_MAX = 1000
local sku_nums, sku_nums_n = {}, 0

-- Notes the texts of available and held that fs_reserve wrote to SKU key, with their numbers.
local function sku_wrote(key, av_s, av, held_s, held)
    local c = sku_nums[key]
    if c then
        c.text[2], c.num[2], c.text[3], c.num[3] = av_s, av, held_s, held
    end
end

local function read_sku_reserve(key)
    local v = redis.call('HMGET', key, unpack(SKU_RESERVE))
    if not v[1] then
        return read_sku(key, SKU_RESERVE) -- nil, or the error for a partial hash
    end
    local state = v[6]
    if not state then
        fail('corrupt data: SKU hash without state: ' .. key)
    end
    local c = sku_nums[key]
    if not c then
        if sku_nums_n >= SKU_NUMS_MAX then
            sku_nums, sku_nums_n = {}, 0
        end
        c = { text = {}, num = {} }
        sku_nums[key] = c
        sku_nums_n = sku_nums_n + 1
    end
    local text, num = c.text, c.num
    v[6] = 0 -- state, kept aside: every other field is a number, converted in place
    for i = 1, 13 do
        local x = v[i]
        if x == nil then
            if not SKU_OPTIONAL[SKU_RESERVE[i]] then
                fail('corrupt data: SKU hash without ' .. SKU_RESERVE[i] .. ': ' .. key)
            end
            v[i] = 0
        elseif x == text[i] then
            v[i] = num[i]
        elseif x ~= 0 then
            local y = tonumber(x)
            if not y or y % 1 ~= 0 then
                fail('corrupt data: ' .. SKU_RESERVE[i] .. ' of ' .. key)
            end
            text[i], num[i] = x, y
            v[i] = y
        end
    end
    return check_sku({ total = v[1], available = v[2], held = v[3], sold = v[4],
        per_user_limit = v[5], state = state, hold_ms = v[7], starts_at_ms = v[8],
        ends_at_ms = v[9], rl_shopper_milli = v[10], rl_shopper_burst = v[11],
        rl_address_milli = v[12], rl_address_burst = v[13] }, key)
end

local R_FIELDS = { 'user', 'qty', 'status', 'created_ms', 'expires_ms', 'order_id', 'confirmed_ms',
    'payment_ref', 'price_cents', 'stream_id' }
local R_STATUS = { held = true, confirmed = true, cancelled = true, expired = true }

---------------------------------------------------------------------------------------------------
-- Held reservations. Two layouts live side by side in a SKU's held hash and holds set:
--   single: field and member = the reservation id; value "qty|created_ms|expires_ms|user"
--     (fs_reserve and fs_reserve_plain write these);
--   grouped: field and member = a group id G (no '.'), one per fs_reserve_group call; value
--     "#created_ms|expires_ms" then "\n<i> <user>" for each one-unit hold G.<i> (i the request's
--     place in the call, decimal) still held. fs_reserve_group takes no user id with a newline
--     (the server none with any control character), so "\n<i> " finds an entry. A hold that
--     ends leaves the value; the last one takes the group out of held and holds. One field and
--     one member per call instead of per hold: on a SKU with 100,000 holds (seconds of a rush),
--     the per-hold ZADD and HSET were a third of Redis's time per reservation (cache misses),
--     and a grouped call sends one argument less per request.
-- A reservation id with a '.' is grouped; older ids (base64url) never have one.
---------------------------------------------------------------------------------------------------

-- "qty|created_ms|expires_ms|user" -> reservation (the user comes last: it may contain '|').
local function unpack_held(v, what)
    local qty, created, expires, user = string.match(v, '^(%d+)|(%d+)|(%d+)|(.+)$')
    if not qty then
        fail('corrupt data: ' .. what)
    end
    return { user = user, qty = tonumber(qty), status = 'held', created_ms = tonumber(created),
        expires_ms = tonumber(expires) }
end

-- "\n<i> " for i = 1..MAX_BATCH: the text before each entry of a group.
local GROUP_TAG = {}
for i = 1, MAX_BATCH do
    GROUP_TAG[i] = '\n' .. i .. ' '
end

-- A held group's times, "#created_ms|expires_ms" at the start of its value v, as numbers.
local function group_times(v)
    local created, expires = string.match(v, '^#(%d+)|(%d+)')
    if not created then
        fail('corrupt data: held group')
    end
    return tonumber(created), tonumber(expires)
end

-- The hold G.<i> in group value v, or nil: {user, qty = 1, status = 'held', created_ms,
-- expires_ms} plus what drop_hold needs (the group and where the entry sits in v).
local function group_entry(v, g, i)
    local created, expires = group_times(v)
    local tag = GROUP_TAG[tonumber(i)]
    local a = tag and string.find(v, tag, 1, true)
    if not a then
        return nil
    end
    local e = (string.find(v, '\n', a + 1, true) or #v + 1) - 1
    return { user = string.sub(v, a + #tag, e), qty = 1, status = 'held', created_ms = created,
        expires_ms = expires, group = g, gval = v, from = a, to = e }
end

-- The member of holds (and field of held) that holds reservation rid, read by read_reservation.
local function hold_member(rid, r)
    return r.group or rid
end

-- Takes held reservation r (id rid, as read_reservation read it) out of held and holds.
local function drop_hold(hkey, heldkey, rid, r)
    if not r.group then
        redis.call('ZREM', hkey, rid)
        redis.call('HDEL', heldkey, rid)
        return
    end
    local v = string.sub(r.gval, 1, r.from - 1) .. string.sub(r.gval, r.to + 1)
    if string.find(v, '\n', 1, true) then
        redis.call('HSET', heldkey, r.group, v)
    else
        redis.call('ZREM', hkey, r.group)
        redis.call('HDEL', heldkey, r.group)
    end
end

-- Reads one reservation: a held one from the SKU's held hash (single or in its group), an ended
-- one from its own hash. Returns nil when neither exists.
local function read_reservation(heldkey, rkey, rid)
    local g, i = string.match(rid, '^([^.]+)%.([1-9]%d?%d?%d?)$')
    if g then
        local v = redis.call('HGET', heldkey, g)
        local r = v and group_entry(v, g, i)
        if r then
            return r
        end
    elseif not string.find(rid, '.', 1, true) then
        local h = redis.call('HGET', heldkey, rid)
        if h and string.byte(h, 1) ~= 35 then -- not '#', a group's
            return unpack_held(h, 'held reservation')
        end
    end
    local v = redis.call('HMGET', rkey, unpack(R_FIELDS))
    if not v[1] then
        if v[2] or v[3] then
            fail('corrupt data: reservation without user')
        end
        return nil
    end
    local r = {
        user = v[1],
        qty = stored_int(v[2], 'reservation qty'),
        status = v[3],
        created_ms = stored_int(v[4], 'reservation created_ms'),
        expires_ms = stored_int(v[5], 'reservation expires_ms'),
    }
    if not R_STATUS[r.status] or r.status == 'held' or r.qty < 1 then
        fail('corrupt data: reservation ' .. rkey)
    end
    if r.status == 'confirmed' then
        if not (v[6] and v[8] and v[10]) then
            fail('corrupt data: confirmed reservation without order')
        end
        r.order_id = v[6]
        r.confirmed_ms = stored_int(v[7], 'reservation confirmed_ms')
        r.payment_ref = v[8]
        r.price_cents = stored_int(v[9], 'reservation price_cents')
        r.stream_id = v[10]
    end
    return r
end

-- Writes an ended reservation to its own hash, kept ENDED_TTL_S (drop_hold takes it out of held).
local function write_ended(rkey, r, status, extra)
    redis.call('HSET', rkey, 'user', r.user, 'qty', fmt_int(r.qty), 'status', status,
        'created_ms', fmt_int(r.created_ms), 'expires_ms', fmt_int(r.expires_ms), unpack(extra or {}))
    redis.call('EXPIRE', rkey, ENDED_TTL_S)
end

-- Ends one held reservation (cancelled or expired): its units go back from held to available and
-- off users[user]; it leaves holds; the hash is kept ENDED_TTL_S more. Checks everything first.
local function end_hold(skey, hkey, ukey, heldkey, rkey, rid, r, status)
    local s = read_sku(skey, SKU_COUNTERS)
    if not s then
        fail('corrupt data: reservation of a missing SKU')
    end
    if not redis.call('ZSCORE', hkey, hold_member(rid, r)) then
        fail('corrupt data: held reservation missing from holds')
    end
    local used = tonumber(redis.call('HGET', ukey, r.user) or '0')
    if s.held < r.qty or not used or used < r.qty then
        fail('corrupt data: counters below a held reservation')
    end
    drop_hold(hkey, heldkey, rid, r)
    redis.call('HSET', skey, 'held', fmt_int(s.held - r.qty), 'available',
        fmt_int(s.available + r.qty))
    if used == r.qty then
        redis.call('HDEL', ukey, r.user)
    else
        redis.call('HSET', ukey, r.user, fmt_int(used - r.qty))
    end
    write_ended(rkey, r, status)
    announce(sku_prefix(skey))
end

---------------------------------------------------------------------------------------------------
-- Rate limits: GCRA (the generic cell rate algorithm) per shopper and per client address of a
-- SKU. A limit with rate R/s and burst B admits B requests at once and then one every 1/R s: each
-- key has a theoretical arrival time (TAT); a request at `now` is admitted when
-- max(TAT, now) + T - B*T <= now (T = 1000/R ms), and then TAT becomes max(TAT, now) + T. Refused
-- requests change nothing. TATs live in the hashes fs:{L:S}:rlu (user -> TAT) and fs:{L:S}:rla
-- (address -> TAT), read and written once per batch; each hash expires 1 to 5 s after the latest
-- TAT in it (see rl_store), so idle state disappears by itself.
-- fs_reserve runs the step itself, inline, for every request of the batch: each distinct id of a
-- batch has a slot (its index in the batch's list of distinct ids), and everything per request is
-- array access and arithmetic; hash tables keyed by strings, a closure call or a C call per
-- request cost more than the arithmetic (lua-cost.py measures it).
---------------------------------------------------------------------------------------------------

-- A stored TAT (text) as a number. One batch writes the same text for most of its shoppers (see
-- rl_store), so the texts a batch reads repeat those of a few earlier batches. A text that is not
-- a number counts as 0 (no state), as it always did.
local tat_num = text_memo(10000, function(x)
    return tonumber(x) or 0
end)

-- One limit of a batch: the TATs of its distinct ids list[1..nl] (tat, updated by fs_reserve),
-- and the limit's step t and tolerance tau (ms). Appends to figs the slots whose TAT is ahead of
-- now, as pairs (slot, whole µs ahead, rounded): what a server needs to work out each request's
-- RateLimit figures (docs/redis.md). Returns the limit and the number of pairs. sk: the scratch
-- array for the TATs.
local function rl_load(key, list, nl, milli, burst, now, figs, sk)
    local tat, nf = scratch(sk, nl), #figs
    local n0 = nf
    if nl > 0 then
        local v = redis.call('HMGET', key, unpack(list, 1, nl))
        local known = tat_num.known
        for j = 1, nl do
            local x = v[j]
            if x then
                x = known[x] or tat_num.get(x)
                if x > now then
                    figs[nf + 1], figs[nf + 2] = j, math.floor((x - now) * 1000 + 0.5)
                    nf = nf + 2
                end
            else
                x = 0
            end
            tat[j] = x
        end
    end
    local t = 1000000 / milli -- ms between requests
    return { key = key, list = list, n = nl, tat = tat, milli = milli, burst = burst, t = t,
        tau = t * burst }, (nf - n0) / 2
end

-- The last digit of a TAT's text, by its tenths of a ms.
local TENTHS = { [0] = '.0', '.1', '.2', '.3', '.4', '.5', '.6', '.7', '.8', '.9' }

-- A rate-limit hash lives 1 s to RL_TTL_SLACK_MS past the latest TAT in it. rl_ttl_until
-- remembers, in this library's Lua state, until when each hash surely lives, and a batch sets a
-- TTL only when its latest TAT + 1 s is past that: a PEXPIRE per hash and call was 2% of a
-- rate-limited reservation. (A hash deleted and written again meanwhile gets its TTL at most
-- RL_TTL_SLACK_MS late.)
local RL_TTL_SLACK_MS = 5000
local RL_TTL_KEYS_MAX = 10000
local rl_ttl_until, rl_ttl_n = {}, 0

-- Writes the TATs of limit l that are ahead of now (those of this batch's admitted requests, and
-- any other, unchanged). Each is rounded up to 0.1 ms (never admits more than the rate) and written
-- as text, "%.1f" of it, built from an integer: string.format('%.1f') cost about 6,000
-- instructions. Most TATs of a batch are the same number (a shopper whose TAT had passed gets
-- now + T), so each distinct value is turned into text once per batch. The hash's TTL only ever
-- grows (NX, then GT): a batch of TATs close to now must not shorten the life of another id's
-- TAT far ahead.
local function rl_store(l, now)
    local list, tat, nl = l.list, l.tat, l.n
    local h, nh, latest, text = scratch(S_RLSET, 2 * nl + 2), 0, now, {}
    local mceil = math.ceil
    for j = 1, nl do
        local x = tat[j]
        if x > now then
            local s = text[x]
            if not s then
                local d = mceil(x * 10)
                s = fmt_int((d - d % 10) / 10) .. TENTHS[d % 10]
                text[x] = s
            end
            h[nh + 1], h[nh + 2] = list[j], s
            nh = nh + 2
            if x > latest then latest = x end
        end
    end
    if nh > 0 then
        local key = l.key
        -- Not known to live (new, expired, or a fresh library state): made or kept in its large
        -- encoding (see FILLER).
        local known = rl_ttl_until[key]
        local fresh = not known or known <= now
        for j = 1, fresh and nl or 0 do
            if list[j] == FILLER then fresh = false end
        end
        hset_large(key, h, nh, fresh)
        if (known or 0) < latest + 1000 then
            local ttl = mceil(latest - now) + RL_TTL_SLACK_MS
            local ttl_s = fmt_int(ttl)
            if redis.call('PEXPIRE', key, ttl_s, 'NX') == 0 then
                redis.call('PEXPIRE', key, ttl_s, 'GT')
            end
            if rl_ttl_n >= RL_TTL_KEYS_MAX then
                rl_ttl_until, rl_ttl_n = {}, 0
            end
            if not rl_ttl_until[key] then rl_ttl_n = rl_ttl_n + 1 end
            rl_ttl_until[key] = now + ttl
        end
    end
end

-- The distinct client addresses of a batch (request i's is args[S*i + A], S the fields per
-- request; '' = none, the limit does not apply): returns their list, its length and each
-- request's slot (false: none). Most batches come from few addresses, often one after another (a
-- storefront's own): a request with the address of the one before takes its slot without a
-- table lookup.
local function address_slots(args, n, S, A)
    local pos, list, slot = {}, presized(args, n), presized(args, n)
    local nl, last, lastj = 0, nil, false
    for i = 1, n do
        local a = args[S * i + A]
        if a ~= last then
            last = a
            if a == '' then
                lastj = false
            else
                lastj = pos[a]
                if not lastj then
                    nl = nl + 1
                    lastj = nl
                    list[nl] = a
                    pos[a] = nl
                end
            end
        end
        slot[i] = lastj
    end
    return list, nl, slot
end

---------------------------------------------------------------------------------------------------
-- fs_reserve: decide a batch of reservations for one SKU, in order (the rush path).
--   KEYS: fs:{L:S}:sku, fs:{L:S}:holds, fs:{L:S}:users, fs:{L:S}:held, fs:{L:S}:rlu,
--         fs:{L:S}:rla, then, for each request i whose has_idem_i is 1 (in order), its
--         idempotency key fs:{L:S}:i:...
--   ARGV: n (1..1000), then per request rid_i (fresh, unique; without '|' where has_idem_i is
--         1), user_i, qty_i (>= 1), has_idem_i (0/1), addr_i
--   Returns {codes, created_ms, expires_ms, figures, available, replay...} (docs/redis.md), one
--     small reply per batch instead of six elements per request (encoding those was a large part
--     of the cost):
--     codes: one letter per request: o ok, s sold_out, l limit_exceeded, n launch_not_open,
--       f not_found, r rate_limited, p replayed; an o request holds its own rid and qty from
--       created_ms to expires_ms;
--     figures: {} with rate limits off, else integers milli1 burst1 milli2 burst2 (shopper,
--       address; 0 0: off), k1 k2, then k1 pairs (slot, µs) for the shopper limit and k2 for the
--       address limit: each slot whose TAT before the batch was ahead of now, and by how many
--       µs (rounded). Slots number the distinct shoppers (addresses, '' left out) of the batch
--       in order of first appearance, from 1; every other slot's TAT was now or earlier. With
--       the codes, that is all a server needs to take each request's GCRA steps again and work
--       out its RateLimit figures (docs/redis.md), so that Redis works out none per request;
--     available: units left after the batch (servers answer sold_out at once to requests beyond
--       it; -1: no such SKU);
--     replay: for each p in order, {code, rid, qty, expires_ms, created_ms}, the stored first
--       answer for its idempotency key.
--   Invariant: each ok moves qty from available to held, adds one member to holds and to held
--     (fs_reserve_group: an entry in the call's group) and qty to users[user]; checks run per
--     request against the running values, and everything is written once at the end of the
--     batch (one HSET/ZADD per key, whatever n is), so no counter goes negative and
--     held == sum(holds).
-- fs_reserve_plain: the same for a batch where every request is for one unit and has no
--   idempotency key (the rush's usual batch): KEYS the first six above; ARGV n, then per request
--   rid_i, user_i, addr_i; the same checks and reply. Each argument of an FCALL costs Redis about
--   900 instructions: the two constant ones were 3 to 4% of a reservation (lua-cost.py).
-- fs_reserve_group: the same batch with grouped holds (see "Held reservations"): ARGV n, group
--   (a fresh id without '.'), then either '*' and per request user_i,
--   addr_i, or the address of every request (often one: a storefront's own) and per request
--   user_i; users without a newline. Request i's reservation id is group.i; the call's holds are
--   one member of holds and one field of held, written with HSETNX first: a group id that is
--   already held is an error and changes nothing.
---------------------------------------------------------------------------------------------------
local CODE_LETTER = { ok = 'o', sold_out = 's', limit_exceeded = 'l', launch_not_open = 'n',
    not_found = 'f', rate_limited = 'r' }

-- An idempotency record "code|rid|qty|expires_ms|created_ms" -> {code, rid, qty, expires_ms,
-- created_ms}, the first answer to replay.
local function unpack_idem(rec)
    local code, r, q, exp, created = string.match(rec, '^([a-z_]+)|([^|]*)|(%d+)|(%d+)|(%d+)$')
    if not code or not CODE_LETTER[code] then
        fail('corrupt data: idempotency record')
    end
    return { code, r, tonumber(q), tonumber(exp), tonumber(created) }
end

-- fs_reserve's key lists already checked, by SKU key: {prefix, keys[2..6]}. Checking them costs
-- five string concatenations, a good share of a small batch; a launch has a handful of SKUs.
-- (Kept between calls, in this library's Lua state; emptied when it reaches RESERVE_KEYS_MAX.)
local RESERVE_SUFFIXES = { 'holds', 'users', 'held', 'rlu', 'rla' }
local RESERVE_KEYS_MAX = 1000
local reserve_keys, reserve_keys_n = {}, 0

local function reserve_prefix(keys)
    local c = reserve_keys[keys[1]]
    if c and c[2] == keys[2] and c[3] == keys[3] and c[4] == keys[4] and c[5] == keys[5]
        and c[6] == keys[6] then
        return c[1]
    end
    local prefix = sku_keys(keys, RESERVE_SUFFIXES)
    if reserve_keys_n >= RESERVE_KEYS_MAX then
        reserve_keys, reserve_keys_n = {}, 0
    end
    reserve_keys[keys[1]] = { prefix, keys[2], keys[3], keys[4], keys[5], keys[6] }
    reserve_keys_n = reserve_keys_n + 1
    return prefix
end

-- A users entry (text) as a number: small counts, the same few values over and over.
local user_count = text_memo(10000, function(x)
    local y = stored_int(x, 'users entry')
    if y < 0 then
        fail('corrupt data: negative users entry')
    end
    return y
end)

-- A users count as text (string.format costs about 1,000 instructions; counts repeat).
local COUNT_TEXT_MAX = 10000
local count_texts = {}
local function count_text(c)
    local s = count_texts[c]
    if not s then
        s = fmt_int(c)
        if c <= COUNT_TEXT_MAX then
            count_texts[c] = s
        end
    end
    return s
end

-- fs_reserve (mode 'full'), fs_reserve_plain ('plain') and fs_reserve_group ('group').
local function reserve(keys, args, mode)
    local n = N_OF[args[1]] or parse_int(args[1], 'n')
    if n < 1 or n > MAX_BATCH then
        fail('wrong number of arguments')
    end
    -- S fields per request, after O arguments; request i's user is args[S*i + U], its rid the
    -- argument before (not grouped), its address args[S*i + A] or, grouped with one address
    -- for all, `shared`. Full: rid user qty has_idem addr; plain: rid user addr; grouped: n, group,
    -- then '*' and user addr per request, or the shared address and a user per request.
    local grouped, full = mode == 'group', mode == 'full'
    local S, U, A, O, shared = 5, -2, 1, 1, nil
    if mode == 'plain' then
        S, U = 3, 0
    elseif grouped then
        O = 3
        if args[3] == '*' then
            S, U, A = 2, 2, 3
        else
            S, U, A, shared = 1, 3, nil, args[3]
        end
    end
    if #args ~= O + S * n then
        fail('wrong number of arguments')
    end
    local group = grouped and args[2]
    if grouped and (group == '' or string.find(group, '.', 1, true)) then
        fail('bad group id')
    end
    if #keys < 6 then
        fail('wrong number of keys')
    end
    local prefix = reserve_prefix(keys)

    -- Parse and check the whole batch before anything is read or written. Request i's fields
    -- stay where they are (above). Only what differs from the usual case is noted (qty other
    -- than 1, an idempotency key): on the rush path, storing every field in tables cost more
    -- than all the checks. Each distinct shopper gets a slot (users[1..nu] in order of first
    -- appearance; uslot[i] is request i's): counts and TATs are then kept in arrays by slot.
    -- (Tables a mode never writes are EMPTY.)
    local qty_of, ikey, nidem = full and {} or EMPTY, full and {} or EMPTY, 0
    local k, seen, iprefix = 7, grouped and EMPTY or {}, nil
    local upos, users, uslot, nu = {}, scratch(S_USERS, n), scratch(S_USLOT, n), 0
    for i = 1, n do
        local b = S * i + U
        local u, r, qs, has = args[b], true, '1', '0'
        if not grouped then
            r = args[b - 1]
            if full then
                qs, has = args[b + 1], args[b + 2]
            end
        end
        if qs ~= '1' then
            local q = parse_int(qs, 'qty')
            if q < 1 then
                fail('qty must be at least 1')
            end
            qty_of[i] = q
        end
        if not grouped then
            if r == '' then
                fail('bad reservation id')
            end
            if seen[r] then
                fail('duplicate reservation id')
            end
            seen[r] = true
        end
        if u == '' then
            fail('empty user')
        end
        local j = upos[u]
        if not j then
            if grouped and string.find(u, '\n', 1, true) then
                fail('newline in user') -- it would end the user's entry in the group
            end
            nu = nu + 1
            j = nu
            users[nu] = u
            upos[u] = nu
        end
        uslot[i] = j
        if has == '1' then
            -- The id goes into the idempotency record, whose fields '|' separates.
            if string.find(r, '|', 1, true) then
                fail('bad reservation id')
            end
            iprefix = iprefix or prefix .. ':i:'
            local key = keys[k]
            if type(key) ~= 'string' or string.sub(key, 1, #iprefix) ~= iprefix then
                fail('bad key for idempotency record')
            end
            ikey[i] = key
            nidem = nidem + 1
            k = k + 1
        elseif has ~= '0' then
            fail('has_idem must be 0 or 1')
        end
    end
    if k - 1 ~= #keys then
        fail('wrong number of keys')
    end

    local s = read_sku_reserve(keys[1])
    if not s then
        return { string.rep('f', n), 0, 0, {}, -1 }
    end
    local now, now_s = now_ms()
    local open = effective_state(s.state, s.starts_at_ms, s.ends_at_ms, now) == 'open'

    -- Rate limits (see above): l1 per shopper (by user slot), l2 per address (by address slot).
    local l1, l2, aslot, aone -- aone: every request's address slot when they share one
    local on1 = s.rl_shopper_milli > 0 and s.rl_shopper_burst > 0
    local on2 = s.rl_address_milli > 0 and s.rl_address_burst > 0
    local limited = on1 or on2
    local figs = {} -- the reply's figures (see above)
    if limited then
        figs = { on1 and s.rl_shopper_milli or 0, on1 and s.rl_shopper_burst or 0,
            on2 and s.rl_address_milli or 0, on2 and s.rl_address_burst or 0, 0, 0 }
    end
    if on1 then
        l1, figs[5] = rl_load(keys[5], users, nu, s.rl_shopper_milli, s.rl_shopper_burst, now, figs,
            S_TAT1)
    end
    if on2 then
        local alist, na = {}, 0
        if shared then
            if shared ~= '' then
                alist, na, aone = { shared }, 1, 1
            end
        else
            alist, na, aslot = address_slots(args, n, S, A)
        end
        l2, figs[6] = rl_load(keys[6], alist, na, s.rl_address_milli, s.rl_address_burst, now,
            figs, S_TAT2)
    end
    local t1, tau1, tat1 = 0, 0, nil
    local t2, tau2, tat2 = 0, 0, nil
    if l1 then t1, tau1, tat1 = l1.t, l1.tau, l1.tat end
    if l2 then t2, tau2, tat2 = l2.t, l2.tau, l2.tat end

    -- Units each shopper of the batch already holds or bought, by slot (used), as read (used0):
    -- one HMGET of the batch's distinct shoppers.
    local used, used0 = scratch(S_USED, nu), scratch(S_USED0, nu)
    if open then
        local v = redis.call('HMGET', keys[3], unpack(users, 1, nu))
        local known = user_count.known
        for j = 1, nu do
            local x = v[j]
            if x then
                x = known[x] or user_count.get(x)
            else
                x = 0
            end
            used[j], used0[j] = x, x
        end
    end

    -- Earlier answers, all read before the first write: a stored idempotency record is answered
    -- again (p) and takes no stock. (Reservation ids are 128 random bits chosen by the server for
    -- each request and never sent twice, so they are not looked up.)
    local idem = nidem > 0
    local replay = idem and {} or EMPTY
    if idem then
        for i = 1, n do
            local key = ikey[i]
            if key then
                local rec = redis.call('GET', key)
                if rec then
                    replay[i] = unpack_idem(rec)
                end
            end
        end
    end

    local available, held = s.available, s.held
    local limit = s.per_user_limit
    local expires = now + s.hold_ms
    local expires_s = ms_text(expires)
    -- zadd and hset_held get 2 entries per ok (nz: entries so far; grouped, hset_held gets the
    -- group's value in pieces and zadd nothing); the users HSET reuses hset_held afterwards
    -- (2 per shopper, and FILLER's 2)
    local zadd, hset_held, nz = scratch(S_ZADD, 2 * n), scratch(S_HELD, 2 * n + 2), 0
    if grouped then
        hset_held[1] = '#' .. now_s .. '|' .. expires_s
    end
    -- the middle of a single held record
    local times = not grouped and '|' .. now_s .. '|' .. expires_s .. '|'
    -- idempotency key -> the answer stored by an earlier request of this batch
    local written = idem and {} or EMPTY
    local codes, out = scratch(S_CODES, n), { '', now, expires, figs, 0 }
    for i = 1, n do
        local j = uslot[i]
        local key = idem and ikey[i]
        local first = key and (written[key] or replay[i])
        local admit = true
        if first then
            codes[i] = 'p'
            out[#out + 1] = first
            admit = false
        elseif limited then
            -- The GCRA step of each limit, written out for each: a Lua call per request and
            -- limit cost 3% of a reservation (lua-cost.py).
            local n1, n2 = 0, 0
            local j2 = aone or aslot and aslot[i]
            local ok = true
            if l1 then
                n1 = tat1[j]
                if n1 < now then n1 = now end
                n1 = n1 + t1
                ok = n1 - now <= tau1
            end
            if j2 then
                n2 = tat2[j2]
                if n2 < now then n2 = now end
                n2 = n2 + t2
                ok = ok and n2 - now <= tau2
            end
            if ok then
                if l1 then tat1[j] = n1 end
                if j2 then tat2[j2] = n2 end
            else
                codes[i] = 'r'
                admit = false
            end
        end
        if admit then
            local q, c = full and qty_of[i] or 1, nil
            -- Stock before the limit: "sold out" needs nothing but the SKU's counters, so servers
            -- can answer it from memory once a SKU is empty, with the same answer Redis gives.
            if not open then
                c = 'n'
            elseif available < q then
                c = 's'
            elseif used[j] + q > limit then
                c = 'l'
            else
                c = 'o'
                available = available - q
                held = held + q
                used[j] = used[j] + q
                if grouped then
                    hset_held[nz + 2], hset_held[nz + 3] = GROUP_TAG[i], users[j]
                else
                    local r = args[S * i + U - 1]
                    zadd[nz + 1], zadd[nz + 2] = expires_s, r
                    hset_held[nz + 1] = r
                    hset_held[nz + 2] = (q == 1 and '1' or fmt_int(q)) .. times .. users[j]
                end
                nz = nz + 2
            end
            codes[i] = c
            -- launch_not_open is not stored: a retry after the launch opens is a new attempt.
            if key and c ~= 'n' then
                local rec, ans
                if c == 'o' then
                    local r = args[S * i + U - 1]
                    rec = 'ok|' .. r .. '|' .. fmt_int(q) .. '|' .. expires_s .. '|' .. now_s
                    ans = { 'ok', r, q, expires, now }
                else
                    local code = c == 's' and 'sold_out' or 'limit_exceeded'
                    rec = code .. '||0|0|0'
                    ans = { code, '', 0, 0, 0 }
                end
                redis.call('SET', key, rec, 'EX', IDEM_TTL_S)
                written[key] = ans
            end
        end
    end

    if nz > 0 then
        if grouped then
            local v = table.concat(hset_held, '', 1, nz + 1)
            if redis.call('HSETNX', keys[4], group, v) == 0 then
                fail('group id already held')
            end
            redis.call('ZADD', keys[2], expires_s, group)
        else
            redis.call('ZADD', keys[2], unpack(zadd, 1, nz))
            redis.call('HSET', keys[4], unpack(hset_held, 1, nz))
        end
        -- Created just now (nothing was held): in their large encodings (see FILLER).
        if s.held == 0 and not seen[FILLER] and group ~= FILLER then
            redis.call('HSET', keys[4], FILLER, FILLER)
            redis.call('HDEL', keys[4], FILLER)
            redis.call('ZADD', keys[2], 0, FILLER)
            redis.call('ZREM', keys[2], FILLER)
        end
        local av_s, held_s = fmt_int(available), fmt_int(held)
        redis.call('HSET', keys[1], 'available', av_s, 'held', held_s)
        sku_wrote(keys[1], av_s, available, held_s, held)
        -- Each shopper whose count changed, once, with the final count (hset_held is done with:
        -- reused).
        local hset, nh = hset_held, 0
        for j = 1, nu do
            local c = used[j]
            if c ~= used0[j] then
                hset[nh + 1], hset[nh + 2] = users[j], count_text(c)
                nh = nh + 2
            end
        end
        hset_large(keys[3], hset, nh, s.held + s.sold == 0 and not upos[FILLER])
    end
    if l1 then rl_store(l1, now) end
    if l2 then rl_store(l2, now) end
    out[1] = table.concat(codes, '', 1, n)
    out[5] = available
    return out
end

---------------------------------------------------------------------------------------------------
-- fs_confirm: turn a hold into an order.
--   KEYS: fs:{L:S}:sku, fs:{L:S}:holds, fs:{L:S}:users, fs:{L:S}:held, fs:{L:S}:r:<rid>,
--         fs:{L:S}:orders
--   ARGV: rid, user, order_id (used only if this call confirms), payment_ref (may be empty)
--   Returns {code, order_id, qty, confirmed_ms, price_cents, payment_ref, stream_id}; code is
--     confirmed (a repeat returns the first order unchanged), not_found, reservation_expired or
--     reservation_cancelled; the other fields are ""/0 unless confirmed.
--   Invariant: a confirm moves qty from held to sold, removes the hold and appends exactly one
--     order entry in the same call (sold == sum of qty in orders). A hold past expires_ms is
--     expired here, exactly as the sweeper would, and never confirmed.
---------------------------------------------------------------------------------------------------
local function fs_confirm(keys, args)
    if #keys ~= 6 or #args ~= 4 then
        fail('wrong number of arguments')
    end
    local rid, user, order_id, payment_ref = args[1], args[2], args[3], args[4]
    local prefix = sku_keys(keys, { 'holds', 'users', 'held', 'r:' .. rid, 'orders' })
    if order_id == '' then
        fail('empty order_id')
    end

    local function answer(code)
        return { code, '', 0, 0, 0, '', '' }
    end
    local r = read_reservation(keys[4], keys[5], rid)
    if not r or r.user ~= user then
        return answer('not_found')
    end
    if r.status == 'confirmed' then
        return { 'confirmed', r.order_id, r.qty, r.confirmed_ms, r.price_cents, r.payment_ref,
            r.stream_id }
    elseif r.status == 'cancelled' then
        return answer('reservation_cancelled')
    elseif r.status == 'expired' then
        return answer('reservation_expired')
    end

    local now = now_ms()
    if now >= r.expires_ms then
        end_hold(keys[1], keys[2], keys[3], keys[4], keys[5], rid, r, 'expired')
        return answer('reservation_expired')
    end

    local s = read_sku(keys[1], SKU_CONFIRM)
    if not s then
        fail('corrupt data: reservation of a missing SKU')
    end
    if s.held < r.qty or not redis.call('ZSCORE', keys[2], hold_member(rid, r)) then
        fail('corrupt data: held reservation not counted in held/holds')
    end
    local qty, price = fmt_int(r.qty), fmt_int(s.price_cents)
    drop_hold(keys[2], keys[4], rid, r)
    redis.call('HSET', keys[1], 'held', fmt_int(s.held - r.qty), 'sold', fmt_int(s.sold + r.qty))
    local stream_id = redis.call('XADD', keys[6], '*', 'order_id', order_id, 'reservation_id', rid,
        'launch', s.launch, 'sku', s.sku, 'user_id', user, 'qty', qty, 'price_cents', price,
        'payment_ref', payment_ref, 'confirmed_at', rfc3339_ms(now))
    write_ended(keys[5], r, 'confirmed', { 'order_id', order_id, 'confirmed_ms',
        fmt_int(now), 'payment_ref', payment_ref, 'price_cents', price, 'stream_id', stream_id })
    return { 'confirmed', order_id, r.qty, now, s.price_cents, payment_ref, stream_id }
end

---------------------------------------------------------------------------------------------------
-- fs_cancel: give a hold back.
--   KEYS: fs:{L:S}:sku, fs:{L:S}:holds, fs:{L:S}:users, fs:{L:S}:held, fs:{L:S}:r:<rid>
--   ARGV: rid, user
--   Returns {code}: cancelled (also when it already was), not_found, reservation_confirmed,
--     reservation_expired (also for a hold past expires_ms, which this call expires).
--   Invariant: qty moves from held back to available and off users[user]; the hold leaves holds.
---------------------------------------------------------------------------------------------------
local function fs_cancel(keys, args)
    if #keys ~= 5 or #args ~= 2 then
        fail('wrong number of arguments')
    end
    local rid, user = args[1], args[2]
    sku_keys(keys, { 'holds', 'users', 'held', 'r:' .. rid })

    local r = read_reservation(keys[4], keys[5], rid)
    if not r or r.user ~= user then
        return { 'not_found' }
    end
    if r.status == 'cancelled' then
        return { 'cancelled' }
    elseif r.status == 'confirmed' then
        return { 'reservation_confirmed' }
    elseif r.status == 'expired' then
        return { 'reservation_expired' }
    end
    if now_ms() >= r.expires_ms then
        end_hold(keys[1], keys[2], keys[3], keys[4], keys[5], rid, r, 'expired')
        return { 'reservation_expired' }
    end
    end_hold(keys[1], keys[2], keys[3], keys[4], keys[5], rid, r, 'cancelled')
    return { 'cancelled' }
end

---------------------------------------------------------------------------------------------------
-- fs_get_reservation (read-only).
--   KEYS: fs:{L:S}:held, fs:{L:S}:r:<rid>   ARGV: rid, user
--   Returns {code, qty, status, created_ms, expires_ms, order_id, confirmed_ms, payment_ref};
--     code is ok or not_found (also for another user's reservation; then the rest is ""/0).
--     status reads expired for a hold past expires_ms that the sweeper has not reached yet.
--   Invariant: changes nothing.
---------------------------------------------------------------------------------------------------
local function fs_get_reservation(keys, args)
    if #keys ~= 2 or #args ~= 2 then
        fail('wrong number of arguments')
    end
    local held_key = keys[1]
    local prefix = type(held_key) == 'string' and string.match(held_key, '^(fs:{[^{}:]+:[^{}:]+}):held$')
    if not prefix then
        fail('bad key for held')
    end
    expect_key(keys[2], prefix .. ':r:' .. args[1], 'reservation')
    local r = read_reservation(keys[1], keys[2], args[1])
    if not r or r.user ~= args[2] then
        return { 'not_found', 0, '', 0, 0, '', 0, '' }
    end
    local status = r.status
    if status == 'held' and now_ms() >= r.expires_ms then
        status = 'expired'
    end
    return { 'ok', r.qty, status, r.created_ms, r.expires_ms, r.order_id or '',
        r.confirmed_ms or 0, r.payment_ref or '' }
end

---------------------------------------------------------------------------------------------------
-- fs_expire: the sweeper.
--   KEYS: fs:{L:S}:sku, fs:{L:S}:holds, fs:{L:S}:users, fs:{L:S}:held   ARGV: max (1..1000)
--   Expires the holds with expires_ms <= now_ms: due members of holds in order while fewer than
--     max holds are taken, a group with all its holds (so up to max - 1 + 1000).
--   Returns {expired, wait_ms}: the number of holds expired, and how long nothing more can come
--     due: 0 when expired is max or more (more may be due), else the time to the earliest hold
--     left, at most the SKU's hold_ms (a hold made now is due that late); -1 if the SKU does not
--     exist. A sweeper calls the SKU again once the wait has passed (or the launch's hold time
--     fell: fs_sku_list), not at every tick: with nothing due, a SKU costs Redis one call per
--     hold time per server instead of one per tick.
--   Invariant: each expired hold leaves holds in the same call that returns its qty from held to
--     available and takes it off users[user], so concurrent sweepers return a unit exactly once.
---------------------------------------------------------------------------------------------------
-- fs_expire's wait: ms from now until the SKU's next hold can be due (see above).
local function expire_wait(keys, now)
    local hold = redis.call('HGET', keys[1], 'hold_ms')
    if not hold then
        return -1
    end
    local wait = stored_int(hold, 'hold_ms')
    local first = redis.call('ZRANGE', keys[2], 0, 0, 'WITHSCORES')
    if first[2] then
        local at = tonumber(first[2]) - now
        if at < wait then wait = at end
    end
    if wait < 0 then wait = 0 end
    return wait
end

local function fs_expire(keys, args)
    if #keys ~= 4 or #args ~= 1 then
        fail('wrong number of arguments')
    end
    local max = parse_int(args[1], 'max')
    if max < 1 or max > MAX_BATCH then
        fail('max must be 1..1000')
    end
    local prefix = sku_keys(keys, { 'holds', 'users', 'held' })

    local now = now_ms()
    local due = redis.call('ZRANGEBYSCORE', keys[2], '-inf', fmt_int(now), 'LIMIT', 0, max)
    if #due == 0 then
        return { 0, expire_wait(keys, now) }
    end
    local s = read_sku(keys[1], SKU_COUNTERS)
    if not s then
        fail('corrupt data: holds of a missing SKU')
    end

    -- Read and check every due hold before changing anything: members (single holds or groups)
    -- are taken in order while fewer than max holds are; res and rids list the holds.
    local rprefix = prefix .. ':r:'
    local packed = redis.call('HMGET', keys[4], unpack(due))
    local total, per_user, user_list, res, rids = 0, {}, {}, {}, {}
    local function take(rid, r)
        res[#res + 1], rids[#rids + 1] = r, rid
        total = total + r.qty
        if not per_user[r.user] then
            per_user[r.user] = 0
            user_list[#user_list + 1] = r.user
        end
        per_user[r.user] = per_user[r.user] + r.qty
    end
    local nm = 0
    while nm < #due and #res < max do
        nm = nm + 1
        local m, v = due[nm], packed[nm]
        if not v then
            fail('corrupt data: member of holds is not a held reservation')
        end
        if string.byte(v, 1) == 35 then -- '#': a group
            local created, expires = group_times(v)
            local any = false
            for i, user in string.gmatch(v, '\n(%d+) ([^\n]+)') do
                take(m .. '.' .. i, { user = user, qty = 1, created_ms = created,
                    expires_ms = expires })
                any = true
            end
            if not any then
                fail('corrupt data: empty held group')
            end
        else
            take(m, unpack_held(v, 'held reservation'))
        end
    end
    if nm < #due then
        due = { unpack(due, 1, nm) }
    end
    if s.held < total then
        fail('corrupt data: held below the sum of holds')
    end
    local v = redis.call('HMGET', keys[3], unpack(user_list))
    local hset, hdel = {}, {}
    for i = 1, #user_list do
        local u = user_list[i]
        local left = (v[i] and stored_int(v[i], 'users entry') or 0) - per_user[u]
        if left < 0 then
            fail('corrupt data: users entry below its holds')
        elseif left == 0 then
            hdel[#hdel + 1] = u
        else
            hset[#hset + 1] = u
            hset[#hset + 1] = fmt_int(left)
        end
    end

    redis.call('ZREM', keys[2], unpack(due))
    redis.call('HSET', keys[1], 'held', fmt_int(s.held - total), 'available',
        fmt_int(s.available + total))
    if #hdel > 0 then
        redis.call('HDEL', keys[3], unpack(hdel))
    end
    if #hset > 0 then
        redis.call('HSET', keys[3], unpack(hset))
    end
    redis.call('HDEL', keys[4], unpack(due))
    for i = 1, #res do
        write_ended(rprefix .. rids[i], res[i], 'expired')
    end
    announce(prefix)
    return { #res, #res >= max and 0 or expire_wait(keys, now) }
end

---------------------------------------------------------------------------------------------------
-- fs_restock: add units (delta > 0) or remove available units (delta < 0).
--   KEYS: fs:{L:S}:sku   ARGV: delta (non-zero integer)
--   Returns {code, total, available, held, sold}; code is ok, not_found (counters 0) or
--     insufficient_available (delta < 0 and available < -delta; nothing changes; the current
--     counters are returned).
--   Invariant: total and available move together; held and sold are untouched; none negative.
---------------------------------------------------------------------------------------------------
local function fs_restock(keys, args)
    if #keys ~= 1 or #args ~= 1 then
        fail('wrong number of arguments')
    end
    sku_prefix(keys[1])
    local delta = parse_int(args[1], 'delta')
    if delta == 0 then
        fail('delta must not be 0')
    end
    local s = read_sku(keys[1], SKU_COUNTERS)
    if not s then
        return { 'not_found', 0, 0, 0, 0 }
    end
    if delta < 0 and s.available < -delta then
        return { 'insufficient_available', s.total, s.available, s.held, s.sold }
    end
    local total, available = s.total + delta, s.available + delta
    redis.call('HSET', keys[1], 'total', fmt_int(total), 'available', fmt_int(available))
    announce(sku_prefix(keys[1]))
    return { 'ok', total, available, s.held, s.sold }
end

---------------------------------------------------------------------------------------------------
-- Launch-wide helpers
---------------------------------------------------------------------------------------------------

local L_FIELDS = { 'name', 'state', 'hold_seconds', 'starts_at_ms', 'ends_at_ms',
    'rl_shopper_milli', 'rl_shopper_burst', 'rl_address_milli', 'rl_address_burst' }
local RL_FIELDS = { 'rl_shopper_milli', 'rl_shopper_burst', 'rl_address_milli', 'rl_address_burst' }

local function read_launch(key)
    local v = redis.call('HMGET', key, unpack(L_FIELDS))
    if not v[1] and not v[2] then
        return nil
    end
    if not v[1] or not STATES[v[2]] then
        fail('corrupt data: launch hash ' .. key)
    end
    return {
        name = v[1],
        state = v[2],
        hold_seconds = stored_int(v[3], 'hold_seconds'),
        starts_at_ms = stored_int(v[4], 'starts_at_ms'),
        ends_at_ms = stored_int(v[5], 'ends_at_ms'),
        rl = { stored_int(v[6] or '0', 'rate limit'), stored_int(v[7] or '0', 'rate limit'),
            stored_int(v[8] or '0', 'rate limit'), stored_int(v[9] or '0', 'rate limit') },
    }
end

-- "field, value, ..." of the launch's rate limits, to mirror into SKU hashes.
local function rl_copies(l)
    local c = {}
    for i = 1, 4 do
        c[#c + 1] = RL_FIELDS[i]
        c[#c + 1] = fmt_int(l.rl[i])
    end
    return c
end

-- The reply of fs_launch_get (and the tail of fs_launch_put/fs_launch_state):
-- {"ok", created, launch, name, state, hold_seconds, starts_at_ms, ends_at_ms, now_ms, n,
--  then n groups of sku, total, available, held, sold, per_user_limit, price_cents}.
local function launch_view(launch, l, skus, created, now)
    local out = { 'ok', created, launch, l.name,
        effective_state(l.state, l.starts_at_ms, l.ends_at_ms, now), l.hold_seconds,
        l.starts_at_ms, l.ends_at_ms, now, #skus }
    for i = 1, #skus do
        local s = read_sku(sku_key(launch, skus[i]), SKU_VIEW)
        if not s then
            fail('corrupt data: listed SKU without hash: ' .. skus[i])
        end
        local o = #out
        out[o + 1], out[o + 2], out[o + 3], out[o + 4] = skus[i], s.total, s.available, s.held
        out[o + 5], out[o + 6], out[o + 7] = s.sold, s.per_user_limit, s.price_cents
    end
    for i = 1, 4 do
        out[#out + 1] = l.rl[i]
    end
    return out
end

local function check_launch_keys(keys, with_set)
    local launch = launch_id_of(keys[1])
    expect_key(keys[2], 'fs:launch:{' .. launch .. '}:skus', 'skus')
    if with_set then
        expect_key(keys[3], 'fs:launches', 'launches')
    end
    return launch
end

---------------------------------------------------------------------------------------------------
-- fs_launch_put: create or update a launch.
--   KEYS: fs:launch:{L}, fs:launch:{L}:skus, fs:launches
--   ARGV: launch, name, hold_seconds, starts_at_ms, ends_at_ms (0 = not set), n,
--         then per SKU sku, stock, per_user_limit, price_cents
--   Returns {"ok", created (1/0), <launch as fs_launch_get returns it from its third element>}
--     or {"use_restock", sku} when an existing SKU is given a stock other than the one it was
--     created with (then nothing changes). A SKU listed twice in one call is an error. A call
--     that returns ok adds one to fs:launches:ver (fs_sku_list's version).
--   Invariant: a new SKU starts with total = available = stock, held = sold = 0; existing
--     counters are never touched here (restock does that). The launch's state, hold_ms,
--     starts_at_ms and ends_at_ms are mirrored into every SKU hash of the launch.
---------------------------------------------------------------------------------------------------
local function fs_launch_put(keys, args)
    if #keys ~= 3 or #args < 6 then
        fail('wrong number of arguments')
    end
    local launch = check_launch_keys(keys, true)
    if args[1] ~= launch then
        fail('launch id does not match its key')
    end
    local name = args[2]
    local hold_seconds = parse_int(args[3], 'hold_seconds')
    if hold_seconds < 1 then
        fail('hold_seconds must be at least 1')
    end
    local starts_at_ms = parse_nonneg(args[4], 'starts_at_ms')
    local ends_at_ms = parse_nonneg(args[5], 'ends_at_ms')
    local n = parse_nonneg(args[6], 'n')
    if #args ~= 6 + 4 * n then
        fail('wrong number of arguments')
    end

    -- Everything is read and checked before the first write.
    local listed = {}
    local skus = redis.call('LRANGE', keys[2], 0, -1)
    for i = 1, #skus do
        listed[skus[i]] = true
    end
    local given, seen = {}, {}
    for i = 1, n do
        local b = 7 + (i - 1) * 4
        local g = {
            sku = args[b],
            stock = parse_int(args[b + 1], 'stock'),
            per_user_limit = parse_nonneg(args[b + 2], 'per_user_limit'),
            price_cents = parse_nonneg(args[b + 3], 'price_cents'),
        }
        if g.sku == '' or string.find(g.sku, '[:{}]') then
            fail('bad sku id')
        end
        if seen[g.sku] then
            fail('duplicate sku ' .. g.sku)
        end
        if g.stock < -1 then
            fail('stock must not be negative')
        end
        seen[g.sku] = true
        g.key = sku_key(launch, g.sku)
        local stock = redis.call('HGET', g.key, 'stock')
        if stock then
            if not listed[g.sku] then
                fail('corrupt data: SKU hash not listed in its launch: ' .. g.sku)
            end
            if g.stock ~= -1 and stored_int(stock, 'stock') ~= g.stock then
                return { 'use_restock', g.sku }
            end
            g.exists = true
        elseif listed[g.sku] then
            fail('corrupt data: listed SKU without hash: ' .. g.sku)
        elseif g.stock == -1 then
            return { 'stock_required', g.sku }
        end
        given[i] = g
    end

    local now = now_ms()
    local l = read_launch(keys[1])
    local created = 0
    if l then
        l.name, l.hold_seconds, l.starts_at_ms, l.ends_at_ms = name, hold_seconds, starts_at_ms,
            ends_at_ms
        redis.call('HSET', keys[1], 'name', name, 'hold_seconds', fmt_int(hold_seconds),
            'starts_at_ms', fmt_int(starts_at_ms), 'ends_at_ms', fmt_int(ends_at_ms),
            'updated_ms', fmt_int(now))
    else
        created = 1
        l = { name = name, state = 'scheduled', hold_seconds = hold_seconds,
            starts_at_ms = starts_at_ms, ends_at_ms = ends_at_ms, rl = { 0, 0, 0, 0 } }
        redis.call('HSET', keys[1], 'name', name, 'state', 'scheduled', 'hold_seconds',
            fmt_int(hold_seconds), 'starts_at_ms', fmt_int(starts_at_ms), 'ends_at_ms',
            fmt_int(ends_at_ms), 'created_ms', fmt_int(now), 'updated_ms', fmt_int(now))
        redis.call('SADD', keys[3], launch)
    end

    local copies = { 'state', l.state, 'hold_ms', fmt_int(hold_seconds * 1000), 'starts_at_ms',
        fmt_int(starts_at_ms), 'ends_at_ms', fmt_int(ends_at_ms), SKU_ENCODING[1], SKU_ENCODING[2],
        unpack(rl_copies(l)) }
    for i = 1, n do
        local g = given[i]
        if g.exists then
            redis.call('HSET', g.key, 'per_user_limit', fmt_int(g.per_user_limit), 'price_cents',
                fmt_int(g.price_cents))
        else
            local stock = fmt_int(g.stock)
            redis.call('HSET', g.key, 'launch', launch, 'sku', g.sku, 'stock', stock, 'total', stock,
                'available', stock, 'held', '0', 'sold', '0', 'per_user_limit',
                fmt_int(g.per_user_limit), 'price_cents', fmt_int(g.price_cents), unpack(copies))
            redis.call('RPUSH', keys[2], g.sku)
            skus[#skus + 1] = g.sku
        end
    end
    for i = 1, #skus do
        redis.call('HSET', sku_key(launch, skus[i]), unpack(copies))
    end
    redis.call('INCR', keys[3] .. ':ver')
    return launch_view(launch, l, skus, created, now)
end

---------------------------------------------------------------------------------------------------
-- fs_launch_state: operator state change.
--   KEYS: fs:launch:{L}, fs:launch:{L}:skus   ARGV: action (open, pause or close)
--   Returns {"ok", 0, <launch as fs_launch_get>}, {"not_found"} or
--     {"invalid_transition", effective_state}.
--   Transitions on the effective state: open from scheduled/paused/open; pause from
--     open/paused; close from scheduled/open/paused.
--   Invariant: the new state is mirrored into every SKU hash of the launch in the same call.
---------------------------------------------------------------------------------------------------
local ACTIONS = {
    open = { to = 'open', from = { scheduled = true, paused = true, open = true } },
    pause = { to = 'paused', from = { open = true, paused = true } },
    close = { to = 'closed', from = { scheduled = true, open = true, paused = true } },
}

local function fs_launch_state(keys, args)
    if #keys ~= 2 or #args ~= 1 then
        fail('wrong number of arguments')
    end
    local launch = check_launch_keys(keys, false)
    local action = ACTIONS[args[1]]
    if not action then
        fail('unknown action')
    end
    local l = read_launch(keys[1])
    if not l then
        return { 'not_found' }
    end
    local now = now_ms()
    local eff = effective_state(l.state, l.starts_at_ms, l.ends_at_ms, now)
    if not action.from[eff] then
        return { 'invalid_transition', eff }
    end
    local skus = redis.call('LRANGE', keys[2], 0, -1)
    for i = 1, #skus do
        if redis.call('EXISTS', sku_key(launch, skus[i])) == 0 then
            fail('corrupt data: listed SKU without hash: ' .. skus[i])
        end
    end
    l.state = action.to
    redis.call('HSET', keys[1], 'state', l.state, 'updated_ms', fmt_int(now))
    for i = 1, #skus do
        redis.call('HSET', sku_key(launch, skus[i]), 'state', l.state, unpack(SKU_ENCODING))
        redis.call('PUBLISH', STOCK_CHANNEL, launch .. ':' .. skus[i])
    end
    return launch_view(launch, l, skus, 0, now)
end

---------------------------------------------------------------------------------------------------
-- fs_launch_get (read-only).
--   KEYS: fs:launch:{L}, fs:launch:{L}:skus   ARGV: none
--   Returns {"not_found"} or {"ok", 0, launch, name, state (effective), hold_seconds,
--     starts_at_ms, ends_at_ms, now_ms, n, then n groups of sku, total, available, held, sold,
--     per_user_limit, price_cents, then the rate limits shopper_milli, shopper_burst,
--     address_milli, address_burst (0 = off; *_milli are requests per 1000 s)}.
--   Invariant: changes nothing.
---------------------------------------------------------------------------------------------------
local function fs_launch_get(keys, args)
    if #keys ~= 2 or #args ~= 0 then
        fail('wrong number of arguments')
    end
    local launch = check_launch_keys(keys, false)
    local l = read_launch(keys[1])
    if not l then
        return { 'not_found' }
    end
    return launch_view(launch, l, redis.call('LRANGE', keys[2], 0, -1), 0, now_ms())
end

---------------------------------------------------------------------------------------------------
-- fs_launch_rate_limit: set the launch's rate limits (they apply from the next reservation on,
-- on every server, since fs_reserve reads them from the SKU hashes).
--   KEYS: fs:launch:{L}, fs:launch:{L}:skus
--   ARGV: shopper_milli, shopper_burst, address_milli, address_burst: each an integer >= 0, or -1
--         to keep the current value. *_milli is the sustained rate in requests per 1000 s (a rate
--         of 2.5/s is 2500); a limit is off while its rate or its burst is 0.
--   Returns {"ok", 0, <launch as fs_launch_get>} or {"not_found"}.
--   Invariant: the launch hash and every SKU hash of the launch carry the same four values.
---------------------------------------------------------------------------------------------------
local function fs_launch_rate_limit(keys, args)
    if #keys ~= 2 or #args ~= 4 then
        fail('wrong number of arguments')
    end
    local launch = check_launch_keys(keys, false)
    local v = {}
    for i = 1, 4 do
        v[i] = parse_int(args[i], RL_FIELDS[i])
        if v[i] < -1 then
            fail(RL_FIELDS[i] .. ' must be -1 (keep) or >= 0')
        end
    end
    local l = read_launch(keys[1])
    if not l then
        return { 'not_found' }
    end
    for i = 1, 4 do
        if v[i] >= 0 then
            l.rl[i] = v[i]
        end
    end
    local skus = redis.call('LRANGE', keys[2], 0, -1)
    local copies = rl_copies(l)
    redis.call('HSET', keys[1], unpack(copies))
    for i = 1, #skus do
        redis.call('HSET', sku_key(launch, skus[i]), unpack(copies))
    end
    return launch_view(launch, l, skus, 0, now_ms())
end

---------------------------------------------------------------------------------------------------
-- Waiting room (docs/rate-limits.md, "Waiting room"): an optional door in front of fs_reserve
-- that lets shoppers in at admit_per_sec, in arrival order, handing out places to those who came
-- too early. Keys (hash tag {L}, the slot of the launch hash):
--   fs:wr:{L}        hash  n (places given), tat_us (the turn of the last place, microseconds)
--   fs:wr:{L}:users  hash  user -> "position|turn_ms", the shopper's current place
-- Both expire 300 s after the last turn given.
---------------------------------------------------------------------------------------------------
local WR_PLACE_TTL_MS = 300000 -- a place (and its ticket) is good for this long after its turn

---------------------------------------------------------------------------------------------------
-- fs_launch_waiting_room: read or set a launch's waiting room.
--   KEYS: fs:launch:{L}
--   ARGV: admit_milli: the admission rate in shoppers per 1000 s (5/s is 5000), 0 = no room;
--         or -1 to read it without a change
--   Returns {"ok", admit_milli} or {"not_found"}.
--   Invariant: only the launch hash's wr_admit_milli (and updated_ms) change; places already
--     given keep their turn.
---------------------------------------------------------------------------------------------------
local function fs_launch_waiting_room(keys, args)
    if #keys ~= 1 or #args ~= 1 then
        fail('wrong number of arguments')
    end
    launch_id_of(keys[1])
    local v = parse_int(args[1], 'admit_milli')
    if v < -1 then
        fail('admit_milli must be -1 (read) or >= 0')
    end
    local l = read_launch(keys[1])
    if not l then
        return { 'not_found' }
    end
    if v >= 0 then
        redis.call('HSET', keys[1], 'wr_admit_milli', fmt_int(v), 'updated_ms', fmt_int(now_ms()))
        return { 'ok', v }
    end
    return { 'ok', stored_int(redis.call('HGET', keys[1], 'wr_admit_milli') or '0', 'wr_admit_milli') }
end

---------------------------------------------------------------------------------------------------
-- fs_wr_pass: the door of a launch's waiting room, called before fs_reserve for a reservation
-- request of a launch that has (or, as far as the server knows, may have) a room.
--   KEYS: fs:launch:{L}, fs:wr:{L}, fs:wr:{L}:users, fs:{L:S}:sku
--   ARGV: user, qty, position, turn_ms: position 0 (and turn_ms 0) for a request without a
--         ticket; else the position and turn of the shopper's (verified) ticket
--   Returns {code, admit_milli, position, turn_ms, exp_ms, now_ms}; code is
--     "off"      the launch has no room (or does not exist): reserve as usual
--     "go"       the turn has come, or the launch is not open, or the SKU does not exist: reserve
--                as usual (fs_reserve gives the answer)
--     "wait"     not yet: position and turn_ms are the shopper's place, exp_ms = turn_ms + 300 s
--                when it lapses
--     "sold_out" the SKU has fewer than qty units available and the turn has not come (a new
--                arrival then takes no place)
--   A shopper without a ticket keeps the place recorded for them while it is valid (now <
--   turn + 300 s), otherwise takes the next one: positions count up from 1, and turns are
--   spaced 1/admit s apart, GCRA-style: turn = max(last turn, now - 1 s) + 1/admit, so at most one
--   second's worth of shoppers is let in at once, then admit per second.
--   Invariant: touches only the room's keys; every position is given once, in call order, with
--     turns that never decrease.
---------------------------------------------------------------------------------------------------
local function fs_wr_pass(keys, args)
    if #keys ~= 4 or #args ~= 4 then
        fail('wrong number of arguments')
    end
    local launch = launch_id_of(keys[1])
    expect_key(keys[2], 'fs:wr:{' .. launch .. '}', 'room')
    expect_key(keys[3], 'fs:wr:{' .. launch .. '}:users', 'room users')
    local prefix = sku_prefix(keys[4])
    if string.sub(prefix, 1, #launch + 5) ~= 'fs:{' .. launch .. ':' then
        fail('bad key for SKU')
    end
    local user = args[1]
    if user == '' then
        fail('empty user')
    end
    local qty = parse_int(args[2], 'qty')
    if qty < 1 then
        fail('qty must be at least 1')
    end
    local pos = parse_nonneg(args[3], 'position')
    local turn = parse_nonneg(args[4], 'turn_ms')
    local t = redis.call('TIME')
    local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local now = math.floor(now_us / 1000)

    local v = redis.call('HMGET', keys[1], 'state', 'starts_at_ms', 'ends_at_ms', 'wr_admit_milli')
    local admit = stored_int(v[4] or '0', 'wr_admit_milli')
    if not v[1] or admit <= 0 then
        return { 'off', 0, 0, 0, 0, now }
    end
    if effective_state(v[1], stored_int(v[2], 'starts_at_ms'), stored_int(v[3], 'ends_at_ms'), now)
        ~= 'open' then
        return { 'go', admit, pos, turn, pos > 0 and turn + WR_PLACE_TTL_MS or 0, now }
    end
    local avail = redis.call('HGET', keys[4], 'available')
    if not avail then
        return { 'go', admit, pos, turn, pos > 0 and turn + WR_PLACE_TTL_MS or 0, now }
    end
    avail = stored_int(avail, 'available of ' .. keys[4])
    if pos == 0 then
        local rec = redis.call('HGET', keys[3], user)
        if rec then
            local p, tm = string.match(rec, '^(%d+)|(%d+)$')
            if not p then
                fail('corrupt data: place of a shopper in ' .. keys[3])
            end
            if now < tonumber(tm) + WR_PLACE_TTL_MS then
                pos, turn = tonumber(p), tonumber(tm)
            end
        end
    end
    if pos == 0 then
        if avail < qty then
            return { 'sold_out', admit, 0, 0, 0, now }
        end
        local tat = stored_int(redis.call('HGET', keys[2], 'tat_us') or '0', 'tat_us')
        if tat < now_us - 1000000 then
            tat = now_us - 1000000
        end
        tat = tat + math.floor(1e9 / admit)
        pos = redis.call('HINCRBY', keys[2], 'n', 1)
        turn = math.floor(tat / 1000)
        redis.call('HSET', keys[2], 'tat_us', fmt_int(tat))
        redis.call('HSET', keys[3], user, fmt_int(pos) .. '|' .. fmt_int(turn))
        local ttl = fmt_int(math.max(turn - now, 0) + WR_PLACE_TTL_MS)
        redis.call('PEXPIRE', keys[2], ttl)
        redis.call('PEXPIRE', keys[3], ttl)
    end
    local exp = turn + WR_PLACE_TTL_MS
    if turn <= now then
        return { 'go', admit, pos, turn, exp, now }
    end
    if avail < qty then
        return { 'sold_out', admit, pos, turn, exp, now }
    end
    return { 'wait', admit, pos, turn, exp, now }
end

---------------------------------------------------------------------------------------------------
-- fs_idem_sold_out: the answer to a reservation with an Idempotency-Key for a SKU the server
-- knows to be sold out. It may be the retry of a request that got a unit, so the server cannot
-- answer it from memory alone; this reads its idempotency record, or stores sold_out there as
-- fs_reserve would have (one SET NX GET, no SKU key touched).
--   KEYS: the idempotency key fs:{L:S}:i:<n>:<user>:<key>   ARGV: none
--   Returns {code, rid, qty, expires_ms, created_ms, replayed}: {"sold_out", "", 0, 0, 0, 0} when
--     the key was new (now stored), else the stored first answer with replayed = 1.
--   Invariant: touches no counter; writes only a missing idempotency record.
---------------------------------------------------------------------------------------------------
local function fs_idem_sold_out(keys, args)
    if #keys ~= 1 or #args ~= 0 then
        fail('wrong number of arguments')
    end
    if type(keys[1]) ~= 'string' or not string.match(keys[1], '^fs:{[^{}:]+:[^{}:]+}:i:') then
        fail('bad key for idempotency record')
    end
    local rec = redis.call('SET', keys[1], 'sold_out||0|0|0', 'NX', 'GET', 'EX', IDEM_TTL_S)
    if not rec then
        return { 'sold_out', '', 0, 0, 0, 0 }
    end
    local out = unpack_idem(rec)
    out[6] = 1
    return out
end

---------------------------------------------------------------------------------------------------
-- fs_sku_list (read-only): what the sweeper sweeps.
--   KEYS: fs:launches   ARGV: none, or the version of the list the caller has
--   Returns {V, L1, S1, H1, L2, S2, H2, ...}: the list's version (fs:launches:ver, which
--     fs_launch_put raises; '0' before any), then every SKU of every launch (launches sorted by
--     id, SKUs in the order they were added) with its launch's hold time in ms (Hi): a sweeper
--     that waits on a SKU (fs_expire's wait_ms) sweeps it at once when that falls. Only {V} when
--     V is the version given: the list holds every launch ever made, and each server asks for it
--     once a second.
--   Invariant: changes nothing.
---------------------------------------------------------------------------------------------------
local function fs_sku_list(keys, args)
    if #keys ~= 1 or #args > 1 then
        fail('wrong number of arguments')
    end
    expect_key(keys[1], 'fs:launches', 'launches')
    local ver = redis.call('GET', keys[1] .. ':ver') or '0'
    if args[1] == ver then
        return { ver }
    end
    local launches = redis.call('SMEMBERS', keys[1])
    table.sort(launches)
    local out = { ver }
    for i = 1, #launches do
        local lkey = 'fs:launch:{' .. launches[i] .. '}'
        local skus = redis.call('LRANGE', lkey .. ':skus', 0, -1)
        local hold = redis.call('HGET', lkey, 'hold_seconds')
        hold = hold and fmt_int(stored_int(hold, 'hold_seconds') * 1000) or '0'
        for j = 1, #skus do
            out[#out + 1] = launches[i]
            out[#out + 1] = skus[j]
            out[#out + 1] = hold
        end
    end
    return out
end

---------------------------------------------------------------------------------------------------
-- Registration
---------------------------------------------------------------------------------------------------

-- Every function is registered as <name>_v<API>, in library flashsale_v<API>: servers of two
-- versions can then share one Redis during a rolling deploy, each calling its own functions
-- (data layouts must stay compatible between neighbouring versions). Raise API, here, in the
-- library name above and FS_LUA_API in src/stock/stock.h, whenever arguments or replies change
-- or a function is added (a server of the previous version reloads its library with REPLACE).
-- Errors keep the plain name: "ERR flashsale fs_reserve: ...".
local API = '5'

local function register(name, fn, read_only)
    local spec = { function_name = name .. '_v' .. API, callback = guard(name, fn) }
    if read_only then
        spec.flags = { 'no-writes' }
    end
    redis.register_function(spec)
end

register('fs_reserve', function(keys, args)
    return reserve(keys, args, 'full')
end)
register('fs_reserve_plain', function(keys, args)
    return reserve(keys, args, 'plain')
end)
register('fs_reserve_group', function(keys, args)
    return reserve(keys, args, 'group')
end)
register('fs_confirm', fs_confirm)
register('fs_cancel', fs_cancel)
register('fs_get_reservation', fs_get_reservation, true)
register('fs_expire', fs_expire)
register('fs_restock', fs_restock)
register('fs_launch_put', fs_launch_put)
register('fs_launch_state', fs_launch_state)
register('fs_launch_get', fs_launch_get, true)
register('fs_launch_rate_limit', fs_launch_rate_limit)
register('fs_sku_list', fs_sku_list, true)
register('fs_launch_waiting_room', fs_launch_waiting_room)
register('fs_wr_pass', fs_wr_pass)
register('fs_idem_sold_out', fs_idem_sold_out)
