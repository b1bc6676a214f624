import FuzzSupport
@testable import SluiceConfig
@testable import SluiceProxy

/// The small parsers of configuration values and forwarding fields, on the same arbitrary text:
/// - limit strings (`RateLimit.parse`): a limit read back from its own text is the same limit; offsets of errors
///   lie inside the text;
/// - durations (``DurationSyntax``): never negative;
/// - IP addresses and CIDRs: an address or block read back from its printed form is the same; a block contains its
///   network and its network is masked;
/// - `host:port` authorities (``HostPortSyntax``), upstream URLs, key parts and `${VAR}` expansion: no trap;
/// - the client IP behind trusted proxies (``ClientIPResolver``) from `X-Forwarded-For`, `X-Real-IP` and
///   `Forwarded` values (one per line of the input): an untrusted peer is the client whatever the fields say, and
///   the fields read in order always give one same answer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSyntax(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: FuzzInput.bytes(data, size), as: UTF8.self)
    let scalarCount = text.unicodeScalars.count

    switch RateLimit.parse(text) {
    case .success(let limit):
        fuzzCheck(limit.count >= 1 && limit.periodSeconds >= 1, "limit \(limit.count)/\(limit.periodSeconds)s from \(text.debugDescription)")
        guard case .success(let again) = RateLimit.parse(limit.text) else {
            fuzzCheck(false, "the text \(limit.text.debugDescription) of a limit does not parse")
            return 0
        }
        fuzzCheck(again == limit, "limit \(limit) read back as \(again)")
    case .failure(let error):
        fuzzCheck(error.offset >= 0 && error.offset <= scalarCount, "offset \(error.offset) in \(scalarCount) scalars")
    }

    if case .success(let duration) = DurationSyntax.parse(text) {
        fuzzCheck(duration >= .zero, "negative duration \(duration) from \(text.debugDescription)")
    }

    if let address = IPAddress(text) {
        fuzzCheck(IPAddress(address.description) == address, "\(address) does not read back from \(text.debugDescription)")
    }
    if let block = CIDR(text) {
        fuzzCheck(CIDR(block.description) == block, "\(block) does not read back from \(text.debugDescription)")
        fuzzCheck(block.contains(block.network), "\(block) does not contain its network")
        fuzzCheck(block.network.masked(toPrefix: block.prefixLength) == block.network, "\(block) network not masked")
    }
    if case .success(let parts) = HostPortSyntax.parse(text[...], offset: 0, defaultPort: 80, portRange: 1...65535) {
        fuzzCheck((1...65535).contains(parts.port), "port \(parts.port) from \(text.debugDescription)")
    }
    _ = ListenAddress.parse(text)
    _ = UpstreamTarget.parse(text)
    _ = KeyPart.parse(text)
    _ = PathPattern.parse(text)
    _ = EnvironmentExpansion.expand(text, environment: ["A": "1", "EMPTY": ""])

    let values = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    for header in [ClientIPHeader.xForwardedFor, .xRealIP, .forwarded] {
        let resolver = ClientIPResolver(trustedProxies: SyntaxFuzzing.trusted, header: header)
        let untrusted = resolver.resolve(peer: SyntaxFuzzing.untrustedPeer, headerValues: values)
        fuzzCheck(untrusted == SyntaxFuzzing.untrustedPeer, "an untrusted peer's \(header.rawValue) was believed: \(untrusted)")
        let first = resolver.resolve(peer: SyntaxFuzzing.trustedPeer, headerValues: values)
        let second = resolver.resolve(peer: SyntaxFuzzing.trustedPeer, headerValues: values)
        fuzzCheck(first == second, "two answers for one \(header.rawValue): \(first), \(second)")
    }
    return 0
}

enum SyntaxFuzzing {
    static let trusted = [CIDR("10.0.0.0/8")!, CIDR("192.168.0.0/16")!, CIDR("::1")!, CIDR("fc00::/7")!]
    static let trustedPeer = IPAddress("10.0.0.1")!
    static let untrustedPeer = IPAddress("203.0.113.9")!
}
