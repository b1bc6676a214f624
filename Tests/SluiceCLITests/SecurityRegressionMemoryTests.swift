import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SluiceTestSupport
import Testing

/// Issue 18 on the real binary, where the process's memory can be measured.
@Suite("Security regression: memory of unread connections", .timeLimit(.minutes(3)))
struct SecurityRegressionMemoryTests {
    /// Issue 18 item 2: 30 MiB of pipelined requests that Sluice answers itself (429, `on_missing_key: deny`),
    /// on a connection that reads none of the answers, move the process's RSS by less than 16 MiB. (Before the
    /// fix every answer was queued: 20 MiB of requests took RSS from 30 to 452 MiB.)
    @Test func unreadLocalAnswersDoNotGrowMemory() async throws {
        // Loads the machine: never beside the timing tests (TestLoadGate).
        try await TestLoadGate.exclusive { try await self.unreadLocalAnswersDoNotGrowMemoryGated() }
    }

    func unreadLocalAnswersDoNotGrowMemoryGated() async throws {
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                server: """
                      admin: "127.0.0.1:0"
                    """,
                rest: """
                    rules:
                      - name: needs-key
                        key: [header:X-Api-Key]
                        limits: ["100/minute"]
                        on_missing_key: deny
                    """
            )
        }) { sluice in
            let admin = try await AdminEndToEndTests.adminPort(sluice)
            // Warm up the paths the attack uses, so their one-off allocations are in the baseline.
            #expect(try await E2E.request(port: sluice.port, "/hello").status == 429)
            #expect(try await E2E.request(port: sluice.port, "/hello", headers: [("X-Api-Key", "k")]).status == 200)
            let refusedBefore = try await Self.refused(admin: admin)
            let before = try Self.residentBytes(of: sluice.process.pid)

            let total = 30 * 1024 * 1024
            let writer = try await UnreadPipelineWriter.connect(port: sluice.port, totalBytes: total)
            writer.start()
            // Until Sluice has answered all it is going to: far more answers than its bound (the kernel's buffers
            // take the first ones), then neither the count of answers nor the memory grows for a while; or until
            // the memory has grown past the bound.
            var peak = before
            var answered = 0
            var stableSince = ContinuousClock.now
            let deadline = ContinuousClock.now + .seconds(120)
            while ContinuousClock.now < deadline && peak - before < 16 * 1024 * 1024
                && !(answered >= 2000 && ContinuousClock.now - stableSince >= .seconds(3))
            {
                try await Task.sleep(for: .milliseconds(200))
                let now = try Self.residentBytes(of: sluice.process.pid)
                let answeredNow = try await Self.refused(admin: admin) - refusedBefore
                if now > peak + 256 * 1024 || answeredNow > answered {
                    stableSince = ContinuousClock.now
                }
                peak = max(peak, now)
                answered = answeredNow
            }
            let written = writer.bytesWritten
            // About 270 KiB of answers at least: far beyond what Sluice may hold unflushed.
            #expect(answered >= 2000, "Sluice answered only \(answered) requests")
            #expect(
                peak - before < 16 * 1024 * 1024,
                "RSS went from \(before / 1024) KiB to \(peak / 1024) KiB with \(answered) requests answered, \(written / 1024) KiB written, no answer read"
            )
            await writer.close()
            // Still serving.
            #expect(try await E2E.request(port: sluice.port, "/hello", headers: [("X-Api-Key", "k2")]).status == 200)
        }
    }

    /// Requests the rule refused so far, from `sluice_requests_total` at the admin listener.
    static func refused(admin: Int) async throws -> Int {
        let metrics = try await E2E.adminRequest(port: admin, "/metrics")
        let line = metrics.bodyString.split(separator: "\n").first {
            $0.hasPrefix("sluice_requests_total{") && $0.contains("rule=\"needs-key\"") && $0.contains("decision=\"limited\"")
        }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? 0
    }

    /// `VmRSS` of a process, in bytes.
    static func residentBytes(of pid: pid_t) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else {
            throw CancellationError()
        }
        return kib * 1024
    }
}

/// Writes small pipelined requests (`GET /local`, no key) as fast as the connection takes them and never
/// reads: a client that makes the server answer without taking the answers.
final class UnreadPipelineWriter: Sendable {
    let channel: Channel
    private let written: NIOLockedValueBox<Int>

    static func connect(port: Int, totalBytes: Int) async throws -> UnreadPipelineWriter {
        let written = NIOLockedValueBox(0)
        let channel = try await ClientBootstrap(group: E2E.group)
            .channelOption(.autoRead, value: false)
            .channelOption(.socketOption(.so_rcvbuf), value: 64 * 1024)
            // Small, so that each read Sluice makes shows as progress here (a large send buffer only reports
            // free space once half of it is free).
            .channelOption(.socketOption(.so_sndbuf), value: 64 * 1024)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(WriterHandler(totalBytes: totalBytes, written: written))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return UnreadPipelineWriter(channel: channel, written: written)
    }

    private init(channel: Channel, written: NIOLockedValueBox<Int>) {
        self.channel = channel
        self.written = written
    }

    /// Request bytes the kernel has accepted so far.
    var bytesWritten: Int { self.written.withLockedValue { $0 } }

    func start() {
        let channel = self.channel
        channel.eventLoop.execute {
            (try? channel.pipeline.syncOperations.handler(type: WriterHandler.self))?.pump()
        }
    }

    func close() async {
        try? await self.channel.close()
    }

    private final class WriterHandler: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        let block: ByteBuffer
        var remaining: Int
        let written: NIOLockedValueBox<Int>
        var context: ChannelHandlerContext?

        init(totalBytes: Int, written: NIOLockedValueBox<Int>) {
            let request = "GET /local HTTP/1.1\r\nHost: t\r\n\r\n"
            self.block = ByteBuffer(string: String(repeating: request, count: 64 * 1024 / request.utf8.count))
            self.remaining = totalBytes
            self.written = written
        }

        func handlerAdded(context: ChannelHandlerContext) {
            self.context = context
        }

        func pump() {
            guard let context = self.context else { return }
            while self.remaining > 0 && context.channel.isWritable {
                let block = self.block
                self.remaining -= block.readableBytes
                let n = block.readableBytes
                let written = self.written
                context.writeAndFlush(self.wrapOutboundOut(block)).whenSuccess {
                    written.withLockedValue { $0 += n }
                }
            }
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            if context.channel.isWritable { self.pump() }
            context.fireChannelWritabilityChanged()
        }
    }
}
