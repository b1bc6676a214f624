import Yams

/// `response:` at the top level and in rules (SPEC §2, §5).
extension ConfigReader {
    /// Reads a response section on top of `base`: the defaults for the global section, the global response for a
    /// rule's override. A rule's `headers` are added to the global ones (a rule's header replaces a global one
    /// of the same name) so a rule does not have to repeat them.
    func readResponse(_ node: Node, _ name: String, base: ResponseConfiguration, isOverride: Bool) -> ResponseConfiguration {
        var response = base
        let allowed = ["status", "content_type", "body", "headers", "rate_limit_headers"]
        guard let fields = self.fields(node, name, allowed: allowed) else { return response }
        if let entry = fields["status"], let status = self.integer(entry.value, "status", in: 400...599) {
            response.status = status
        }
        if let entry = fields["content_type"], let value = self.nonEmptyString(entry.value, "content_type") {
            response.contentType = value
        }
        if let entry = fields["body"], let text = self.text(entry.value, "body") {
            switch BodyTemplate.parse(text.value) {
            case .success(let body): response.body = body
            case .failure(let problem): self.error("body: \(problem.message)", at: text.position(atOffset: problem.offset))
            }
        }
        if let entry = fields["headers"], let pairs = self.pairs(entry.value, "headers") {
            var headers: [HeaderField] = isOverride ? response.headers : []
            for (key, value) in pairs {
                guard let name = self.headerName(key, "headers"), let text = self.text(value, "headers.\(key.value)") else {
                    continue
                }
                if text.value.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" }) {
                    self.error("headers: value of '\(name)' must be one line", at: text.position)
                    continue
                }
                if ["content-length", "transfer-encoding", "connection", "content-type"].contains(name.lowercased()) {
                    self.error("headers: '\(name)' is set by Sluice (use content_type for the type)", at: key.position)
                    continue
                }
                headers.removeAll { $0.name.lowercased() == name.lowercased() }
                headers.append(HeaderField(name: name, value: text.value))
            }
            response.headers = headers
        }
        if let entry = fields["rate_limit_headers"] {
            let choices: [(String, ResponseConfiguration.RateLimitHeaders)] = [
                ("draft", .draft), ("legacy", .legacy), ("both", .both), ("none", .none),
            ]
            if let value = self.choice(entry.value, "rate_limit_headers", choices) { response.rateLimitHeaders = value }
        }
        return response
    }

    /// A header name used as a mapping key; must be an RFC 9110 token.
    func headerName(_ key: LocatedText, _ name: String) -> String? {
        guard HTTPToken.isValid(key.value) else {
            self.error("\(name): invalid header name '\(key.value)'", at: key.position)
            return nil
        }
        return key.value
    }
}
