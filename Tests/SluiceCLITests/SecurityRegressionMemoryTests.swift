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
        try await E2E.withSluice({ port in
            E2E.config(
                upstreamPort: port,
                rest: """
                    rules:
                      - name: needs-key
                        key: [header:X-Api-Key]
                        limits: ["100/minute"]
                        on_missing_key: deny
                    """
            )
        }) { sluice in
            // Warm up the paths the attack uses, so their one-off allocations are in the baseline.
            #expect(try await E2E.request(port: sluice.port, "/hello").status == 429)
            #expect(try await E2E.request(port: sluice.port, "/hello", headers: [("X-Api-Key", "k")]).status == 200)
            let before = try Self.residentBytes(of: sluice.process.pid)

            let total = 30 * 1024 * 1024
            let writer = try await UnreadPipelineWriter.connect(port: sluice.port, totalBytes: total)
            writer.start()
            // Until Sluice has read all it is going to: the client's writes and the process's memory both stop
            // growing for a while (its reads come in bursts; and the first answers fill the kernel's buffers
            // before any is queued in the process), or the memory has grown past the bound.
            var peak = before
            var written = 0
            var stableSince = ContinuousClock.now
            let deadline = ContinuousClock.now + .seconds(90)
            while ContinuousClock.now - stableSince < .seconds(5) && ContinuousClock.now < deadline
                && peak - before < 16 * 1024 * 1024
            {
                try await Task.sleep(for: .milliseconds(200))
                let now = try Self.residentBytes(of: sluice.process.pid)
                let writtenNow = writer.bytesWritten
                if now > peak + 256 * 1024 || writtenNow > written {
                    stableSince = ContinuousClock.now
                }
                peak = max(peak, now)
                written = writtenNow
            }
            // More than the kernel holds unread (so Sluice answered thousands, enough to block its output).
            #expect(written > 512 * 1024, "the client could hand over only \(written) B")
            #expect(
                peak - before < 16 * 1024 * 1024,
                "RSS went from \(before / 1024) KiB to \(peak / 1024) KiB with \(written / 1024) KiB of requests written and no answer read"
            )
            await writer.close()
            // Still serving.
            #expect(try await E2E.request(port: sluice.port, "/hello", headers: [("X-Api-Key", "k2")]).status == 200)
        }
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
