/// The Lua script behind the Redis store: every algorithm, all or nothing across the limits of one request, in one
/// round trip (SPEC §8).
///
/// It is the memory store's `decide` (``MemoryStore``, ``KeyTable``) and the algorithm files of SluiceLimiter
/// written again in Lua, in **microseconds**: Lua numbers are doubles, exact up to 2^53, which holds a Unix time in
/// microseconds (~1.8e15) but not in nanoseconds. The emission interval of `gcra` and `token_bucket` is rounded up
/// to the microsecond on both sides, so the two stores take the same decisions. Divisions go through `math.fmod`,
/// which is exact, instead of `/` and `math.floor`, which can round a quotient up. Products of a count and a
/// period (sliding window) are exact while below 2^53, e.g. 1,000,000 per hour (3.6e15).
///
/// Calling convention (`EVALSHA sha numkeys KEYS... ARGV...`), for one or more requests (see ``DecisionBatcher``),
/// taken one after another, each all or nothing:
/// - `KEYS`: for each item of each request in turn, its counter, then its `block_for` penalty key when it has one;
/// - `ARGV[1]`: the time in microseconds, or empty for the server's `TIME` (instances with skewed clocks then
///   agree); `ARGV[2]`: the number of requests; then one argument per request, little-endian doubles packed with
///   `struct.pack` (one `struct.unpack` reads them, where ten decimal arguments per item would cost Redis an
///   object and a Lua string each): 1 for `commit` (`count_when`: take the cost whatever the budget) or 0 for
///   `decide`, the number of items, and 10 values per item: algorithm (1 fixed, 2 sliding, 3 moving, 4 token bucket,
///   5 gcra), COUNT, period µs, burst, delay µs, cost, consume (1) or check (0), enforced (1/0), group, penalty µs
///   (0: no penalty key).
/// - The reply: the time used, then per request 1 if admitted (else 0) and 5 integers per item: verdict
///   (0 admitted, 1 delayed, 2 denied), wait µs (delay or retry), remaining, reset µs, 1 if refused by a running
///   `block_for` block.
///
/// Every key is written with a TTL that ends when its state stops meaning anything (the `idleAt` of
/// ``PackedState``), so nothing outlives its window. A counter's state is three doubles packed with `struct.pack`
/// (a moving window's is a sorted set of stamps).
///
/// Why it is written as one flat body: Redis runs the body on every call, so each `local function` would be a new
/// closure per call, and each per-item table more garbage for Lua's collector. Written out flat, with one helper and
/// the arguments read where they are, a decision costs Redis about 7.4 µs of CPU instead of 10.2 µs (fixed window,
/// one item, measured with `redis-benchmark` against `redis-server` 7.0); the bare `EVALSHA` plus `TIME` is 2.9 µs.
enum RedisScript {
    /// The script for a Redis Cluster primary, for requests whose keys lie in several of its slots (issue 12): the
    /// same body, with its keys passed as arguments (`EVALSHA sha 0 nk KEY... ARGV...`; a command's declared keys
    /// must share a slot) and `allow-cross-slot-keys`. Before anything is read or written, every key is checked to be
    /// served here (`EXISTS` through `redis.pcall`: a key of a slot that moved, or that is migrating and not here,
    /// is an error reply); if one is not, it answers `{-1}` having done nothing, and the caller sends each slot's
    /// part on its own (with redirections).
    static let clusterSource = #"""
        #!lua flags=allow-cross-slot-keys
        local nk = tonumber(ARGV[1])
        local K, A = {}, {}
        for i = 1, nk do
          K[i] = ARGV[1 + i]
          local here = redis.pcall('EXISTS', K[i])
          if type(here) == 'table' then return { -1 } end
        end
        for i = nk + 2, #ARGV do A[#A + 1] = ARGV[i] end
        local KEYS, ARGV = K, A

        """# + Self.source

    static let source = #"""
        local fmod, max, min, tonumber, format, unpack = math.fmod, math.max, math.min, tonumber, string.format, struct.unpack
        local t
        if ARGV[1] ~= '' then t = tonumber(ARGV[1]) else
          local time = redis.call('TIME'); t = tonumber(time[1]) * 1000000 + tonumber(time[2])
        end
        -- The only helper: every other one is written out where it is used, since Redis runs this body on every call and
        -- each local function would be a new closure (garbage) per call.
        local function cdiv(a, b) local m = fmod(a, b); if m == 0 then return a / b end; return (a - m) / b + 1 end

