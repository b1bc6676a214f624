import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SluiceRLSProto

/// Load for Envoy's rate-limit service (issue 14): `ShouldRateLimit` calls as fast as they are answered, over C
/// connections with S calls in flight on each, for D seconds; prints the decisions per second.
///
/// Usage: sluice-rls-bench PORT [--connections C] [--streams S] [--duration D] [--keys K]
/// Each call carries one descriptor `[("remote_address", 10.x.y.z)]` of domain `bench`, the address chosen round
/// robin among K (scripts/bench-rls starts the server with a matching rule).
@main
struct RLSBench {
    static func main() async throws {
        var arguments = CommandLine.arguments.dropFirst()
        guard let portArgument = arguments.popFirst().flatMap(Int.init) else {
            FileHandle.standardError.write(Data("usage: sluice-rls-bench PORT [--connections C] [--streams S] [--duration D] [--keys K]\n".utf8))
            exit(2)
        }
        var connectionsArgument = 1
        var streamsArgument = 16
        var duration = 5.0
        var keys = 10_000
        while let option = arguments.popFirst() {
            guard let value = arguments.popFirst() else { exit(2) }
            switch option {
            case "--connections": connectionsArgument = Int(value) ?? connectionsArgument
            case "--streams": streamsArgument = Int(value) ?? streamsArgument
            case "--duration": duration = Double(value) ?? duration
            case "--keys": keys = Int(value) ?? keys
            default:
                FileHandle.standardError.write(Data("sluice-rls-bench: unknown option \(option)\n".utf8))
                exit(2)
            }
        }
        let requests: [Envoy_Service_Ratelimit_V3_RateLimitRequest] = (0..<keys).map { index in
            var entry = Envoy_Extensions_Common_Ratelimit_V3_RateLimitDescriptor.Entry()
            entry.key = "remote_address"
            entry.value = "10.\(index >> 16 & 255).\(index >> 8 & 255).\(index & 255)"
            var descriptor = Envoy_Extensions_Common_Ratelimit_V3_RateLimitDescriptor()
            descriptor.entries = [entry]
            var request = Envoy_Service_Ratelimit_V3_RateLimitRequest()
            request.domain = "bench"
            request.descriptors = [descriptor]
            return request
        }
        let (port, connections, streams) = (portArgument, connectionsArgument, streamsArgument)
        let deadline = ContinuousClock.now + .milliseconds(Int(duration * 1000))
        let start = ContinuousClock.now
        let counts = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for connection in 0..<connections {
                group.addTask {
                    try await withGRPCClient(
                        transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
                    ) { client in
                        let rls = Envoy_Service_Ratelimit_V3_RateLimitService.Client(wrapping: client)
                        return try await withThrowingTaskGroup(of: (Int, Int).self) { calls in
                            for stream in 0..<streams {
                                calls.addTask {
                                    var done = 0
                                    var overLimit = 0
                                    var index = (connection * streams + stream) * 7919
                                    while ContinuousClock.now < deadline {
                                        let response = try await rls.shouldRateLimit(requests[index % requests.count])
                                        if response.overallCode == .overLimit { overLimit += 1 }
                                        done += 1
                                        index += 1
                                    }
                                    return (done, overLimit)
                                }
                            }
                            var total = (0, 0)
                            for try await (done, over) in calls { total = (total.0 + done, total.1 + over) }
                            return total
                        }
                    }
                }
            }
            var total = (0, 0)
            for try await (done, over) in group { total = (total.0 + done, total.1 + over) }
            return total
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rate = Double(counts.0) / seconds
        print(
            "connections=\(connections) streams=\(streams) calls=\(counts.0) over_limit=\(counts.1) "
                + "seconds=\(String(format: "%.2f", seconds)) decisions_per_second=\(Int(rate))"
        )
    }
}
