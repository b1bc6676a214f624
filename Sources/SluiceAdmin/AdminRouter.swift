import NIOHTTP1
import SluiceConfig
import SluiceLimiter

/// Maps one admin request to its answer (SPEC §7).
///
/// No I/O and no NIO channel: ``AdminHTTPHandler`` hands it the method, target and `Authorization` header and
/// writes back the ``AdminResponse``, so every route is testable as a function call.
///
/// Order of checks, and why:
/// 0. Without `admin_token`, a `Host` that is neither `localhost` nor an IP literal gets 421 Misdirected Request, on
///    every path: a web page cannot reach the listener through DNS rebinding (``AdminHostCheck``). With a token, any
///    `Host` is answered: the token defends.
/// 1. `/healthz` and `/readyz` are answered first, without a token, so probes need no secret.
/// 2. With a non-empty `admin_token` (read from the backend per request, so a reload applies at once), anything
///    else needs `Authorization: Bearer TOKEN`, else 401 with `WWW-Authenticate: Bearer`. This comes before
///    routing, so an unauthenticated client cannot learn which paths or rules exist.
/// 3. Unknown path: 404. Known path, wrong method: 405 with `Allow`.
///
/// `HEAD` is accepted wherever `GET` is; the handler leaves the body out.
public struct AdminRouter: Sendable {
    /// The admin endpoints.
    enum Route: Equatable {
        case healthz
        case readyz
        case metrics
        case config
        /// `/`: the status page (HTML).
        case statusPage
        /// `/status`: the JSON the status page polls.
        case status
        /// `/limits/RULE`, the rule name decoded.
        case limits(rule: String)

        init?(path: String) {
            switch path {
            case "/healthz": self = .healthz
            case "/readyz": self = .readyz
            case "/metrics": self = .metrics
            case "/config": self = .config
            case "/": self = .statusPage
            case "/status": self = .status
            default:
                let prefix = "/limits/"
                guard path.hasPrefix(prefix) else { return nil }
                let rule = path.dropFirst(prefix.count)
                guard !rule.isEmpty, !rule.contains("/") else { return nil }
                self = .limits(rule: String(rule))
            }
        }

        /// Whether probes may call it without the token.
        var isOpen: Bool { self == .healthz || self == .readyz }

        var allowedMethods: [HTTPMethod] {
            switch self {
            case .limits: [.GET, .HEAD, .DELETE]
            default: [.GET, .HEAD]
            }
        }
    }

    let backend: any AdminBackend
    let metrics: SluiceMetrics
    let clock: @Sendable () -> LimiterInstant
    let history: RateHistory

    /// - Parameters:
    ///   - backend: the running proxy.
    ///   - metrics: rendered by `/metrics`.
    ///   - clock: the time `/limits` reads counters at and `/status` is stamped with; injected so tests can pin it.
    ///   - history: the sampled rates `/status` serves (``AdminServer`` fills it).
    public init(
        backend: any AdminBackend,
        metrics: SluiceMetrics,
        clock: @escaping @Sendable () -> LimiterInstant,
        history: RateHistory = RateHistory()
    ) {
        self.backend = backend
        self.metrics = metrics
        self.clock = clock
        self.history = history
    }

