import NIOCore
import NIOEmbedded
import Logging
import NIOHTTP1
import SluiceAdmin
import SluiceConfig
import SluiceHTTP1
import SluiceLimiter
import Testing

@testable import SluiceProxy

/// ``RawRequestAttributes`` (the parser's offsets) against ``HeadAttributes`` over the head NIOHTTP1 decodes from the
/// same bytes and `ProxyHandler.requestHeadReceived` rewrites (absolute form → origin form, its authority the `Host`):
/// the limiter must read one and the same request on both paths.
@Suite("RawRequestAttributes, differential against HeadAttributes")
struct RawRequestAttributesTests {
    static let corpus: [String] = [
        "GET /login?user=alice&x=1 HTTP/1.1\r\nHost: api.example.com\r\nX-API-Key: k1\r\nUser-Agent: t/1\r\n\r\n",
        // Absolute form: the authority is the host, whatever Host says.
        "GET http://Api.Example.com:80/p?q=1&user=bob HTTP/1.1\r\nHost: decoy.example\r\nX-Api-Key: abc\r\n\r\n",
        "GET HTTPS://api.example.com:8443?user=x HTTP/1.1\r\nHost: decoy\r\n\r\n",
        "GET http://h.example HTTP/1.1\r\nhost: decoy\r\nCookie: session=abs\r\n\r\n",
        "GET http://[::1]:8080/v6?user=v6 HTTP/1.1\r\nHost: x\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: star.example\r\n\r\n",
        // Repeated fields, names in every case.
        Self.repeatedKeys,
        // Whitespace around values, empty values.
        "GET /w HTTP/1.1\r\nHost:   spaced.example  \r\nX-Api-Key: \t padded \t\r\nX-Empty:\r\nX-Blank:   \r\n\r\n",
        // Cookies, across fields.
        "GET /c HTTP/1.1\r\nHost: a\r\nCookie: a=1; session=s1; b=2\r\nCookie: session=s2\r\n\r\n",
        "GET /c HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\ncookie: session= s3 ;x=y\r\n\r\n",
        "GET /c HTTP/1.1\r\nHost: a\r\nCookie: session=\r\n\r\n",
        // Query strings: percent-escapes, `+`, repeats, a fragment.
        "GET /search?user=%41l+ice&user=second#frag HTTP/1.1\r\nHost: q.example\r\n\r\n",
        "GET /search?x&user=&user=%20 HTTP/1.1\r\nHost: q.example\r\n\r\n",
        "GET /a/../login/./b/%2e%2E//x?user=p HTTP/1.1\r\nHost: p.example\r\n\r\n",
        // HTTP/1.0 without Host, with and without an absolute target.
        "GET /old?user=z HTTP/1.0\r\nX-Api-Key: k\r\n\r\n",
        "GET http://h10.example/x HTTP/1.0\r\n\r\n",
        // Host spellings.
        "GET / HTTP/1.1\r\nhOsT: MiXed.Example.COM.:8080\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n",
        // Forwarding headers (the client-IP step).
        Self.forwardingChain,
        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: garbage, 198.51.100.2\r\nX-Forwarded-For: 127.0.0.9\r\n\r\n",
        // Methods, a body's head.
        "POST /login HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-Api-Key: post\r\n\r\n",
        "HEAD /login HTTP/1.1\r\nHost: a\r\n\r\n",
        "DELETE /items/7 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        "PURGE /cache HTTP/1.1\r\nHost: a\r\n\r\n",
        // `*` is for OPTIONS only in HTTPRequestHeadParser (NIOHTTP1 takes `M-SEARCH *`).
        "M-SEARCH /upnp HTTP/1.1\r\nHost: 239.255.255.250:1900\r\n\r\n",
        // Non-ASCII in a value (UTF-8).
        "GET /u HTTP/1.1\r\nHost: a\r\nX-Api-Key: cl\u{e9}\r\n\r\n",
    ]

