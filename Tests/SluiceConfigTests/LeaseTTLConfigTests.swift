import Testing

@testable import SluiceConfig

/// `storage.lease_ttl` (issue 22 item 5): the lease of a concurrency slot in Redis.
@Suite("storage.lease_ttl config")
struct LeaseTTLConfigTests {
    @Test("defaults to 30s; a value is read")
    func readsValue() throws {
        let base = minimalYAML + "storage:\n  kind: redis\n  url: redis://127.0.0.1:6379/0\n"
        #expect(try loadValid(base).storage.redis?.leaseTTL == .seconds(30))
        #expect(try loadValid(base + "  lease_ttl: 2s\n").storage.redis?.leaseTTL == .seconds(2))
    }

    @Test("bad values and other storage kinds are errors at file:line:column")
    func errors() {
        let redis = minimalYAML + "storage:\n  kind: redis\n  url: redis://127.0.0.1:6379/0\n"
        #expect(errorLines(yaml: redis + "  lease_ttl: soon\n") == [
            "test.yaml:6:14: lease_ttl: invalid duration 'soon' (expected a number and a unit: 250ms, 2s, 5m, 1h, 1d)"
        ])
        #expect(errorLines(yaml: redis + "  lease_ttl: 0s\n") == ["test.yaml:6:14: lease_ttl: must be greater than 0"])
        #expect(errorLines(yaml: redis + "  lease_ttl: 500ms\n") == ["test.yaml:6:14: lease_ttl must be at least 1s"])
        #expect(errorLines(yaml: minimalYAML + "storage:\n  kind: memory\n  lease_ttl: 2s\n") == [
            "test.yaml:5:3: 'lease_ttl' is only valid with storage kind redis (kind is memory)"
        ])
    }
}
