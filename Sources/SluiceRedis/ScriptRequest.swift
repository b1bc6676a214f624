import NIOCore
import SluiceConfig
import SluiceLimiter

/// One request's part of a ``RedisScript`` call: its limits, decided all or nothing (`decide`), or charged whatever
/// the budget (`commit`, for `count_when`).
///
/// Several requests go out in one call (see ``DecisionBatcher``); the script takes them one after another, so each
/// sees what the ones before it counted, as if they had been sent alone in that order.
struct ScriptRequest: Sendable {
    enum Operation: String, Sendable {
        case decide
        case commit
    }

    var operation: Operation
    var items: SmallArray<2, StoreItem>
    /// Gets this request's part of the reply (1 if admitted, then 5 integers per item), or the call's failure. Runs
    /// on the loop the reply arrives on.
    var completion: @Sendable (Result<ArraySlice<RESPValue>, any Error>) -> Void

    /// How many values of the reply are this request's.
    var replyWidth: Int { 1 + 5 * self.items.count }

    /// `EVALSHA sha` (or `EVAL source`) `numkeys KEYS... ARGV...` for `requests`, written in one buffer (see
    /// ``RedisScript`` for the layout). `time` is microseconds, or empty for the server's clock.
    static func call(
        _ command: String,
        _ script: String,
        requests: some Collection<ScriptRequest>,
        prefix: String,
        time: String,
        clusterTags: Bool = false,
        keysAsArguments: Bool = false
    ) -> RedisCommand {
        var keys = 0
        var items = 0
        for request in requests {
            items += request.items.count
            for index in 0..<request.items.count { keys += Self.penaltyMicroseconds(request.items[index]) > 0 ? 2 : 1 }
        }
        var writer = RESPCommandWriter(
            count: 3 + keys + 2 + requests.count + (keysAsArguments ? 1 : 0),
            capacity: script.utf8.count + 64 + keys * (prefix.utf8.count + 50) + requests.count * 32 + items * 80
        )
        writer.write(command)
        writer.write(script)
        if keysAsArguments {
            // ``RedisScript/clusterSource``: no declared keys; their count and the keys lead the arguments.
            writer.write(Int64(0))
        }
        writer.write(Int64(keys))
        for request in requests {
            for index in 0..<request.items.count {
                let item = request.items[index]
                if clusterTags {
                    // Redis Cluster: the rule key's tag on both, so they share a slot (``RedisKeySlot``).
                    let tag = RedisKeySlot.tag(of: item)
                    writer.write(prefix: prefix, tag: tag, key: item.key)
                    if Self.penaltyMicroseconds(item) > 0, let penaltyKey = item.penaltyKey {
                        writer.write(prefix: prefix, tag: tag, key: penaltyKey)
                    }
                    continue
                }
                writer.write(prefix: prefix, key: item.key)
                if Self.penaltyMicroseconds(item) > 0, let penaltyKey = item.penaltyKey {
                    writer.write(prefix: prefix, key: penaltyKey)
                }
            }
        }
        writer.write(time)
        writer.write(Int64(requests.count))
        for request in requests {
            writer.writePacked(2 + 10 * request.items.count) { index in
                switch index {
                case 0: return request.operation == .commit ? 1 : 0
                case 1: return Double(request.items.count)
                default:
                    let item = request.items[(index - 2) / 10]
                    switch (index - 2) % 10 {
                    case 0: return Self.code(item.algorithm)
                    case 1: return Double(item.limit.count)
                    case 2: return Double(item.limit.periodNanoseconds / 1000)
                    case 3: return Double(item.limit.burst)
                    case 4: return Double(item.limit.delayNanoseconds / 1000)
                    case 5: return Double(item.cost)
                    case 6: return item.mode == .consume ? 1 : 0
                    case 7: return item.isEnforced ? 1 : 0
                    case 8: return Double(item.group)
                    default: return Double(Self.penaltyMicroseconds(item))
                    }
                }
            }
        }
        return RedisCommand(name: command, encoded: writer.buffer)
    }

    /// The item's `block_for` in microseconds, 0 without one; its penalty key is sent only when this is not 0.
    private static func penaltyMicroseconds(_ item: StoreItem) -> Int64 {
        item.penaltyKey == nil ? 0 : item.penaltyNanoseconds / 1000
    }

    /// Hands each request its part of `result`; all of them fail when the reply is not shaped as the script's.
    static func complete(_ requests: some Collection<ScriptRequest>, with result: Result<RESPValue, any Error>) {
        let values: [RESPValue]
        switch result {
        case .failure(let error):
            for request in requests { request.completion(.failure(error)) }
            return
        case .success(let reply):
            var width = 1
            for request in requests { width += request.replyWidth }
            guard let array = reply.array, array.count == width else {
                let error = RedisError.protocolError("unexpected script reply")
                for request in requests { request.completion(.failure(error)) }
                return
            }
            values = array
        }
        var offset = 1  // values[0] is the time used
        for request in requests {
            let end = offset + request.replyWidth
            request.completion(.success(values[offset..<end]))
            offset = end
        }
    }

    private static func code(_ algorithm: Algorithm) -> Double {
        switch algorithm {
        case .fixedWindow: 1
        case .slidingWindow: 2
        case .movingWindow: 3
        case .tokenBucket: 4
        case .gcra: 5
        }
    }
}
