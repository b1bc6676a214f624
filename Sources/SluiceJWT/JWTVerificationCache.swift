import Crypto
import SluiceLimiter

/// The checks of recent tokens on one event loop (issue 15): a client that reuses its token costs one signature check,
/// not one per request.
///
/// Keyed by the token's SHA-256 digest (the token itself is not kept), bounded: when full, the least recently used
/// entry goes. A verified token is answered until its `exp` (plus the clock skew), then as ``JWTFailure/expired``; a
/// failure that time cannot cure (bad signature, wrong issuer, ...) is cached as well, so a client repeating a bad
/// token costs no signature check either. The cache belongs to one verifier: the first call with another one (after a
/// reload, whose keys or issuers may differ) empties it.
///
/// Not `Sendable`: one instance per event loop, used only on that loop.
public final class JWTVerificationCache {
    struct Digest: Hashable {
        var a: UInt64
        var b: UInt64
        var c: UInt64
        var d: UInt64
    }

    private struct Node {
        var digest: Digest
        var check: JWTCheck
        /// Unix seconds after which a verified token reads as expired; `Int64.max` without `exp`.
        var validUntil: Int64
        var previous: Int
        var next: Int
    }

    private var capacity: Int
    private var index: [Digest: Int] = [:]
    private var nodes: [Node] = []
    /// Most recently used first; -1 for none.
    private var head = -1
    private var tail = -1
    private var owner: ObjectIdentifier?

    /// Lookups answered from the cache, and signature checks made, since the cache was made (for tests and benches).
    public private(set) var hits = 0
    public private(set) var misses = 0

    /// - Parameter capacity: tokens kept (`jwt.cache_size`); 0 turns caching off. A verifier's own `cache_size`
    ///   replaces it when the verifier first uses the cache.
    public init(capacity: Int = 0) {
        self.capacity = max(0, capacity)
    }

    public var count: Int { self.index.count }

    /// Empties the cache if it was filled for another verifier, and takes that verifier's `cache_size`.
    func adopt(_ verifier: JWTVerifier) {
        let id = ObjectIdentifier(verifier)
        guard id != self.owner else { return }
        self.owner = id
        self.capacity = max(0, verifier.cacheSize)
        self.index.removeAll(keepingCapacity: true)
        self.nodes.removeAll(keepingCapacity: true)
        self.head = -1
        self.tail = -1
    }

    static func digest(_ token: Substring) -> Digest {
        var hash = SHA256()
        var text = token
        text.withUTF8 { hash.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        return hash.finalize().withUnsafeBytes { raw in
            Digest(
                a: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self),
                b: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                c: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self),
                d: raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
            )
        }
    }

    /// The cached check of `digest` at `now` (Unix seconds), moved to the front; `nil` when not cached.
    func lookup(_ digest: Digest, now: Int64) -> JWTCheck? {
        guard let slot = self.index[digest] else {
            self.misses += 1
            return nil
        }
        self.hits += 1
        self.moveToFront(slot)
        if now > self.nodes[slot].validUntil, case .verified = self.nodes[slot].check {
            self.nodes[slot].check = .failed(.expired)
            self.nodes[slot].validUntil = .max
        }
        return self.nodes[slot].check
    }

    func insert(_ digest: Digest, _ check: JWTCheck, validUntil: Int64) {
        guard self.capacity > 0 else { return }
        if let slot = self.index[digest] {
            self.nodes[slot].check = check
            self.nodes[slot].validUntil = validUntil
            self.moveToFront(slot)
            return
        }
        let slot: Int
        if self.nodes.count < self.capacity {
            slot = self.nodes.count
            self.nodes.append(Node(digest: digest, check: check, validUntil: validUntil, previous: -1, next: -1))
        } else {
            // Reuse the least recently used node.
            slot = self.tail
            self.unlink(slot)
            self.index.removeValue(forKey: self.nodes[slot].digest)
            self.nodes[slot] = Node(digest: digest, check: check, validUntil: validUntil, previous: -1, next: -1)
        }
        self.index[digest] = slot
        self.linkAtFront(slot)
    }

    private func moveToFront(_ slot: Int) {
        guard self.head != slot else { return }
        self.unlink(slot)
        self.linkAtFront(slot)
    }

    private func unlink(_ slot: Int) {
        let previous = self.nodes[slot].previous
        let next = self.nodes[slot].next
        if previous >= 0 { self.nodes[previous].next = next } else { self.head = next }
        if next >= 0 { self.nodes[next].previous = previous } else { self.tail = previous }
        self.nodes[slot].previous = -1
        self.nodes[slot].next = -1
    }

    private func linkAtFront(_ slot: Int) {
        self.nodes[slot].previous = -1
        self.nodes[slot].next = self.head
        if self.head >= 0 { self.nodes[self.head].previous = slot }
        self.head = slot
        if self.tail < 0 { self.tail = slot }
    }
}
