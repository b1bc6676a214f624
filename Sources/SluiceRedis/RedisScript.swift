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
/// Calling convention (`EVALSHA sha numkeys KEYS... ARGV...`):
/// - `KEYS[2i-1]` is the counter of item `i`, `KEYS[2i]` its `block_for` penalty key (the counter again when the
///   item has none);
/// - `ARGV[1]`: `decide` or `commit` (`count_when`: take the cost whatever the budget); `ARGV[2]`: the time in
///   microseconds, or empty for the server's `TIME` (instances with skewed clocks then agree); `ARGV[3]`: the
///   number of items; then 10 values per item: algorithm (1 fixed, 2 sliding, 3 moving, 4 token bucket, 5 gcra),
///   COUNT, period µs, burst, delay µs, cost, consume (1) or check (0), enforced (1/0), group, penalty µs.
/// - The reply: the time used, 1 if admitted (else 0), then 5 integers per item: verdict (0 admitted, 1 delayed,
///   2 denied), wait µs (delay or retry), remaining, reset µs, 1 if refused by a running `block_for` block.
///
/// Every key is written with a TTL that ends when its state stops meaning anything (the `idleAt` of
/// ``PackedState``), so nothing outlives its window.
enum RedisScript {
    static let source = #"""
        local function fmt(x) return string.format('%.0f', x) end
        local function fdiv(a, b) return (a - math.fmod(a, b)) / b end
        local function cdiv(a, b) local r = math.fmod(a, b); if r == 0 then return a / b end; return (a - r) / b + 1 end
        local function ttl(idle, t) return math.max(1, cdiv(math.max(idle - t, 1), 1000)) end
        local function interval(count, period) return math.max(1, cdiv(period, count)) end

        local op = ARGV[1]
        local t
        if ARGV[2] ~= '' then t = tonumber(ARGV[2]) else
          local time = redis.call('TIME'); t = tonumber(time[1]) * 1000000 + tonumber(time[2])
        end
        local n = tonumber(ARGV[3])
        local items = {}
        for i = 1, n do
          local b = 3 + (i - 1) * 10
          items[i] = { key = KEYS[2 * i - 1], pkey = KEYS[2 * i], alg = tonumber(ARGV[b + 1]), count = tonumber(ARGV[b + 2]),
            period = tonumber(ARGV[b + 3]), burst = tonumber(ARGV[b + 4]), delay = tonumber(ARGV[b + 5]),
            cost = tonumber(ARGV[b + 6]), consume = ARGV[b + 7] == '1', enforced = ARGV[b + 8] == '1',
            group = ARGV[b + 9], penalty = tonumber(ARGV[b + 10]) }
        end

        -- A state is up to three integers separated by spaces; returned as values (no table per call).
        local function numbers(key)
          local v = redis.call('GET', key)
          if not v then return nil end
          local a, b, c = string.match(v, '^(%-?%d+) ?(%-?%d*) ?(%-?%d*)$')
          return tonumber(a), tonumber(b), tonumber(c)
        end

        -- Each check returns verdict, wait, remaining, reset and the state to write if counted ({idle, values...}).
        local function fixed(it, cost)
          local p = it.period
          local tt = math.max(0, t)
          local ws = tt - math.fmod(tt, p)
          local used = 0
          local s1, s2 = numbers(it.key)
          if s1 then
            if s1 == ws then used = s2 elseif s1 > ws then ws = s1; used = s2 end
          end
          local reset = ws + p - tt
          local after = used + cost
          if after <= it.count then return 0, 0, it.count - after, reset, { ws + p, ws, after } end
          return 2, reset, it.count - used, reset, nil
        end

        local function sliding(it, cost)
          local p, c = it.period, it.count
          local tt = math.max(0, t)
          local ws = tt - math.fmod(tt, p)
          local cur, prev = 0, 0
          local s1, s2, s3 = numbers(it.key)
          if s1 then
            if s1 >= ws then ws = s1; cur = s2; prev = s3
            elseif s1 == ws - p then prev = s2 end
          end
          local elapsed = math.max(0, math.min(p, tt - ws))
          local weighted = cdiv(prev * (p - elapsed), p)
          local reset = ws + p - tt
          local used = weighted + cur
          local after = used + cost
          if after <= c then return 0, 0, c - after, reset, { ws + 2 * p, ws, cur + cost, prev } end
          local retry
          local e = tt - ws
          if cost > c then retry = ws + 2 * p - tt
          else
            local room = c - cost - cur
            if room >= 0 then retry = math.max(1, p - fdiv(room * p, prev) - e)
            else retry = (p - e) + (p - fdiv((c - cost) * p, cur)) end
          end
          return 2, retry, c - used, reset, nil
        end

        local function moving(it, cost)
          local p = it.period
          redis.call('ZREMRANGEBYSCORE', it.key, '-inf', fmt(t - p))
          local used = redis.call('ZCARD', it.key)
          local newest = t
          if used > 0 then newest = tonumber(redis.call('ZRANGE', it.key, -1, -1, 'WITHSCORES')[2]) end
          if used + cost <= it.count then
            local reset = 0
            if cost > 0 then reset = p elseif used > 0 then reset = newest + p - t end
            return 0, 0, it.count - used - cost, reset, { 'log' }
          end
          local must = used + cost - it.count
          local retry = p
          if cost <= it.count and must <= used then
            local oldest = tonumber(redis.call('ZRANGE', it.key, must - 1, must - 1, 'WITHSCORES')[2])
            retry = math.max(1, oldest + p - t)
          end
          return 2, retry, it.count - used, newest + p - t, nil
        end

