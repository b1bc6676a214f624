import Testing

@testable import SluiceConfig

@Suite("Durations")
struct DurationSyntaxTests {
    @Test("accepted forms", arguments: [
        ("250ms", Duration.milliseconds(250)),
        ("2s", .seconds(2)),
        ("5m", .seconds(300)),
        ("1h", .seconds(3600)),
        ("1d", .seconds(86400)),
        ("1m30s", .seconds(90)),
        ("1h0m5s", .seconds(3605)),
        ("0s", .zero),
        ("0", .zero),
        (" 10s ", .seconds(10)),
    ])
    func accepted(text: String, expected: Duration) throws {
        #expect(try DurationSyntax.parse(text).get() == expected)
    }

    @Test("refused forms", arguments: ["", "10", "1.5s", "10 s", "10sec", "s", "-1s", "5M", "1h 30m", "99999999999999999999d"])
    func refused(text: String) {
        #expect(throws: ValueSyntaxError.self) { try DurationSyntax.parse(text).get() }
    }

    @Test("block_for and delay accept 0s, timeouts do not")
    func zero() throws {
        let valid = minimalYAML + "rules:\n  - name: r\n    limits: 1/s\n    algorithm: gcra\n    block_for: 0s\n    delay: 0s\n"
        let rule = try #require(try loadValid(valid).rules.first)
        #expect(rule.blockFor == .zero)
        #expect(rule.delay == .zero)
        #expect(errorLines(yaml: minimalYAML + "server:\n  timeouts:\n    idle: 0s\n") == [
            "test.yaml:5:11: idle: must be greater than 0"
        ])
    }

    @Test("body_read, send and tunnel_idle are read like the other timeouts")
    func timeoutsAfterTheHead() throws {
        let yaml = minimalYAML + "server:\n  timeouts:\n    body_read: 250ms\n    send: 5m\n    tunnel_idle: 1d\n"
        let timeouts = try loadValid(yaml).server.timeouts
        #expect(timeouts.bodyRead == .milliseconds(250))
        #expect(timeouts.send == .seconds(300))
        #expect(timeouts.tunnelIdle == .seconds(86400))
        #expect(errorLines(yaml: minimalYAML + "server:\n  timeouts:\n    send: 0s\n    tunnel_idle: soon\n") == [
            "test.yaml:5:11: send: must be greater than 0",
            "test.yaml:6:18: tunnel_idle: invalid duration 'soon' (expected a number and a unit: 250ms, 2s, 5m, 1h, 1d)",
        ])
    }
}
