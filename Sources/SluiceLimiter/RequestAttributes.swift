import SluiceConfig

/// What the limiter may read of a request: the proxy conforms its request head to this.
///
/// The limiter never sees NIO types; a generic function over this protocol is specialised by
/// the compiler, so reading a header costs no existential box and no copy of the head.
public protocol RequestAttributes {
    /// Method as sent, e.g. `GET`.
    var method: String { get }
    /// Request target as sent (path and query), e.g. `/login?x=1`.
    var uri: String { get }
    /// `Host` header value as sent (may include a port), `nil` if absent.
    var host: String? { get }
    /// The client IP computed per SPEC §4.
    var clientIP: IPAddress { get }
    /// First value of the header, name compared case-insensitively; `nil` if absent.
    func header(_ name: String) -> String?
}
