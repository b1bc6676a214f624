extension MemcachedStorageConfiguration {
    /// The servers of a `memcached://host[:port][,host[:port]...]` URL, in order.
    ///
    /// The port defaults to 11211; IPv6 hosts are bracketed (`[::1]:11211`). A trailing `/` is allowed; a user, a
    /// password, a path or query parameters are refused (memcached's text protocol has no login), and so is a server
    /// listed twice.
    static func parseURL(_ text: String) -> Result<[Server], ValueSyntaxError> {
        let scheme = "memcached://"
        guard text.lowercased().hasPrefix(scheme) else {
            return .failure(ValueSyntaxError("invalid memcached URL: expected memcached://host:port[,host:port...]"))
        }
        var scalars = Array(text.unicodeScalars.dropFirst(scheme.count))
        if scalars.last == "/" { scalars.removeLast() }
        if let at = scalars.firstIndex(of: "@") {
            return .failure(
                ValueSyntaxError("invalid memcached URL: memcached takes no user or password", at: scheme.count + at)
            )
        }
        if let stop = scalars.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) {
            return .failure(
                ValueSyntaxError("invalid memcached URL: no path or query parameters after the servers", at: scheme.count + stop)
            )
        }
        let messages = HostPortSyntax.ListMessages<Server>(
            empty: "missing host",
            missingHost: "missing host",
            listedTwice: { _, server in "server \(server) is listed twice" }
        )
        return HostPortSyntax.parseList(
            scalars[...], offset: scheme.count, defaultPort: 11211, label: "invalid memcached URL", messages: messages
        ) { Server(host: $0, port: $1) }
    }

    /// Why `prefix` cannot start memcached keys, or `nil`: keys are at most 250 bytes of printable ASCII without
    /// spaces (the meta protocol's text keys).
    static func keyPrefixProblem(_ prefix: String) -> String? {
        if prefix.utf8.count > Self.maximumKeyPrefixBytes {
            return "key_prefix: at most \(Self.maximumKeyPrefixBytes) bytes with memcached storage, got \(prefix.utf8.count)"
        }
        if prefix.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F }) {
            return "key_prefix: memcached keys take printable ASCII only, without spaces or control characters"
        }
        return nil
    }
}
