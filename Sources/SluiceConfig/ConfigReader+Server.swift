import Yams

/// `server:` (SPEC §2).
extension ConfigReader {
    func readServer(_ node: Node) -> ServerConfiguration {
        var server = ServerConfiguration()
        let allowed = [
            "listen", "tls", "admin", "admin_token", "threads", "max_header_bytes", "max_body_bytes", "timeouts",
            "trusted_proxies", "client_ip_header", "access_log",
            "max_connections", "admin_max_connections", "http2", "h2c", "http2_max_concurrent_streams", "grpc_rls",
        ]
        guard let fields = self.fields(node, "server", allowed: allowed) else { return server }

        if let entry = fields["listen"], let items = self.textList(entry.value, "listen") {
            var addresses: [ListenAddress] = []
            for item in items {
                guard let address = self.listenAddress(item, "listen") else { continue }
                if addresses.contains(address) {
                    self.error("listen: \(address) is listed twice", at: item.position)
                    continue
                }
                addresses.append(address)
            }
            if items.isEmpty {
                self.error("listen: at least one address is required", at: entry.value)
            } else if !addresses.isEmpty {
                server.listen = addresses
            }
        }
        if let entry = fields["tls"] {
            server.tls = self.readTLSFiles(entry.value)
        }
        if let entry = fields["admin"], let text = self.text(entry.value, "admin") {
            if let admin = self.listenAddress(text, "admin") {
                if admin.port != 0, server.listen.contains(admin) {
                    self.error("admin: \(admin) is also a proxy listen address", at: text.position)
                }
                server.admin = admin
            }
        }
        if let entry = fields["admin_token"], let token = self.string(entry.value, "admin_token") {
            server.adminToken = token.isEmpty ? nil : token
        }
        if let entry = fields["threads"], let text = self.text(entry.value, "threads") {
            if text.value.lowercased() == "auto" {
                server.threads = nil
            } else if let threads = Int(text.value), threads >= 1 {
                server.threads = threads
            } else {
                self.error("threads: expected auto or a number of at least 1, got '\(text.value)'", at: text.position)
            }
        }
        if let entry = fields["max_header_bytes"], let value = self.integer(entry.value, "max_header_bytes", in: 1024...Int.max) {
            server.maxHeaderBytes = value
        }
        if let entry = fields["max_body_bytes"], let value = self.integer(entry.value, "max_body_bytes", in: 0...Int.max) {
            server.maxBodyBytes = value
        }
        if let entry = fields["timeouts"] {
            server.timeouts = self.readTimeouts(entry.value)
        }
        if let entry = fields["trusted_proxies"] {
            server.trustedProxies = self.cidrList(entry.value, "trusted_proxies")
        }
        if let entry = fields["client_ip_header"] {
            let choices: [(String, ClientIPHeader)] = [
                ("X-Forwarded-For", .xForwardedFor), ("X-Real-IP", .xRealIP), ("Forwarded", .forwarded),
            ]
            if let header = self.choice(entry.value, "client_ip_header", choices, caseInsensitive: true) {
                server.clientIPHeader = header
            }
        }
        if let entry = fields["access_log"] {
            server.accessLog = self.readAccessLog(entry.value) ?? server.accessLog
        }
        if let entry = fields["max_connections"],
            let value = self.integer(entry.value, "max_connections", in: 1...Int.max)
        {
            server.maxConnections = value
        }
        if let entry = fields["admin_max_connections"],
            let value = self.integer(entry.value, "admin_max_connections", in: 1...Int.max)
        {
            server.adminMaxConnections = value
        }
        self.readHTTP2(fields, into: &server)
        if let entry = fields["grpc_rls"] {
            server.grpcRLS = self.readGRPCRateLimitService(entry.value, server: server)
        }
        return server
    }

    /// `grpc_rls: "HOST:PORT"` or `grpc_rls: { listen: "HOST:PORT", tls: { cert, key } }` (issue 14).
    private func readGRPCRateLimitService(_ node: Node, server: ServerConfiguration) -> GRPCRateLimitServiceConfiguration? {
        let addressText: LocatedText?
        var tls: TLSFiles?
        if case .mapping = node {
            guard let fields = self.fields(node, "grpc_rls", allowed: ["listen", "tls"]) else { return nil }
            guard let listen = fields["listen"] else {
                self.error("grpc_rls: 'listen' is required", at: node)
                return nil
            }
            addressText = self.text(listen.value, "grpc_rls.listen")
            if let entry = fields["tls"] { tls = self.readTLSFiles(entry.value) }
        } else {
            addressText = self.text(node, "grpc_rls")
        }
        guard let addressText, let address = self.listenAddress(addressText, "grpc_rls") else { return nil }
        if address.port != 0, server.listen.contains(address) || server.admin == address {
            self.error("grpc_rls: \(address) is also a proxy or admin listen address", at: addressText.position)
            return nil
        }
        return GRPCRateLimitServiceConfiguration(listen: address, tls: tls)
    }

