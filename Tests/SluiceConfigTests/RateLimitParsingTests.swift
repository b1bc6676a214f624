import Testing

@testable import SluiceConfig

@Suite("Limit strings")
struct RateLimitParsingTests {
    @Test("accepted forms", arguments: [
        ("10/second", 10, 1),
        ("10/seconds", 10, 1),
        ("100 per minute", 100, 60),
        ("1000/5 minutes", 1000, 300),
        ("10 per 2 hours", 10, 7200),
        ("10000 per day", 10000, 86400),
        ("5/s", 5, 1),
        ("5/m", 5, 60),
        ("5/h", 5, 3600),
        ("5/d", 5, 86400),
        ("100/10s", 100, 10),
        ("3 PER 1 Hour", 3, 3600),
        ("  7 / 2 days  ", 7, 172800),
        ("1/minute", 1, 60),
    ])
    func accepted(text: String, count: Int, seconds: Int) throws {
        let limit = try RateLimit.parse(text).get()
        #expect(limit.count == count)
        #expect(limit.periodSeconds == seconds)
        #expect(limit.text == text.trimmingSpaces)
    }

    @Test("refused forms point at the bad part", arguments: [
        ("0/minute", 0, "count must be at least 1"),
        ("minute", 0, "expected a count first, as in 10/minute"),
        ("10 minute", 3, "expected '/' or 'per' after the count"),
        ("10/0 minutes", 3, "period must be greater than 0"),
        ("10/fortnight", 3, "unknown period 'fortnight' (expected second, minute, hour or day)"),
        ("10/month", 3, "unknown period 'month' (expected second, minute, hour or day)"),
        ("10/", 3, "expected a period (second, minute, hour or day)"),
        ("10/minute extra", 10, "unexpected text after the period"),
        ("99999999999999999999/s", 0, "count is too large"),
    ])
    func refused(text: String, offset: Int, message: String) {
        switch RateLimit.parse(text) {
        case .success(let limit):
            Issue.record("'\(text)' parsed as \(limit)")
        case .failure(let problem):
            #expect(problem.offset == offset)
            #expect(problem.message == "invalid limit '\(text)': \(message)")
        }
    }

    @Test("limits given as one ;-separated string, a list, or both")
    func lists() throws {
        let yaml = minimalYAML + """
            rules:
              - name: a
                limits: "5/minute;20/hour;"
              - name: b
                limits: ["5/minute", "20 per hour; 100 per day"]

            """
        let rules = try loadValid(yaml).rules
        #expect(rules[0].limits.map(\.text) == ["5/minute", "20/hour"])
        #expect(rules[1].limits.map(\.text) == ["5/minute", "20 per hour", "100 per day"])
    }

    @Test("errors inside a quoted or ;-joined string carry the column of the bad part")
    func positions() {
        let yaml = minimalYAML + """
            rules:
              - name: a
                limits: "5/minute; 20/hour; 3/5 years"
              - name: b
                limits: ['1/s', '2 per 0 s']
              - name: c
                limits: 1/minute; 2 per minute

            """
        #expect(errorLines(yaml: yaml) == [
            "test.yaml:5:37: limits: invalid limit '3/5 years': unknown period 'years' (expected second, minute, hour or day)",
            "test.yaml:7:28: limits: invalid limit '2 per 0 s': period must be greater than 0",
            "test.yaml:9:23: limits: '2 per minute' has the same period as '1/minute'; keep the stricter one",
        ])
    }
}
