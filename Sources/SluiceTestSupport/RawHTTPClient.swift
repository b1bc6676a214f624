import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// A byte-level HTTP client for tests: sends exactly the bytes it is given (malformed ones too)
/// and parses responses from what comes back, so framing, ordering and closes are all visible.
public final class RawHTTPClient: @unchecked Sendable {
    // @unchecked: the mutable state lives in `state`, behind its lock.
    public struct Response: Sendable {
        public var status: Int
        public var reason: String
        public var version: String
        /// Header names lower-cased, in order.
        public var headers: [(String, String)]
        public var body: [UInt8]
        public var bodyString: String { String(decoding: self.body, as: UTF8.self) }

        public func header(_ name: String) -> String? {
            self.headers.first { $0.0 == name.lowercased() }?.1
        }

        public func headers(_ name: String) -> [String] {
            self.headers.filter { $0.0 == name.lowercased() }.map(\.1)
        }
    }

    public struct TimeoutError: Error, CustomStringConvertible {
        public var description: String
    }

    private struct State {
        var received: [UInt8] = []
        var closed = false
        /// Waiting readers by ticket; each is resumed exactly once, by whoever removes it (new bytes, the close, or
        /// its own 50 ms timer).
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextTicket = 0
    }

    private let state = NIOLockedValueBox(State())
    public let channel: Channel

