import SluiceConfig
import Testing
@testable import SluiceLimiter

/// ``LimitOutcome/keyDigest``: which rule's key it names, and that it tells keys apart without showing them.
@Suite struct KeyDigestTests {
    let login = RuleConfiguration(
        name: "login",
        match: RuleMatch(path: .exact("/login")),
        key: [.header("x-api-key")],
        limits: [limit(1, per: 60, "1/minute")],
        algorithm: .fixedWindow
    )
    let perIP = RuleConfiguration(
        name: "per-ip",
        key: [.ip],
        limits: [limit(100, per: 60, "100/minute")],
        algorithm: .fixedWindow
    )

    func request(apiKey: String?, ip: String = "203.0.113.7") -> TestRequest {
        TestRequest(uri: "/login", clientIP: IPAddress(ip)!, headers: apiKey.map { [("X-Api-Key", $0)] } ?? [])
    }

    @Test func namesTheKeyOfTheRuleTheLogNames() {
        let limiter = RateLimiter(configuration: SluiceConfiguration(rules: [self.login, self.perIP]), previous: nil)
        // Admitted: the log names the most constrained rule (login, 0 left), and so does the digest.
        let first = limiter.evaluate(self.request(apiKey: "alpha"), now: at(0))
        #expect(first.decision == .admitted && first.statuses.first?.rule == "login")
        let blocked = limiter.evaluate(self.request(apiKey: "alpha"), now: at(1))
        #expect(blocked.decision == .limited && blocked.rule == "login")
        #expect(first.keyDigest != nil && blocked.keyDigest == first.keyDigest)
        // Same rule, another key: another digest. Same key, another IP: the login digest does not change.
        let beta = limiter.evaluate(self.request(apiKey: "beta"), now: at(2))
        #expect(beta.keyDigest != first.keyDigest)
        let elsewhere = limiter.evaluate(self.request(apiKey: "alpha", ip: "198.51.100.9"), now: at(3))
        #expect(elsewhere.rule == "login" && elsewhere.keyDigest == first.keyDigest)
    }

    @Test func absentWithoutAKey() {
        var deny = self.login
        deny.onMissingKey = .deny
        var exempt = self.perIP
        exempt.exempt = [CIDR("203.0.113.0/24")!]
        let limiter = RateLimiter(configuration: SluiceConfiguration(rules: [deny, exempt]), previous: nil)
        let refused = limiter.evaluate(self.request(apiKey: nil), now: at(0))
        #expect(refused.decision == .limited && refused.rule == "login")
        #expect(refused.keyDigest == nil)
        let exempted = RateLimiter(configuration: SluiceConfiguration(rules: [exempt]), previous: nil)
            .evaluate(self.request(apiKey: nil), now: at(0))
        #expect(exempted.decision == .exempt && exempted.keyDigest == nil)
        #expect(RateLimiter(configuration: SluiceConfiguration(rules: []), previous: nil)
            .evaluate(self.request(apiKey: "alpha"), now: at(0)).keyDigest == nil)
    }

    @Test func isNeitherACounterNorThePenaltyBox() {
        var rule = self.login
        rule.blockFor = .seconds(60)
        let limiter = RateLimiter(configuration: SluiceConfiguration(rules: [rule]), previous: nil)
        let digest = limiter.evaluate(self.request(apiKey: "alpha"), now: at(0)).keyDigest
        let prepared = limiter.prepare(self.request(apiKey: "alpha"), now: at(0))
        #expect(prepared.batch.items.count == 1)
        #expect(digest != prepared.batch.items[0].key)
        #expect(digest != prepared.batch.items[0].penaltyKey)
    }

    @Test func displayHashIsTheFirstTwelveHexDigits() {
        let key = StorageKey(high: 0x0123_4567_89ab_cdef, low: 0xffff_ffff_ffff_ffff)
        #expect(key.displayHash == "0123456789ab")
        #expect(key.description.hasPrefix(key.displayHash))
        #expect(StorageKey(high: 0, low: 1).displayHash == "000000000000")
    }
}