    /// `http2`, `h2c` and `http2_max_concurrent_streams` (issue 13).
    private func readHTTP2(_ fields: MappingFields, into server: inout ServerConfiguration) {
        if let entry = fields["http2"], let value = self.boolean(entry.value, "http2") {
            server.http2 = value
        }
        if let entry = fields["h2c"], let value = self.boolean(entry.value, "h2c") {
            server.h2c = value
            if value, !server.http2 {
                self.error("h2c: cleartext HTTP/2 needs http2 (it is false here)", at: entry.value)
            } else if value, server.tls != nil {
                self.error("h2c: the listeners use tls, where HTTP/2 comes through ALPN; h2c is for plain listeners", at: entry.value)
            }
        }
        if let entry = fields["http2_max_concurrent_streams"],
            let value = self.integer(entry.value, "http2_max_concurrent_streams", in: 1...65_535)
        {
            server.http2MaxConcurrentStreams = value
        }
    }

    func listenAddress(_ text: LocatedText, _ name: String) -> ListenAddress? {
        switch ListenAddress.parse(text.value) {
        case .success(let address):
            return address
        case .failure(let problem):
            self.error("\(name): invalid address '\(text.value)': \(problem.message)", at: text.position(atOffset: problem.offset))
            return nil
        }
    }

    private func readTLSFiles(_ node: Node) -> TLSFiles? {
        guard let fields = self.fields(node, "tls", allowed: ["cert", "key"]) else { return nil }
        let cert = fields["cert"].flatMap { self.readableFile($0.value, "cert") }
        let key = fields["key"].flatMap { self.readableFile($0.value, "key") }
        if fields["cert"] == nil { self.error("tls: 'cert' is required", at: node) }
        if fields["key"] == nil { self.error("tls: 'key' is required", at: node) }
        guard let cert, let key else { return nil }
        return TLSFiles(cert: cert, key: key)
    }

    private func readTimeouts(_ node: Node) -> ServerConfiguration.Timeouts {
        var timeouts = ServerConfiguration.Timeouts()
        let keyPaths: [(String, WritableKeyPath<ServerConfiguration.Timeouts, Duration>)] = [
            ("header_read", \.headerRead), ("idle", \.idle), ("upstream_connect", \.upstreamConnect),
            ("upstream_response", \.upstreamResponse), ("shutdown", \.shutdown),
            ("body_read", \.bodyRead), ("send", \.send), ("tunnel_idle", \.tunnelIdle),
        ]
        guard let fields = self.fields(node, "timeouts", allowed: keyPaths.map(\.0)) else { return timeouts }
        for (key, keyPath) in keyPaths {
            if let entry = fields[key], let value = self.duration(entry.value, key, allowZero: false) {
                timeouts[keyPath: keyPath] = value
            }
        }
        return timeouts
    }

    /// A list of CIDRs (or one); each bad entry is reported at its own item.
    func cidrList(_ node: Node, _ name: String) -> [CIDR] {
        guard let items = self.textList(node, name) else { return [] }
        return items.compactMap { item in
            guard let cidr = CIDR(item.value.trimmingSpaces) else {
                self.error("\(name): invalid CIDR '\(item.value)' (expected an address or address/bits, e.g. 10.0.0.0/8)", at: item.position)
                return nil
            }
            return cidr
        }
    }

    /// `stdout`, `off` (also the YAML 1.1 booleans `off`/`false`/`no`, or the strings `"off"`/`"false"`) or a path.
    private func readAccessLog(_ node: Node) -> AccessLog? {
        guard let text = self.text(node, "access_log") else { return nil }
        let plain: Bool
        if case .scalar(let scalar) = node { plain = scalar.style == .plain } else { plain = false }
        let lowered = text.value.lowercased()
        if lowered == "stdout" { return .stdout }
        if lowered == "off" || lowered == "false" || (plain && lowered == "no") { return .off }
        if plain && ["true", "yes", "on"].contains(lowered) {
            self.error("access_log: expected stdout, off or a file path, got '\(text.value)'", at: text.position)
            return nil
        }
        if text.value.isEmpty {
            self.error("access_log: expected stdout, off or a file path, got an empty string", at: text.position)
            return nil
        }
        return .file(text.value)
    }
}