    static let forwardingChain =
        "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.1, 10.0.0.1\r\nx-forwarded-for: 203.0.113.5 , 127.0.0.2\r\n"
        + "X-Real-IP: 198.51.100.7\r\nForwarded: for=198.51.100.9;proto=http, for=\"[2001:db8::1]:4711\"\r\n\r\n"

    static let repeatedKeys = "GET /r HTTP/1.1\r\nHost: a\r\nX-Api-Key: first\r\nx-api-key: second\r\nX-API-KEY: third\r\n\r\n"

    /// Names asked of `header(_:)`: present, absent, repeated, in other cases.
    static let names = [
        "host", "Host", "HOST", "x-api-key", "X-Api-Key", "X-API-KEY", "cookie", "Cookie", "x-forwarded-for",
        "X-Forwarded-For", "x-real-ip", "forwarded", "x-empty", "x-blank", "content-length", "transfer-encoding",
        "user-agent", "absent", "x-api-ke", "x-api-keys", "",
    ]

    // MARK: The two readings of one head

    /// The head `HTTPRequestHeadParser` makes of `text` and exactly its bytes.
    static func parse(_ text: String) -> (ParsedRequestHead, ByteBuffer)? {
        let bytes = Array(text.utf8)
        var parser = HTTPRequestHeadParser(maxHeadBytes: 16384)
        guard case .head(let head) = bytes.withUnsafeBytes({ parser.parse($0) }) else { return nil }
        var buffer = ByteBufferAllocator().buffer(capacity: head.length)
        buffer.writeBytes(bytes[0..<head.length])
        return (head, buffer)
    }

