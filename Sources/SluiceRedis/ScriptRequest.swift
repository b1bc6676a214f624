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
        time: String
    ) -> RedisCommand {
        var items = 0
        for request in requests { items += request.items.count }
        var writer = RESPCommandWriter(
            count: 3 + 2 * items + 2 + 2 * requests.count + 10 * items,
            capacity: script.utf8.count + 64 + items * 200
        )
        writer.write(command)
        writer.write(script)
        writer.write(Int64(2 * items))
        for request in requests {
            for index in 0..<request.items.count {
                let item = request.items[index]
                writer.write(prefix: prefix, key: item.key)
                writer.write(prefix: prefix, key: item.penaltyKey ?? item.key)
            }
        }
        writer.write(time)
        writer.write(Int64(requests.count))
        for request in requests {
            writer.write(request.operation.rawValue)
            writer.write(Int64(request.items.count))
            for index in 0..<request.items.count {
                let item = request.items[index]
                writer.write(Self.code(item.algorithm))
                writer.write(item.limit.count)
                writer.write(item.limit.periodNanoseconds / 1000)
                writer.write(item.limit.burst)
                writer.write(item.limit.delayNanoseconds / 1000)
                writer.write(item.cost)
                writer.write(item.mode == .consume ? 1 : 0)
                writer.write(item.isEnforced ? 1 : 0)
                writer.write(Int64(item.group))
                writer.write(item.penaltyKey == nil ? 0 : item.penaltyNanoseconds / 1000)
            }
        }
        return RedisCommand(name: command, encoded: writer.buffer)
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

    private static func code(_ algorithm: Algorithm) -> Int64 {
        switch algorithm {
        case .fixedWindow: 1
        case .slidingWindow: 2
        case .movingWindow: 3
        case .tokenBucket: 4
        case .gcra: 5
        }
    }
}
