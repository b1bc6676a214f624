/// `server.grpc_rls` (issue 14): the listener of Envoy's rate-limit service, `ShouldRateLimit` over gRPC.
///
/// Written as `grpc_rls: "HOST:PORT"` (plaintext HTTP/2) or `grpc_rls: { listen: "HOST:PORT", tls: { cert, key } }`.
/// The address is the one of the file at start; a reload changes the rules it decides with, not where it listens.
public struct GRPCRateLimitServiceConfiguration: Sendable, Hashable {
    public var listen: ListenAddress
    /// Serve gRPC over TLS with this certificate and key (ALPN `h2`); `nil` (the default): plaintext HTTP/2, as
    /// Envoy's `rate_limit_service` cluster speaks it without a `transport_socket`.
    public var tls: TLSFiles?

    public init(listen: ListenAddress, tls: TLSFiles? = nil) {
        self.listen = listen
        self.tls = tls
    }
}

extension RuleMatch {
    /// `match.descriptor` (issue 14): which descriptors of Envoy's rate-limit service a rule applies to.
    ///
    /// A descriptor meets it when the request's `domain` equals ``domain`` and, for every entry here, the descriptor
    /// has an entry with that key whose value is equal (a `nil` value, `"*"` in YAML, takes any value). With
    /// ``exact``, the descriptor must also have no entry with another key (how envoyproxy/ratelimit matches a
    /// descriptor: the whole list, not a prefix).
    public struct DescriptorCondition: Sendable, Hashable {
        public struct Entry: Sendable, Hashable {
            public var key: String
            /// `nil`: any value.
            public var value: String?
            public init(key: String, value: String?) {
                self.key = key
                self.value = value
            }
        }

        public var domain: String
        /// In file order, each key once.
        public var entries: [Entry]
        /// The descriptor has no entry besides ``entries``. Defaults to `false`.
        public var exact: Bool

        public init(domain: String, entries: [Entry], exact: Bool = false) {
            self.domain = domain
            self.entries = entries
            self.exact = exact
        }
    }
}