    /// The head NIOHTTP1 decodes from `text`, rewritten as `ProxyHandler.requestHeadReceived` rewrites it; `nil`
    /// when NIO refuses it or the target is not one Sluice forwards.
    static func nioHead(_ text: String) -> HTTPRequestHead? {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        defer { _ = try? channel.finish() }
        var buffer = channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        _ = try? channel.writeInbound(buffer)
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            guard case .head(var head) = part else { continue }
            switch AbsoluteFormTarget.parse(head.uri) {
            case .notAbsolute:
                return head
            case .absolute(let authority, let originForm):
                head.uri = originForm
                head.headers.replaceOrAdd(name: "Host", value: String(authority))
                return head
            case .invalid:
                return nil
            }
        }
        return nil
    }

    static let clientIP = IPAddress("203.0.113.7")!

    /// Both readings of a corpus head (each must accept it).
    static func both(_ text: String) throws -> (raw: RawRequestAttributes, nio: HeadAttributes) {
        let (head, bytes) = try #require(Self.parse(text), "the parser refuses \(text.debugDescription)")
        let nio = try #require(Self.nioHead(text), "NIOHTTP1 refuses \(text.debugDescription)")
        let raw = try #require(RawRequestAttributes(head: head, bytes: bytes, clientIP: Self.clientIP))
        return (raw, HeadAttributes(head: nio, clientIP: Self.clientIP))
    }

    static func trimmed(_ value: String?) -> String? {
        value.map { String(FieldValueTrim.trim($0)) }
    }

    static func values(_ request: some RequestAttributes, _ name: String) -> [String] {
        var values: [String] = []
        request.forEachHeaderValue(name) { values.append($0); return true }
        return values
    }

    // MARK: Attributes

    @Test(arguments: Self.corpus)
    func methodURIAndHostAgree(_ text: String) throws {
        let (raw, nio) = try Self.both(text)
        // NIO names M-SEARCH `MSEARCH`; the raw path keeps the token as sent.
        #expect(raw.method == (nio.method == "MSEARCH" ? "M-SEARCH" : nio.method))
        #expect(raw.uri == nio.uri)
        #expect(Self.trimmed(raw.host) == Self.trimmed(nio.host))
        #expect(raw.clientIP == nio.clientIP)
    }

    @Test(arguments: Self.corpus)
    func headersAgree(_ text: String) throws {
        let (raw, nio) = try Self.both(text)
        for name in Self.names {
            // NIOHTTP1 may keep whitespace after a value; the parser drops it, and the limiter trims both.
            #expect(Self.trimmed(raw.header(name)) == Self.trimmed(nio.header(name)), "header(\(name))")
            #expect(raw.header(name) == Self.trimmed(raw.header(name)), "header(\(name)) is trimmed")
            // forEachHeaderValue takes a lower-case name (RequestAttributes); the raw reading ignores case anyway.
            let lowercased = name.lowercased()
            let rawValues = Self.values(raw, lowercased)
            #expect(rawValues == Self.values(nio, lowercased).map { Self.trimmed($0)! }, "forEachHeaderValue(\(name))")
            #expect(Self.values(raw, name) == rawValues, "forEachHeaderValue(\(name)) in its own case")
            // The client-IP step's values.
            #expect(Array(raw.headerValues(name)) == nio.head.headers[name].map { Self.trimmed($0)! }, "headerValues(\(name))")
        }
    }

    @Test func forEachHeaderValueStopsWhenAsked() throws {
        let (raw, _) = try Self.both(Self.repeatedKeys)
        var seen: [String] = []
        raw.forEachHeaderValue("x-api-key") { seen.append($0); return seen.count < 2 }
        #expect(seen == ["first", "second"])
    }

    @Test func absoluteFormAuthorityStandsForEveryHostField() throws {
        let (raw, _) = try Self.both("GET http://Api.Example.com:80/p?q HTTP/1.1\r\nHost: decoy\r\n\r\n")
        #expect(raw.uri == "/p?q")
        #expect(raw.host == "Api.Example.com:80")
        #expect(raw.header("HOST") == "Api.Example.com:80")
        #expect(Self.values(raw, "host") == ["Api.Example.com:80"])
        #expect(Array(raw.headerValues("Host")) == ["Api.Example.com:80"])
    }

    /// A target the parser takes but Sluice does not forward: the NIOHTTP1 path answers 400, the raw reading is nil.
    @Test(arguments: [
        "GET ftp://files.example/x HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://a.example:123456/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://a.example:/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ])
    func targetsSluiceDoesNotForwardAreRefused(_ text: String) throws {
        let (head, bytes) = try #require(Self.parse(text), "the parser refuses \(text.debugDescription)")
        #expect(RawRequestAttributes(head: head, bytes: bytes, clientIP: Self.clientIP) == nil)
        let target = String(decoding: bytes.readableBytesView[head.target], as: UTF8.self)
        #expect(AbsoluteFormTarget.parse(target) == .invalid)
    }

    /// Offsets index the buffer's readable bytes from 0, wherever its reader index stands.
    @Test func readsFromTheReaderIndex() throws {
        let text = Self.corpus[0]
        let (head, bytes) = try #require(Self.parse(text))
        var shifted = ByteBufferAllocator().buffer(capacity: 64)
        shifted.writeString("leftover bytes of the previous request")
        shifted.moveReaderIndex(forwardBy: shifted.readableBytes)
        shifted.writeImmutableBuffer(bytes)
        let raw = try #require(RawRequestAttributes(head: head, bytes: shifted, clientIP: Self.clientIP))
        #expect(raw.method == "GET")
        #expect(raw.uri == "/login?user=alice&x=1")
        #expect(raw.host == "api.example.com")
        #expect(raw.header("x-api-key") == "k1")
    }

    // MARK: The limiter

    static let once = [RateLimit(count: 1, periodSeconds: 60, text: "1/minute")]

    static let rules: [RuleConfiguration] = [
        RuleConfiguration(name: "by-header", key: [.header("x-api-key")], limits: Self.once),
        RuleConfiguration(name: "by-cookie", key: [.cookie("session")], limits: Self.once),
        RuleConfiguration(name: "by-query", key: [.query("user")], limits: Self.once),
        RuleConfiguration(name: "by-path", key: [.path], limits: Self.once),
        RuleConfiguration(name: "by-host", key: [.host], limits: Self.once),
        RuleConfiguration(name: "by-method", key: [.method, .ip], limits: Self.once),
        RuleConfiguration(
            name: "all-parts",
            key: [.ip, .ipPrefix(24), .header("x-api-key"), .query("user"), .path, .method, .host, .const("c")],
            limits: Self.once,
            onMissingKey: .deny
        ),
        RuleConfiguration(
            name: "matched",
            match: RuleMatch(
                methods: ["GET"],
                path: .prefix("/login"),
                host: "api.example.com",
                headers: [.init(name: "x-api-key", value: "k1")]
            ),
            key: [.ip],
            limits: Self.once
        ),
        RuleConfiguration(
            name: "host-match",
            match: RuleMatch(host: "api.example.com"),
            key: [.header("cookie")],
            limits: Self.once,
            onMissingKey: .fallback([.ip])
        ),
    ]

    /// For each rule alone: the same key values and digest, and the second reading of the request is counted
    /// against the first's key (limit 1: limited if the first was admitted).
    @Test(arguments: Self.corpus)
    func limiterReadsTheSameRequest(_ text: String) throws {
        let (raw, head) = try Self.both(text)
        // The one spelling that differs (mSearchIsReadAsSent): compared as sent.
        let nio = SpelledAsSent(base: head)
        let now = LimiterInstant(nanosecondsSinceEpoch: 1_700_000_000 * 1_000_000_000)
        for rule in Self.rules {
            let path = PathNormalizer.normalize(raw.uri)
            #expect(path == PathNormalizer.normalize(nio.uri))
            let builder = KeyBuilder(parts: rule.key)
            #expect(builder.values(for: raw, path: path) == builder.values(for: nio, path: path), "\(rule.name)")

            let limiter = RateLimiter(configuration: SluiceConfiguration(rules: [rule]), previous: nil)
            // The same store items (storage keys included) before anything is counted.
            #expect(
                limiter.prepare(raw, now: now).batch.items.map(\.key) == limiter.prepare(nio, now: now).batch.items.map(\.key),
                "\(rule.name): \(text.debugDescription)"
            )
            let first = limiter.evaluate(nio, now: now)
            let second = limiter.evaluate(raw, now: now)
            let third = limiter.evaluate(nio, now: now)
            // The rule the access log names (as LimiterGate reads it).
            #expect(second.rule ?? second.statuses.first?.rule == first.rule ?? first.statuses.first?.rule, "\(rule.name)")
            switch first.decision {
            case .admitted:
                // Counted against the first reading's key: limit 1 is used up.
                #expect(second.decision == .limited, "\(rule.name): \(text.debugDescription)")
                #expect(second.keyDigest != nil && second.keyDigest == third.keyDigest, "\(rule.name): \(text.debugDescription)")
            default:
                // No rule matched, the key is missing (skip or deny), or the rule is exempt: the same for both.
                #expect(second.decision == first.decision, "\(rule.name): \(text.debugDescription)")
                #expect(second.keyDigest == first.keyDigest, "\(rule.name): \(text.debugDescription)")
            }
        }
    }

    /// Through the gate as the proxy holds it (`any RequestGate`): the raw reading of a request is limited by the
    /// quota the NIOHTTP1 reading used, with the same rule and key digest for the access log.
    @Test func gateDecidesBothReadingsAlike() throws {
        let (raw, nio) = try Self.both(Self.corpus[0])
        let limiter = RateLimiter(configuration: SluiceConfiguration(rules: [Self.rules[0]]), previous: nil)
        let gate: any RequestGate = LimiterGate(
            limiter: limiter,
            logger: Logger(label: "test"),
            metrics: SluiceMetrics(),
            limitedKeys: LimitedKeyTracker()
        )
        let loop = EmbeddedEventLoop()
        var nioContext = GateContext(clientIP: Self.clientIP, peerIP: Self.clientIP)
        guard case .forward = gate.decide(nio, context: &nioContext, eventLoop: loop) else {
            Issue.record("the first request is not forwarded")
            return
        }
        var rawContext = GateContext(clientIP: Self.clientIP, peerIP: Self.clientIP)
        guard case .answer(let answer) = gate.decide(raw, context: &rawContext, eventLoop: loop) else {
            Issue.record("the second request is not answered")
            return
        }
        #expect(answer.status == .tooManyRequests)
        #expect(rawContext.rule == nioContext.rule && rawContext.rule == "by-header")
        #expect(rawContext.keyDigest != nil && rawContext.keyDigest == nioContext.keyDigest)
        #expect(rawContext.decision == "limited" && nioContext.decision == "admitted")
    }

    /// `M-SEARCH` is the one method the two readings spell differently (see RawRequestAttributes).
    @Test func mSearchIsReadAsSent() throws {
        let (raw, nio) = try Self.both("M-SEARCH /upnp HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(raw.method == "M-SEARCH")
        #expect(nio.method == "MSEARCH")
        let rule = RuleConfiguration(
            name: "upnp",
            match: RuleMatch(methods: ["M-SEARCH"]),
            limits: Self.once
        )
        let limiter = RateLimiter(configuration: SluiceConfiguration(rules: [rule]), previous: nil)
        let now = LimiterInstant(nanosecondsSinceEpoch: 1_700_000_000 * 1_000_000_000)
        #expect(limiter.evaluate(nio, now: now).decision == .noRule)
        #expect(limiter.evaluate(raw, now: now).decision == .admitted)
    }

    // MARK: The client-IP step

    @Test(arguments: Self.corpus)
    func clientIPAgrees(_ text: String) throws {
        let (raw, nio) = try Self.both(text)
        let peer = IPAddress("127.0.0.1")!
        for header in [ClientIPHeader.xForwardedFor, .xRealIP, .forwarded] {
            for trusted in [["127.0.0.0/8"], ["127.0.0.0/8", "10.0.0.0/8"], []] {
                let resolver = ClientIPResolver(trustedProxies: trusted.map { CIDR($0)! }, header: header)
                // As ProxyHandler.requestHeadReceived asks on each path.
                let fromNIO = resolver.resolve(
                    peer: peer,
                    headerValues: resolver.trustedProxies.isEmpty ? [] : nio.head.headers[header.rawValue]
                )
                let fromRaw = resolver.resolve(peer: peer, headerValues: raw.headerValues(header.rawValue))
                #expect(fromRaw == fromNIO, "\(header) \(trusted): \(text.debugDescription)")
            }
        }
    }

    @Test func clientIPFromTheChain() throws {
        var (raw, _) = try Self.both(Self.forwardingChain)
        let resolver = ClientIPResolver(trustedProxies: [CIDR("127.0.0.0/8")!, CIDR("10.0.0.0/8")!], header: .xForwardedFor)
        raw.clientIP = resolver.resolve(peer: IPAddress("127.0.0.1")!, headerValues: raw.headerValues("X-Forwarded-For"))
        #expect(raw.clientIP == IPAddress("203.0.113.5")!)
    }
}

/// RFC 9110 §5.5 trimming for the comparisons (the limiter's own `FieldValue` is internal to SluiceLimiter).
private enum FieldValueTrim {
    static func trim(_ value: String) -> Substring {
        var s = value[...]
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}

/// A reading with NIO's `MSEARCH` spelled `M-SEARCH`, as on the wire; everything else as `base` reads it.
private struct SpelledAsSent<Base: RequestAttributes>: RequestAttributes {
    let base: Base
    var method: String { self.base.method == "MSEARCH" ? "M-SEARCH" : self.base.method }
    var uri: String { self.base.uri }
    var host: String? { self.base.host }
    var clientIP: IPAddress { self.base.clientIP }
    func header(_ name: String) -> String? { self.base.header(name) }
    func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) { self.base.forEachHeaderValue(name, body) }
}