        local function bucket(it, cost)
          local iv = interval(it.count, it.period)
          local span = (it.count + it.burst) * iv
          local s1 = numbers(it.key)
          local full = t
          if s1 then full = math.max(s1, t) end
          local nxt = full + cost * iv
          local excess = nxt - t - span
          if excess <= 0 then return 0, 0, fdiv(-excess, iv), nxt - t, { nxt, nxt } end
          return 2, excess, math.max(0, fdiv(span - (full - t), iv)), full - t, nil
        end

        local function gcra(it, cost)
          local iv = interval(it.count, it.period)
          local tol = it.burst * iv
          local s1 = numbers(it.key)
          local tat = t
          if s1 then tat = math.max(s1, t) end
          local nxt = tat + cost * iv
          local wait = tat - tol - t
          if wait <= 0 then
            local slack = tol - (nxt - t)
            local remaining = 0
            if slack >= 0 then remaining = fdiv(slack, iv) + 1 end
            return 0, 0, remaining, nxt - t, { nxt, nxt }
          end
          if wait <= it.delay then return 1, wait, 0, nxt - t, { nxt, nxt } end
          return 2, wait, 0, tat - t, nil
        end

        local checks = { fixed, sliding, moving, bucket, gcra }

        local function record(it, state)
          if state[1] == 'log' then
            local p = it.period
            redis.call('ZREMRANGEBYSCORE', it.key, '-inf', fmt(t - p))
            local card = redis.call('ZCARD', it.key)
            local units = math.min(it.cost, it.count)
            local over = card + units - it.count
            if over > 0 then redis.call('ZREMRANGEBYRANK', it.key, 0, over - 1); card = card - over end
            local stamp = t
            if card > 0 then stamp = math.max(t, tonumber(redis.call('ZRANGE', it.key, -1, -1, 'WITHSCORES')[2])) end
            for u = 1, units do redis.call('ZADD', it.key, fmt(stamp), fmt(stamp) .. ':' .. fmt(card + u) .. ':' .. fmt(t)) end
            redis.call('PEXPIRE', it.key, ttl(stamp + p, t))
            return
          end
          local values = {}
          for i = 2, #state do values[#values + 1] = fmt(state[i]) end
          redis.call('SET', it.key, table.concat(values, ' '), 'PX', ttl(state[1], t))
        end

        if op == 'commit' then
          for i = 1, n do
            local it = items[i]
            if it.alg == 3 then record(it, { 'log' })
            elseif it.alg == 4 or it.alg == 5 then
              local iv = interval(it.count, it.period)
              local s1 = numbers(it.key)
              local base = t
              if s1 then base = math.max(s1, t) end
              record(it, { base + it.cost * iv, base + it.cost * iv })
            else
              -- Fixed and sliding windows: the state of an admission with a budget that cannot run out.
              local saved = it.count
              it.count = 9007199254740991
              local _, _, _, _, state = checks[it.alg](it, it.cost)
              it.count = saved
              record(it, state)
            end
          end
          return { t, 1 }
        end

        -- 1. Check every item.
        local results = {}
        local admitted = true
        for i = 1, n do
          local it = items[i]
          local v, w, rem, reset, state = checks[it.alg](it, it.cost)
          local blocked = 0
          if it.penalty > 0 and it.pkey ~= it.key then
            local untilv = redis.call('GET', it.pkey)
            if untilv and tonumber(untilv) > t then
              local bw = tonumber(untilv) - t
              if v == 2 then bw = math.max(bw, w) end
              v, w, rem, reset, blocked, state = 2, bw, 0, math.max(reset, bw), 1, nil
            end
          end
          results[i] = { v, w, math.max(0, rem), math.max(0, reset), blocked, state }
          if it.enforced and v == 2 then admitted = false end
        end

        -- 2. Count all or nothing.
        if admitted then
          local groupAdmitted = {}
          for i = 1, n do
            local g = items[i].group
            if groupAdmitted[g] == nil then groupAdmitted[g] = true end
            if results[i][1] == 2 then groupAdmitted[g] = false end
          end
          for i = 1, n do
            local it = items[i]
            if it.consume and results[i][6] and (it.enforced or groupAdmitted[it.group]) then record(it, results[i][6]) end
          end
        else
          for i = 1, n do
            local it, r = items[i], results[i]
            if it.enforced and r[1] == 2 and r[5] == 0 and it.penalty > 0 and it.pkey ~= it.key then
              redis.call('SET', it.pkey, fmt(t + it.penalty), 'PX', ttl(t + it.penalty, t))
              r[2] = math.max(it.penalty, r[2]); r[3] = 0; r[4] = math.max(r[4], r[2]); r[5] = 1
            end
          end
        end

        local reply = { t, admitted and 1 or 0 }
        for i = 1, n do
          local r = results[i]
          for j = 1, 5 do reply[#reply + 1] = r[j] end
        end
        return reply
        """#
}