        local reply = { t }
        local j = 1
        -- Per item of the request at hand: verdict (0 admitted, 1 delayed, 2 denied), wait, remaining, reset, blocked, then
        -- what to record if counted (the idle instant; false: nothing, -1: the moving window's log) and the state's three
        -- values, then the index of its counter key.
        local r = {}
        -- Requests one after another, each all or nothing; ko is the offset of the request's keys.
        local ko = 0
        for q = 1, tonumber(ARGV[2]) do
          local request = ARGV[2 + q]
          local commit, n = unpack('<dd', request)
          commit = commit == 1

          -- 1. Check every item.
          local admitted = true
          local kk = ko
          for i = 1, n do
            local alg, c, p, burst, delay, cost, _, enforced, _, penalty = unpack('<dddddddddd', request, 17 + (i - 1) * 80)
            local key = KEYS[kk + 1]
            local v, w, rem, reset, idle, x, y, z = 2, 0, 0, 0, false, 0, 0, 0
            if alg == 3 then
              -- Moving window: a sorted set of admission stamps.
              if commit then c = 9007199254740991 end
              redis.call('ZREMRANGEBYSCORE', key, '-inf', format('%.0f', t - p))
              local used = redis.call('ZCARD', key)
              local newest = t
              if used > 0 then newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]) end
              if used + cost <= c then
                if cost > 0 then reset = p elseif used > 0 then reset = newest + p - t end
                v, rem, idle = 0, c - used - cost, -1
              else
                local must = used + cost - c
                w = p
                if cost <= c and must <= used then
                  local oldest = tonumber(redis.call('ZRANGE', key, must - 1, must - 1, 'WITHSCORES')[2])
                  w = max(1, oldest + p - t)
                end
                rem, reset = c - used, newest + p - t
              end
            else
              -- Every other state is three doubles (exact integers below 2^53), packed; anything else reads as no state.
              local s1, s2, s3
              local raw = redis.call('GET', key)
              if raw and #raw == 24 then s1, s2, s3 = unpack('<ddd', raw) end
              if alg == 1 or alg == 2 then
                if commit then c = 9007199254740991 end
                local tt = max(0, t)
                local ws = tt - fmod(tt, p)
                reset = ws + p - tt
                if alg == 1 then
                  -- Fixed window.
                  local used = 0
                  if s1 then
                    if s1 == ws then used = s2 elseif s1 > ws then ws = s1; used = s2; reset = ws + p - tt end
                  end
                  local after = used + cost
                  if after <= c then v, rem, idle, x, y = 0, c - after, ws + p, ws, after
                  else w, rem = reset, c - used end
                else
                  -- Sliding window.
                  local cur, prev = 0, 0
                  if s1 then
                    if s1 >= ws then ws = s1; cur = s2; prev = s3; reset = ws + p - tt
                    elseif s1 == ws - p then prev = s2 end
                  end
                  local elapsed = max(0, min(p, tt - ws))
                  local used = cdiv(prev * (p - elapsed), p) + cur
                  local after = used + cost
                  if after <= c then v, rem, idle, x, y, z = 0, c - after, ws + 2 * p, ws, cur + cost, prev
                  else
                    local e = tt - ws
                    if cost > c then w = ws + 2 * p - tt
                    else
                      local room = c - cost - cur
                      if room >= 0 then local m = room * p; w = max(1, p - (m - fmod(m, prev)) / prev - e)
                      else local m = (c - cost) * p; w = (p - e) + (p - (m - fmod(m, cur)) / cur) end
                    end
                    rem = c - used
                  end
                end
              else
                -- Token bucket and gcra: one instant (the bucket's full time, the TAT) spaced by the emission interval.
                local iv = max(1, cdiv(p, c))
                local base = t
                if s1 then base = max(s1, t) end
                local nxt = base + cost * iv
                if commit then v, idle, x = 0, nxt, nxt
                elseif alg == 4 then
                  local span = (c + burst) * iv
                  local excess = nxt - t - span
                  if excess <= 0 then local m = -excess; v, rem, reset, idle, x = 0, (m - fmod(m, iv)) / iv, nxt - t, nxt, nxt
                  else local m = span - (base - t); w, rem, reset = excess, max(0, (m - fmod(m, iv)) / iv), base - t end
                else
                  local tol = burst * iv
                  local wait = base - tol - t
                  if wait <= 0 then
                    local slack = tol - (nxt - t)
                    if slack >= 0 then rem = (slack - fmod(slack, iv)) / iv + 1 end
                    v, reset, idle, x = 0, nxt - t, nxt, nxt
                  elseif wait <= delay then v, w, reset, idle, x = 1, wait, nxt - t, nxt, nxt
                  else w, reset = wait, base - t end
                end
              end
            end
            local blocked = 0
            if penalty > 0 then
              -- The item's `block_for` key follows its counter.
              local untilv = not commit and redis.call('GET', KEYS[kk + 2])
              if untilv and tonumber(untilv) > t then
                local bw = tonumber(untilv) - t
                if v == 2 then bw = max(bw, w) end
                v, w, rem, reset, blocked, idle = 2, bw, 0, max(reset, bw), 1, false
              end
            end
            local k = (i - 1) * 10
            r[k + 1] = v; r[k + 2] = w; r[k + 3] = max(0, rem); r[k + 4] = max(0, reset); r[k + 5] = blocked
            r[k + 6] = idle; r[k + 7] = x; r[k + 8] = y; r[k + 9] = z; r[k + 10] = kk + 1
            if v == 2 and enforced == 1 then admitted = false end
            if penalty > 0 then kk = kk + 2 else kk = kk + 1 end
          end

          -- 2. Count all or nothing; `commit` (count_when) counts every item whatever its budget.
          if admitted then
            -- A check-only or shadow item is counted with its group only when none of the group's items was refused.
            local refused
            if not commit then
              for i = 1, n do
                if r[(i - 1) * 10 + 1] == 2 then
                  local _, _, _, _, _, _, _, _, group = unpack('<ddddddddd', request, 17 + (i - 1) * 80)
                  refused = refused or {}
                  refused[group] = true
                end
              end
            end
            for i = 1, n do
              local k = (i - 1) * 10
              local idle = r[k + 6]
              if idle then
                local _, c, p, _, _, cost, consume, enforced, group = unpack('<ddddddddd', request, 17 + (i - 1) * 80)
                if commit or (consume == 1 and (enforced == 1 or not (refused and refused[group]))) then
                  local key = KEYS[r[k + 10]]
                  if idle == -1 then
                    redis.call('ZREMRANGEBYSCORE', key, '-inf', format('%.0f', t - p))
                    local card = redis.call('ZCARD', key)
                    local units = min(cost, c)
                    local over = card + units - c
                    if over > 0 then redis.call('ZREMRANGEBYRANK', key, 0, over - 1); card = card - over end
                    -- Members are `stamp:sequence`, the sequence zero-padded so that members of one stamp sort (and are
                    -- removed oldest first) in the order they came; the next one continues after the newest.
                    local stamp, sequence = t, 0
                    if card > 0 then
                      local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
                      local newest = tonumber(last[2])
                      if newest >= t then stamp = newest; sequence = tonumber(string.match(last[1], ':(%d+)$')) or card end
                    end
                    local score = format('%.0f', stamp)
                    for u = 1, units do redis.call('ZADD', key, score, score .. ':' .. format('%012.0f', sequence + u)) end
                    redis.call('PEXPIRE', key, max(1, cdiv(max(stamp + p - t, 1), 1000)))
                  else
                    redis.call('SET', key, struct.pack('<ddd', r[k + 7], r[k + 8], r[k + 9]), 'PX', max(1, cdiv(max(idle - t, 1), 1000)))
                  end
                end
              end
            end
          else
            for i = 1, n do
              local k = (i - 1) * 10
              local _, _, _, _, _, _, _, enforced, _, penalty = unpack('<dddddddddd', request, 17 + (i - 1) * 80)
              if enforced == 1 and r[k + 1] == 2 and r[k + 5] == 0 and penalty > 0 then
                redis.call('SET', KEYS[r[k + 10] + 1], format('%.0f', t + penalty), 'PX', max(1, cdiv(penalty, 1000)))
                r[k + 2] = max(penalty, r[k + 2]); r[k + 3] = 0; r[k + 4] = max(r[k + 4], r[k + 2]); r[k + 5] = 1
              end
            end
          end

          reply[j + 1] = admitted and 1 or 0
          j = j + 1
          for i = 1, n do
            local k = (i - 1) * 10
            reply[j + 1] = r[k + 1]; reply[j + 2] = r[k + 2]; reply[j + 3] = r[k + 3]; reply[j + 4] = r[k + 4]; reply[j + 5] = r[k + 5]
            j = j + 5
          end
          ko = kk
        end
        return reply
        """#
}
