import Foundation
import SluiceTestSupport
import Testing

/// The status page (admin `GET /`) rendered by a real browser: headless Chromium loads it from the running binary,
/// runs its script against live `/status` data, and the test reads the resulting DOM.
///
/// Skipped when no Chromium is installed (`.ci/run` installs Debian's `chromium`). With
/// `SLUICE_STATUS_SCREENSHOT=PATH` the traffic runs for about a minute in a varying pattern and the screenshot is
/// kept at PATH (`scripts/status-screenshot` makes `docs/status-page.png` this way).
@Suite("status page in headless Chromium") struct StatusPageBrowserTests {
    /// `SLUICE_CHROMIUM`, else the first of Debian's, Ubuntu's and Google's names on `PATH`.
    static let chromium: String? = {
        let environment = ProcessInfo.processInfo.environment
        if let given = environment["SLUICE_CHROMIUM"], FileManager.default.isExecutableFile(atPath: given) {
            return given
        }
        let path = environment["PATH"] ?? "/usr/bin:/bin"
        for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
            for directory in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
                return "\(directory)/\(name)"
            }
        }
        return nil
    }()

    static let screenshotPath = ProcessInfo.processInfo.environment["SLUICE_STATUS_SCREENSHOT"]

    static let rules = """
        rules:
          - name: login
            match: { methods: [POST], path: /hello }
            key: [header:X-Api-Key]
            limits: ["3/minute"]
          - name: api
            match: { path: /status }
            key: [ip]
            limits: ["20/second"]
            algorithm: token_bucket
          - name: search-shadow
            match: { path: /status, headers: { X-Feature: search } }
            key: [ip]
            limits: ["2/second"]
            mode: shadow
          - name: uploads
            match: { methods: [POST], path: /hello }
            key: [ip]
            concurrency: { max: 4, queue: { size: 8, timeout: 2s } }
        """
    // The test upstream answers `POST /hello` and `/status?code=N`; the rules are named for what they would
    // guard in front of a real application.

    /// API keys the traffic uses: they must never show up on the page.
    static let apiKeys = ["sk_live_alpha_0001", "sk_live_bravo_0002", "sk_live_charlie_0003"]

    @Test(.enabled(if: chromium != nil, "chromium is not installed (apt-get install chromium)"))
    func rendersLiveRatesKeysAndHealth() async throws {
        let browser = try #require(Self.chromium)
        try await E2E.withSluice({ port in
            E2E.config(upstreamPort: port, server: "  admin: \"127.0.0.1:0\"", rest: Self.rules)
        }) { sluice async throws in
            let admin = try await AdminEndToEndTests.adminPort(sluice)
            let rounds = Self.screenshotPath == nil ? 0..<1 : 0..<75
            try await Self.sendTraffic(port: sluice.port, rounds: rounds, keysJoinEvery: rounds.count > 1 ? 10 : 0)
            let trafficEnded = Int(E2E.unixNow * 1000)
            // A reload with the same file: the page reports it.
            sluice.process.signal(SIGHUP)
            try await sluice.process.waitForOutput("configuration reloaded")

            // The sampler reads the counters every 2 s: wait for a sample taken after the last request.
            var status: [String: Any] = [:]
            try await E2E.eventually("a sample after the traffic in /status", timeout: .seconds(30)) {
                status = try await AdminEndToEndTests.status(admin: admin)
                let ends = (status["samples"] as? [String: [Int]])?["end_ms"] ?? []
                return (ends.last ?? 0) > trafficEnded
            }
            #expect(Self.lastMinute(status, rule: "login", "limited") > 0)
            #expect(Self.lastMinute(status, rule: "api", "admitted") > 0)
            let keys = try #require((status["limited_keys"] as? [String: Any])?["keys"] as? [[String: Any]])
            let hashes = keys.compactMap { $0["key_hash"] as? String }
            #expect(keys.filter { $0["rule"] as? String == "login" }.count == Self.apiKeys.count, "\(keys)")

            let dom = try await Self.render(browser, url: "http://127.0.0.1:\(admin)/")
            // Filled in by the page's script from /status, not present in the served HTML.
            for rule in ["login", "api", "search-shadow"] {
                #expect(dom.contains("data-rule=\"\(rule)\""), "rule \(rule) has no chart")
            }
            #expect(Self.renderedLastMinute(dom, rule: "login", "limited") == Self.lastMinute(status, rule: "login", "limited"))
            #expect((Self.renderedLastMinute(dom, rule: "login", "limited") ?? 0) > 0)
            #expect((Self.renderedLastMinute(dom, rule: "api", "admitted") ?? 0) > 0)
            #expect(dom.contains("class=\"area limited\""), "the login chart draws its limited requests")
            #expect(dom.contains("class=\"concurrency-chart\""), "the uploads rule has no in-flight chart")
            #expect(dom.contains("class=\"caption concurrency\">now "), "the uploads rule has no in-flight caption")
            for hash in hashes.prefix(3) {
                #expect(dom.contains("<td class=\"hash\">\(hash)</td>"), "key \(hash) is not in the table")
            }
            #expect(dom.contains("id=\"storage-status\" class=\"badge ok\">ok<"))
            #expect(dom.contains("<dd>memory</dd>"))
            #expect(dom.contains("id=\"ready\" class=\"badge ok\">ready<"))
            #expect(dom.contains("last reload: success"))
            #expect(dom.contains("1 applied · 0 refused"))
            #expect(dom.contains("http://127.0.0.1:\(sluice.upstream.port)"), "the upstream target")
            #expect(dom.contains("id=\"banner\" style=\"display: none;\""), "the page reports an error")
            for key in Self.apiKeys { #expect(!dom.contains(key), "a raw API key on the page") }

            let screenshot = Self.screenshotPath
                ?? FileManager.default.temporaryDirectory.appendingPathComponent("sluice-status-\(UUID()).png").path
            // For the README's picture, traffic goes on while it is taken (so "now" is not 0 everywhere).
            let ongoing = Task {
                if Self.screenshotPath != nil {
                    try await Task.sleep(for: .seconds(1))
                    try await Self.sendTraffic(port: sluice.port, rounds: rounds.upperBound..<(rounds.upperBound + 100), keysJoinEvery: 10)
                }
            }
            if Self.screenshotPath != nil { try await Task.sleep(for: .seconds(5)) }
            try await Self.screenshot(browser, url: "http://127.0.0.1:\(admin)/", to: screenshot)
            ongoing.cancel()
            _ = await ongoing.result
            let png = try Data(contentsOf: URL(fileURLWithPath: screenshot))
            #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "not a PNG")
            #expect(png.count > 20_000, "a blank page is a few kB")
            if Self.screenshotPath == nil { try? FileManager.default.removeItem(atPath: screenshot) }
        }
    }

    // MARK: Traffic

    /// Rounds of 2 s of traffic (a single round: as fast as it goes). Key `i` starts in round `i × keysJoinEvery`
    /// with 3 logins (admitted, unless it logged in less than a minute ago) and then, every round, `3 − i` more
    /// (limited: the first key most); bursts on `/status` cross the api rule's budget and the shadow rule's, more in
    /// some rounds, with a few 404s among the upstream's answers.
    static func sendTraffic(port: Int, rounds: Range<Int>, keysJoinEvery: Int) async throws {
        for round in rounds {
            let started = ContinuousClock.now
            for (index, key) in Self.apiKeys.enumerated() where round >= index * keysJoinEvery {
                let attempts = (round == index * keysJoinEvery ? 3 : 0) + 3 - index
                for _ in 0..<attempts {
                    _ = try await E2E.request(port: port, "/hello", method: "POST", headers: [("X-Api-Key", key)])
                }
            }
            let burst = 12 + (round % 7) * 4 + (round / 10) * 6
            for n in 0..<burst {
                let code = n % 17 == 5 ? 404 : 200
                let search = n % 3 == 0 ? [("X-Feature", "search")] : []
                _ = try await E2E.request(port: port, "/status?code=\(code)", headers: search)
            }
            if rounds.count > 1 { try await E2E.sleep(until: started + .seconds(2)) }
        }
    }

    // MARK: Reading results

    static func lastMinute(_ status: [String: Any], rule: String, _ decision: String) -> Int {
        let rules = status["rules"] as? [[String: Any]] ?? []
        let entry = rules.first { $0["name"] as? String == rule }
        return (entry?["last_minute"] as? [String: Int])?[decision] ?? -1
    }

    /// The bold "last minute" number of `decision` in `rule`'s card of the rendered DOM.
    static func renderedLastMinute(_ dom: String, rule: String, _ decision: String) -> Int? {
        guard let card = dom.range(of: "data-rule=\"\(rule)\"") else { return nil }
        let rest = dom[card.upperBound...]
        let end = rest.range(of: "data-rule=\"")?.lowerBound ?? rest.endIndex
        guard let item = rest[..<end].range(of: "data-decision=\"\(decision)\""),
            let number = rest[item.upperBound..<end].range(of: "class=\"last-minute\">")
        else { return nil }
        let digits = rest[number.upperBound...].prefix { $0 != "<" }.filter { $0 != "," }
        return Int(digits)
    }

    // MARK: Chromium

    /// Flags for a headless run that does not need a display, a sandbox (containers) or a profile of its own, and
    /// starts none of the background services a desktop browser runs.
    static func flags(profile: String) -> [String] {
        [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--hide-scrollbars", "--user-data-dir=\(profile)", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-default-apps", "--disable-sync", "--mute-audio",
            "--renderer-process-limit=1",
            // The page's first fetch and render fit easily; virtual time stops while the fetch is on the wire.
            "--virtual-time-budget=5000",
        ]
    }

    static func runBrowser(_ browser: String, _ arguments: [String]) async throws -> String {
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-chromium-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: profile) }
        // At the lowest CPU priority: a browser starting takes both cores of a small machine for a moment, and the
        // suites running beside this one measure timings (Retry-After, gcra delays, 1-second windows) that it
        // would otherwise disturb. This test waits generously instead.
        let nice = "/usr/bin/nice"
        let process =
            FileManager.default.isExecutableFile(atPath: nice)
            ? try SluiceProcess(["-n", "19", browser] + Self.flags(profile: profile) + arguments, executable: nice)
            : try SluiceProcess(Self.flags(profile: profile) + arguments, executable: browser)
        // Generous: a cold Chromium start on a loaded 2-core machine takes seconds.
        let status = try await process.waitForExit(timeout: .seconds(120))
        try await Task.sleep(for: .milliseconds(100))
        #expect(status == 0, "chromium exited \(status): \(process.outputSoFar.suffix(2000))")
        return process.outputSoFar
    }

    /// The DOM after the page's script ran (`--dump-dom` prints it to stdout).
    static func render(_ browser: String, url: String) async throws -> String {
        try await Self.runBrowser(browser, ["--dump-dom", url])
    }

    static func screenshot(_ browser: String, url: String, to path: String) async throws {
        _ = try await Self.runBrowser(browser, ["--window-size=1280,900", "--screenshot=\(path)", url])
    }
}