    /// - Parameters:
    ///   - tls: when given, speaks TLS with this client context (bytes sent before the handshake completes wait
    ///     for it).
    ///   - serverHostname: with `tls`, the name sent in SNI and checked in the server's certificate.
    public static func connect(
        host: String = "127.0.0.1",
        port: Int,
        group: EventLoopGroup,
        tls: NIOSSLContext? = nil,
        serverHostname: String? = "localhost"
    ) async throws -> RawHTTPClient {
        let collector = Collector()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls, serverHostname: serverHostname)
                        )
                    }
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: host, port: port).get()
        let client = RawHTTPClient(channel: channel, collector: collector)
        collector.client = client
        return client
    }

    /// Kept for the TLS events it records: they may arrive before ``Collector/client`` is set.
    private let collector: Collector

    private init(channel: Channel, collector: Collector) {
        self.channel = channel
        self.collector = collector
    }

    fileprivate func append(_ bytes: [UInt8]) {
        let waiters = self.state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.received += bytes
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for w in waiters { w.resume() }
    }

    fileprivate func markClosed() {
        let waiters = self.state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.closed = true
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for w in waiters { w.resume() }
    }

    public var isClosed: Bool { self.state.withLockedValue { $0.closed } }

    /// The last error the connection reported (a failed TLS handshake, a reset), if any.
    public var lastError: String? { self.collector.events.withLockedValue { $0.lastError } }

    /// Waits for the TLS handshake; returns the ALPN protocol the server chose (`nil`: none).
    /// Throws if the connection closes first or the handshake takes longer than `timeout`.
    public func tlsHandshake(timeout: Duration = .seconds(10)) async throws -> String? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (handshake, error) = self.collector.events.withLockedValue { ($0.handshake, $0.lastError) }
            let closed = self.isClosed
            if case .some(let negotiated) = handshake { return negotiated }
            if closed { throw TimeoutError(description: "closed before the TLS handshake completed: \(error ?? "eof")") }
            if ContinuousClock.now >= deadline { throw TimeoutError(description: "no TLS handshake within \(timeout)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The certificate the server presented (after ``tlsHandshake(timeout:)``).
    public func peerCertificate() async throws -> NIOSSLCertificate? {
        try await self.channel.nioSSL_peerCertificate().get()
    }

    public func send(_ text: String) async throws {
        try await self.send(Array(text.utf8))
    }

    public func send(_ bytes: [UInt8]) async throws {
        try await self.channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Waits until `condition` holds on (received bytes, closed) or the timeout passes.
    private func wait(timeout: Duration, _ condition: @escaping @Sendable ([UInt8], Bool) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let done = self.state.withLockedValue { condition($0.received, $0.closed) }
            if done { return }
            if ContinuousClock.now >= deadline { throw TimeoutError(description: "timed out after \(timeout)") }
            // Wake on new data or after a short poll interval (bounded waiting, never a fixed sleep). The waiter
            // carries its own timer: a waiter registered late (a busy machine runs this after the data came) is
            // still resumed, so the deadline above is always checked again.
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let ticket = self.state.withLockedValue { state -> Int? in
                    if condition(state.received, state.closed) { return nil }
                    state.nextTicket += 1
                    state.waiters[state.nextTicket] = c
                    return state.nextTicket
                }
                guard let ticket else {
                    c.resume()
                    return
                }
                self.channel.eventLoop.scheduleTask(in: .milliseconds(50)) {
                    let waiter = self.state.withLockedValue { $0.waiters.removeValue(forKey: ticket) }
                    waiter?.resume()
                }
            }
        }
    }

    /// Waits for the server to close the connection; returns everything received.
    public func waitForClose(timeout: Duration = .seconds(10)) async throws -> [UInt8] {
        try await self.wait(timeout: timeout) { _, closed in closed }
        return self.state.withLockedValue { $0.received }
    }

    /// Reads and removes exactly `count` raw bytes (for tunnels).
    public func readBytes(count: Int, timeout: Duration = .seconds(10)) async throws -> [UInt8] {
        try await self.wait(timeout: timeout) { bytes, closed in bytes.count >= count || closed }
        return try self.state.withLockedValue { state in
            guard state.received.count >= count else {
                throw TimeoutError(description: "connection closed after \(state.received.count) of \(count) bytes")
            }
            defer { state.received.removeFirst(count) }
            return Array(state.received[0..<count])
        }
    }

    /// Bytes received and not yet consumed.
    public var pendingBytes: [UInt8] { self.state.withLockedValue { $0.received } }

    /// Reads and removes the next complete response.
    public func readResponse(isHEAD: Bool = false, timeout: Duration = .seconds(10)) async throws -> Response {
        var parsed: Response?
        try await self.wait(timeout: timeout) { bytes, closed in
            if case .complete = Self.parse(bytes, isHEAD: isHEAD, closed: closed) { return true }
            return closed
        }
        let result = self.state.withLockedValue { state -> ParseResult in
            let r = Self.parse(state.received, isHEAD: isHEAD, closed: state.closed)
            if case .complete(_, let consumed) = r { state.received.removeFirst(consumed) }
            return r
        }
        if case .complete(let response, _) = result { parsed = response }
        guard let parsed else { throw TimeoutError(description: "connection closed before a complete response") }
        return parsed
    }

    public func close() async {
        try? await self.channel.close()
    }

    enum ParseResult {
        case incomplete
        case complete(Response, consumed: Int)
    }

    static func parse(_ bytes: [UInt8], isHEAD: Bool, closed: Bool) -> ParseResult {
        guard let headEnd = Self.find([13, 10, 13, 10], in: bytes, from: 0) else { return .incomplete }
        let headText = String(decoding: bytes[0..<headEnd], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2).map(String.init)
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return .incomplete }
        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        var response = Response(
            status: status,
            reason: statusLine.count > 2 ? statusLine[2] : "",
            version: statusLine[0],
            headers: headers,
            body: []
        )
        var index = headEnd + 4
        if status < 200 || status == 204 || status == 304 || isHEAD {
            return .complete(response, consumed: index)
        }
        if let te = response.header("transfer-encoding"), te.lowercased().contains("chunked") {
            while true {
                guard let lineEnd = Self.find([13, 10], in: bytes, from: index) else { return .incomplete }
                let sizeText = String(decoding: bytes[index..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { return .incomplete }
                index = lineEnd + 2
                if size == 0 {
                    // Trailers end with an empty line.
                    guard let end = Self.find([13, 10, 13, 10], in: bytes, from: index - 2) else { return .incomplete }
                    return .complete(response, consumed: end + 4)
                }
                guard bytes.count >= index + size + 2 else { return .incomplete }
                response.body.append(contentsOf: bytes[index..<(index + size)])
                index += size + 2
            }
        }
        if let cl = response.header("content-length"), let length = Int(cl) {
            guard bytes.count >= index + length else { return .incomplete }
            response.body = Array(bytes[index..<index + length])
            return .complete(response, consumed: index + length)
        }
        // Delimited by close.
        guard closed else { return .incomplete }
        response.body = Array(bytes[index...])
        return .complete(response, consumed: bytes.count)
    }

    static func find(_ needle: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= needle.count, start <= bytes.count - needle.count else { return nil }
        var i = max(0, start)
        while i <= bytes.count - needle.count {
            if bytes[i] == needle[0] {
                var match = true
                for j in 1..<needle.count where bytes[i + j] != needle[j] {
                    match = false
                    break
                }
                if match { return i }
            }
            i += 1
        }
        return nil
    }
}

private final class Collector: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: `client` is set once before the first read and only read on the event loop afterwards;
    // `events` is behind its lock.
    typealias InboundIn = ByteBuffer
    var client: RawHTTPClient?

    struct Events {
        /// Set once a TLS handshake completed: the ALPN protocol the server chose, if any.
        var handshake: String?? = .none
        var lastError: String?
    }

    let events = NIOLockedValueBox(Events())

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        if let bytes = buffer.readBytes(length: buffer.readableBytes) { self.client?.append(bytes) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            self.client?.markClosed()
        }
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let negotiatedProtocol) = event {
            self.events.withLockedValue { $0.handshake = .some(negotiatedProtocol) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.events.withLockedValue { $0.lastError = "\(error)" }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.client?.markClosed()
    }
}
