import SluiceConfig
import SluiceLimiter

/// A request head for tests.
struct TestRequest: RequestAttributes {
    var method: String = "GET"
    var uri: String = "/"
    var host: String? = "example.com"
    var clientIP: IPAddress = IPAddress("203.0.113.7")!
    var headers: [(String, String)] = []

    func header(_ name: String) -> String? {
        self.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) {
        for (fieldName, value) in self.headers where fieldName.lowercased() == name.lowercased() {
            guard body(value) else { return }
        }
    }
}

/// A limit string as the loader would produce it.
func limit(_ count: Int, per seconds: Int, _ text: String? = nil) -> RateLimit {
    RateLimit(count: count, periodSeconds: seconds, text: text ?? "\(count)/\(seconds)s")
}

/// Seconds (possibly fractional, in ms) since the epoch.
func at(_ seconds: Int64, ms: Int64 = 0) -> LimiterInstant {
    LimiterInstant(nanosecondsSinceEpoch: seconds * 1_000_000_000 + ms * 1_000_000)
}

let oneSecond: Int64 = 1_000_000_000

/// A fixed key seed, so digests are the same in every run.
let testSeed = StorageKey(high: 0x5eed, low: 0x5eed)

/// Test keys may be written as text: each text names its own digest.
extension StorageKey: ExpressibleByStringLiteral {
    public init(stringLiteral text: String) {
        var hasher = KeyHasher(seed: testSeed)
        hasher.combine(lengthPrefixed: text)
        self = hasher.finalize()
    }
}