    /// The answer to one request.
    ///
    /// - Parameters:
    ///   - method: the request method.
    ///   - uri: the request target as sent (path and query).
    ///   - authorization: the `Authorization` header value, `nil` if absent.
    ///   - host: the `Host` header value, `nil` if absent (an HTTP/1.0 request; no browser leaves it out).
    ///
    /// Asynchronous because `/limits` may ask a shared store (Redis) and wait for its answer.
    public func respond(
        method: HTTPMethod,
        uri: String,
        authorization: String?,
        host: String? = nil
    ) async -> AdminResponse {
        let token = self.backend.configuration.server.adminToken.flatMap { $0.isEmpty ? nil : $0 }
        if token == nil, let host, !AdminHostCheck.isLocalOrIPLiteral(host) {
            return .error(
                .misdirectedRequest,
                "without admin_token, the admin listener answers only Host localhost or an IP address"
            )
        }
        guard let target = AdminRequestTarget(uri) else {
            return .error(.badRequest, "malformed request target")
        }
        let route = Route(path: target.path)
        if route?.isOpen != true, let token, !AdminAuthorization.isAuthorized(header: authorization, token: token) {
            var response = AdminResponse.error(.unauthorized, "missing or wrong bearer token")
            response.headers.append(("WWW-Authenticate", "Bearer"))
            return response
        }
        guard let route else {
            return .error(.notFound, "no such endpoint")
        }
        guard route.allowedMethods.contains(method) else {
            var response = AdminResponse.error(.methodNotAllowed, "method not allowed")
            response.headers.append(("Allow", route.allowedMethods.map(\.rawValue).joined(separator: ", ")))
            return response
        }
        switch route {
        case .healthz:
            return .text(.ok, "ok")
        case .readyz:
            // The first line is the verdict; then one line per storage server (memcached's, a Sentinel primary and
            // its sentinels), so a probe's log says which one is missing.
            var body = self.backend.isReady ? "ready" : "not ready"
            for server in self.backend.storageServers {
                body += "\n\(server.role.rawValue) \(server.address) \(server.available ? "ok" : "unavailable")"
            }
            return .text(self.backend.isReady ? .ok : .serviceUnavailable, body)
        case .metrics:
            return self.metricsResponse()
        case .config:
            return .json(.ok, self.backend.configuration.adminJSON)
        case .limits(let rule):
            return await self.limitsResponse(method: method, rule: rule, target: target)
        case .statusPage:
            return AdminResponse(
                status: .ok,
                headers: [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                body: StatusPage.html
            )
        case .status:
            let report = StatusReport(backend: self.backend, history: self.history, now: self.clock())
            var response = AdminResponse.json(.ok, report.json)
            response.headers.append(("Cache-Control", "no-store"))
            return response
        }
    }

    /// `GET /metrics`: the store's numbers are copied in first, so they are as fresh as the scrape.
    private func metricsResponse() -> AdminResponse {
        if let store = self.backend.limiter?.store {
            self.metrics.updateStoreGauges(trackedKeys: store.trackedKeys, evictions: store.evictions)
        }
        let servers = self.backend.storageServers
        if !servers.isEmpty { self.metrics.updateStorageServers(servers) }
        return AdminResponse(
            status: .ok,
            headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
            body: self.metrics.exposition()
        )
    }

    /// `GET` and `DELETE /limits/RULE?key=...`.
    private func limitsResponse(method: HTTPMethod, rule: String, target: AdminRequestTarget) async -> AdminResponse {
        guard let limiter = self.backend.limiter else {
            return .error(.serviceUnavailable, "no configuration loaded yet")
        }
        guard limiter.hasRule(rule) else {
            return .error(.notFound, "no rule named \(rule)")
        }
        guard let key = target.queryValue("key") else {
            return .error(
                .badRequest,
                "missing query parameter: key (the values of the rule's key parts joined with |)"
            )
        }
        do {
            if method == .DELETE {
                // Idempotent: forgiving a key nobody tracks is a success too.
                guard try await limiter.resetKey(rule: rule, displayKey: key, now: self.clock()) != nil else {
                    return .error(.notFound, "no rule named \(rule)")
                }
                return AdminResponse(status: .noContent)
            }
            guard let state = try await limiter.keyState(rule: rule, displayKey: key, now: self.clock()) else {
                return .error(.notFound, "no rule named \(rule)")
            }
            let concurrency = self.backend.concurrencyLimiter?.keyState(rule: rule, displayKey: key)
            return .json(.ok, state.adminJSON(concurrency: concurrency))
        } catch {
            // A shared store that cannot answer: neither full quotas nor a reset that did not happen.
            return .error(.serviceUnavailable, "rate-limit storage unavailable: \(error)")
        }
    }
}

extension KeyState {
    /// SPEC §7's shape, plus `blocked_for` (seconds left in the `block_for` penalty box, `null` when not blocked).
    var adminJSON: AdminJSON { self.adminJSON(concurrency: nil) }

    /// ``adminJSON``, plus `concurrency: {max, in_flight, queued}` for a rule with `concurrency` (issue 22).
    func adminJSON(concurrency: (max: Int, inFlight: Int, queued: Int)?) -> AdminJSON {
        var fields: [(String, AdminJSON)] = [
            ("rule", .string(self.rule)),
            ("key", .string(self.key)),
            (
                "limits",
                .array(
                    self.limits.map { status in
                        .object([
                            ("limit", .string(status.limit.text)),
                            ("remaining", .int(status.remaining)),
                            ("reset", .int(status.resetSeconds)),
                        ])
                    }
                )
            ),
            ("blocked_for", self.blockedForSeconds.map(AdminJSON.int) ?? .null),
        ]
        if let concurrency {
            fields.append(
                (
                    "concurrency",
                    .object([
                        ("max", .int(concurrency.max)), ("in_flight", .int(concurrency.inFlight)),
                        ("queued", .int(concurrency.queued)),
                    ])
                )
            )
        }
        return .object(fields)
    }
}
