import NIOCore

/// The Lua script behind concurrency leases in Redis (issue 22 item 5): acquire, release and renew, for one or more
/// requests in one call (see ``LeaseBatcher``), taken one after another.
///
/// A key's slots are one sorted set per (rule, key): each member names an instance and a request
/// (`instance:sequence`, the instance id random per start), its score is the lease's expiry in milliseconds of the
/// server's clock (`TIME`, so instances with skewed clocks agree). A lease that is not renewed expires: the next
/// acquire of the key drops it (`ZREMRANGEBYSCORE`), and the set itself expires with its last lease (its TTL is never
/// shortened), so nothing of an instance that died outlives one `lease_ttl`.
///
/// Calling convention (`EVALSHA sha numkeys KEYS... ARGV...`):
/// - `KEYS`: for each request in turn, one set per item.
/// - `ARGV[1]`: the lease TTL in milliseconds; `ARGV[2]`: the number of requests; then per request its operation
///   (`a` acquire, `r` release, `n` renew), its member, its number of items, and for an acquire 2 values per item:
///   `max`, and `1` when enforced (`0`: `mode: shadow`, taken even over `max`).
/// - An acquire is all or nothing over its items: every set drops its expired leases, then, unless an enforced item
///   holds `max` leases or more, the member is added to every set with score now + TTL. A set that does not exist
///   (no lease: Redis deletes an empty set) is neither cleaned nor asked its TTL: two calls fewer for a key's first
///   request, which is every request of a key that is rarely busy. A release removes the member;
///   a renewal moves its expiry to now + TTL only where it still is (`ZADD XX`: a lease that was released or lost, as
///   when Redis restarted, is not brought back).
/// - The reply: per request 2 integers: the 1-based index of the first enforced item that refused (0: acquired), and
///   of the first shadow item that was over its `max` (0: none). Release and renewal answer 0, 0.
enum LeaseScript {
    static let source = #"""
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
        local ttl = tonumber(ARGV[1])
        local expiry = now + ttl
        local reply = {}
        local a, k = 3, 0
        for q = 1, tonumber(ARGV[2]) do
          local op, member, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
          a = a + 3
          local refused, over = 0, 0
          if op == 'a' then
            local held = {}
            for i = 1, n do
              local key = KEYS[k + i]
              local count = redis.call('ZCARD', key)
              if count > 0 then count = count - redis.call('ZREMRANGEBYSCORE', key, '-inf', now) end
              held[i] = count
              if count >= tonumber(ARGV[a + 2 * (i - 1)]) then
                if ARGV[a + 2 * (i - 1) + 1] == '1' then
                  if refused == 0 then refused = i end
                elseif over == 0 then over = i end
              end
            end
            if refused == 0 then
              for i = 1, n do
                local key = KEYS[k + i]
                redis.call('ZADD', key, expiry, member)
                if held[i] == 0 then
                  redis.call('PEXPIRE', key, ttl)
                elseif redis.call('PTTL', key) < ttl then
                  redis.call('PEXPIRE', key, ttl)
                end
              end
            else
              over = 0
            end
            a = a + 2 * n
          elseif op == 'r' then
            for i = 1, n do redis.call('ZREM', KEYS[k + i], member) end
          else
            for i = 1, n do
              local key = KEYS[k + i]
              if redis.call('ZADD', key, 'XX', 'CH', expiry, member) == 1 and redis.call('PTTL', key) < ttl then
                redis.call('PEXPIRE', key, ttl)
              end
            end
          end
          k = k + n
          reply[#reply + 1] = refused
          reply[#reply + 1] = over
        end
        return reply
        """#
}

/// One request's part of a ``LeaseScript`` call.
struct LeaseRequest: Sendable {
    enum Operation: String, Sendable {
        case acquire = "a"
        case release = "r"
        case renew = "n"
    }

    /// What the script answered for one request (1-based indexes, 0 for none).
    struct Answer: Sendable, Equatable {
        var refused: Int
        var overMax: Int
    }

    var operation: Operation
    var member: String
    /// The sets, one per item.
    var keys: [String]
    /// Acquire only: each item's `max` and whether it is enforced.
    var maxes: [Int] = []
    var enforced: [Bool] = []
    /// Gets this request's answer or the call's failure, on the loop the reply arrives on.
    var completion: (@Sendable (Result<Answer, any Error>) -> Void)?

    /// `EVALSHA sha` (or `EVAL source`) `numkeys KEYS... ARGV...` for `requests` (see ``LeaseScript``).
    static func call(
        _ command: String,
        _ script: String,
        requests: some Collection<LeaseRequest>,
        ttlMilliseconds: Int64
    ) -> RedisCommand {
        // Written straight into one buffer (no buffer per argument): a request's acquire and its release each pass here.
        var keys = 0
        var arguments = 2
        var bytes = command.utf8.count + script.utf8.count + 64
        for request in requests {
            keys += request.keys.count
            arguments += 3 + (request.operation == .acquire ? 2 * request.keys.count : 0)
            bytes += request.member.utf8.count + 32 + request.keys.count * 40
            for key in request.keys { bytes += key.utf8.count }
        }
        var writer = RESPCommandWriter(count: 3 + keys + arguments, capacity: bytes)
        writer.write(command)
        writer.write(script)
        writer.write(Int64(keys))
        for request in requests {
            for key in request.keys { writer.write(key) }
        }
        writer.write(ttlMilliseconds)
        writer.write(Int64(requests.count))
        for request in requests {
            writer.write(request.operation.rawValue)
            writer.write(request.member)
            writer.write(Int64(request.keys.count))
            if request.operation == .acquire {
                for index in 0..<request.keys.count {
                    writer.write(Int64(index < request.maxes.count ? request.maxes[index] : 0))
                    writer.write(index < request.enforced.count && !request.enforced[index] ? Int64(0) : Int64(1))
                }
            }
        }
        return RedisCommand(name: command, encoded: writer.buffer)
    }

    /// Hands each request its answer; all of them fail when the reply is not shaped as the script's.
    static func complete(_ requests: some Collection<LeaseRequest>, with result: Result<RESPValue, any Error>) {
        switch result {
        case .failure(let error):
            for request in requests { request.completion?(.failure(error)) }
        case .success(let reply):
            guard let array = reply.array, array.count == 2 * requests.count,
                array.allSatisfy({ $0.int != nil })
            else {
                let error = RedisError.protocolError("unexpected lease script reply")
                for request in requests { request.completion?(.failure(error)) }
                return
            }
            var offset = 0
            for request in requests {
                let answer = Answer(refused: Int(array[offset].int ?? 0), overMax: Int(array[offset + 1].int ?? 0))
                request.completion?(.success(answer))
                offset += 2
            }
        }
    }
}

/// Concurrency leases, one ``LeaseScript`` call per tick (see ``TickBatcher``).
typealias LeaseBatcher = TickBatcher<LeaseRequest>

extension TickBatcher where Request == LeaseRequest {
    convenience init(eventLoop: any EventLoop) {
        self.init(eventLoop: eventLoop) { store, requests, loop in store.sendLeases(requests, preferring: loop) }
    }
}
