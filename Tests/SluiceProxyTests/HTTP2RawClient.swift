import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOPosix
import NIOSSL

/// HTTP/2 frames as raw bytes (RFC 9113 §4.1) for the attack tests: what a hostile client writes, frames NIOHTTP2's
/// own client would never send (a header block that never ends, SETTINGS without end).
enum H2Wire {
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    enum FrameType: UInt8 {
        case data = 0x0, headers = 0x1, rstStream = 0x3, settings = 0x4, ping = 0x6, goAway = 0x7
        case windowUpdate = 0x8, continuation = 0x9
    }

    static let endStream: UInt8 = 0x1
    static let ack: UInt8 = 0x1
    static let endHeaders: UInt8 = 0x4

    /// Error codes of RFC 9113 §7 the tests look for.
    static let protocolError: UInt32 = 0x1
    static let enhanceYourCalm: UInt32 = 0xB

    /// One frame: 9-byte header and `payload`.
    static func frame(_ type: FrameType, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8] = []) -> [UInt8] {
        let length = payload.count
        var bytes: [UInt8] = [UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)]
        bytes += [type.rawValue, flags]
        bytes += [UInt8(truncatingIfNeeded: stream >> 24) & 0x7F, UInt8(truncatingIfNeeded: stream >> 16), UInt8(truncatingIfNeeded: stream >> 8), UInt8(truncatingIfNeeded: stream)]
        return bytes + payload
    }

    /// A SETTINGS frame with `(identifier, value)` pairs (RFC 9113 §6.5.1).
    static func settings(_ pairs: [(UInt16, UInt32)] = []) -> [UInt8] {
        var payload: [UInt8] = []
        for (identifier, value) in pairs {
            payload += [UInt8(identifier >> 8), UInt8(identifier & 0xFF)]
            payload += [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
        }
        return Self.frame(.settings, payload: payload)
    }

    static let settingsAck = Self.frame(.settings, flags: Self.ack)

    /// A request's header block, HPACK-encoded (a fresh encoder: no dynamic table state to share).
    static func headerBlock(path: String, extra: [(String, String)] = []) throws -> [UInt8] {
        var fields: HPACKHeaders = [":method": "GET", ":scheme": "http", ":path": path, ":authority": "test"]
        for (name, value) in extra { fields.add(name: name, value: value) }
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator(), useHuffmanEncoding: false)
        var buffer = ByteBuffer()
        try encoder.encode(headers: fields, to: &buffer)
        return Array(buffer.readableBytesView)
    }

    /// A parsed frame.
    struct Frame {
        var type: UInt8
        var flags: UInt8
        var stream: UInt32
        var payload: [UInt8]

        /// For a GOAWAY: its error code.
        var goAwayCode: UInt32? {
            guard self.type == FrameType.goAway.rawValue, self.payload.count >= 8 else { return nil }
            return self.payload[4..<8].reduce(0) { $0 << 8 | UInt32($1) }
        }
    }

    /// The complete frames at the start of `bytes` (what a server sends: no preface); a truncated last frame is left out.
    static func frames(_ bytes: [UInt8]) -> [Frame] {
        var frames: [Frame] = []
        var i = 0
        while bytes.count - i >= 9 {
            let length = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            guard bytes.count - i - 9 >= length else { break }
            let stream = bytes[(i + 5)..<(i + 9)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7FFF_FFFF
            frames.append(Frame(type: bytes[i + 3], flags: bytes[i + 4], stream: stream, payload: Array(bytes[(i + 9)..<(i + 9 + length)])))
            i += 9 + length
        }
        return frames
    }
}

/// A byte-level HTTP/2 client connection for the attack tests: sends exactly the bytes it is given, collects what
/// the server sends, and notices the close. With `autoRead` off it reads nothing until ``startReading()`` (a client
/// that never takes its answers).
final class HTTP2RawClient: Sendable {
    struct State {
        var received: [UInt8] = []
        var closed = false
        var error: String?
    }

    struct Timeout: Error, CustomStringConvertible {
        var description: String
    }

    let channel: any Channel
    private let state: NIOLockedValueBox<State>

    private init(channel: any Channel, state: NIOLockedValueBox<State>) {
        self.channel = channel
        self.state = state
    }

    /// Connects (TLS with `tls`: the context should offer ALPN `h2`) and, with `handshake`, sends the preface and an
    /// empty SETTINGS, waits for the server's SETTINGS and acknowledges them: a well-behaved start, so what follows
    /// meets the settings the server offered.
    static func connect(
        port: Int,
        tls: NIOSSLContext? = nil,
        handshake: Bool = true,
        group: any EventLoopGroup = ProxyHarness.group
    ) async throws -> HTTP2RawClient {
        let state = NIOLockedValueBox(State())
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: "localhost"))
                    }
                    try channel.pipeline.syncOperations.addHandler(RawCollector(state: state))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        let client = HTTP2RawClient(channel: channel, state: state)
        if handshake {
            try await client.send(H2Wire.preface + H2Wire.settings())
            try await client.waitFor("the server's SETTINGS") { bytes, _ in
                H2Wire.frames(bytes).contains { $0.type == H2Wire.FrameType.settings.rawValue && $0.flags & H2Wire.ack == 0 }
            }
            try await client.send(H2Wire.settingsAck)
        }
        return client
    }

    func send(_ bytes: [UInt8]) async throws {
        try await self.channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Stops reading from the socket: what the server sends stays in the kernel's buffers.
    func stopReading() async throws {
        try await Self.setAutoRead(false, on: self.channel)
    }

    /// Reads again (and what the kernel holds); on a channel the server closed meanwhile there is nothing to do.
    func startReading() async throws {
        try await Self.setAutoRead(true, on: self.channel)
        self.channel.read()
    }

    private static func setAutoRead(_ value: Bool, on channel: Channel) async throws {
        do {
            try await channel.setOption(ChannelOptions.autoRead, value: value).get()
        } catch ChannelError.ioOnClosedChannel {
            // Closed already: what it received is kept in `received`.
        }
    }

    var isClosed: Bool { self.state.withLockedValue { $0.closed } }
    var received: [UInt8] { self.state.withLockedValue { $0.received } }
    var frames: [H2Wire.Frame] { H2Wire.frames(self.received) }
    /// The error code of the first GOAWAY received, if any.
    var goAwayCode: UInt32? { self.frames.lazy.compactMap(\.goAwayCode).first }

    /// Polls until `condition` holds on (bytes received, closed); throws after `timeout`.
    func waitFor(
        within timeout: Duration = .seconds(10),
        _ what: String,
        _ condition: ([UInt8], Bool) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (bytes, closed) = self.state.withLockedValue { ($0.received, $0.closed) }
            if condition(bytes, closed) { return }
            if ContinuousClock.now >= deadline {
                throw Timeout(description: "\(what): not within \(timeout) (closed: \(closed), \(bytes.count) bytes)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits for the server to close the connection.
    func waitForClose(within timeout: Duration = .seconds(10)) async throws {
        try await self.waitFor(within: timeout, "the server closes the connection") { _, closed in closed }
    }

    func close() async {
        try? await self.channel.close()
    }
}

/// Collects the bytes read and notes the close.
private final class RawCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let state: NIOLockedValueBox<HTTP2RawClient.State>

    init(state: NIOLockedValueBox<HTTP2RawClient.State>) {
        self.state = state
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        self.state.withLockedValue { $0.received += buffer.readableBytesView }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.state.withLockedValue { $0.error = "\(error)" }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.state.withLockedValue { $0.closed = true }
        context.fireChannelInactive()
    }
}
