import NIOCore

/// One reply of memcached's meta protocol, decoded whole by ``MemcachedReplyDecoder``.
public enum MemcachedReply: Sendable, Hashable {
    /// A meta reply: a two-letter status, its returned flags, and for `VA` the value.
    case meta(MemcachedMetaReply)
    /// `CLIENT_ERROR <message>`: the server could not read a command (it says which in the message).
    case clientError(String)
    /// `SERVER_ERROR <message>`: the server could not carry a command out (out of memory, ...).
    case serverError(String)
    /// `ERROR`: an unknown command.
    case error
}

/// A meta reply: `HD`, `VA <size>`, `EN`, `NS`, `EX`, `NF` or `MN`, with the flags the command asked back.
public struct MemcachedMetaReply: Sendable, Hashable {
    /// The two-letter status of a meta reply.
    public enum Status: String, Sendable, Hashable {
        /// `HD`: done, no value (a store, a delete, an arithmetic without `v`, a get without `v`).
        case done = "HD"
        /// `VA`: done, with a value.
        case value = "VA"
        /// `EN`: `mg` found no item.
        case miss = "EN"
        /// `NS`: `ms` did not store (an add, `ME`, of an item that exists).
        case notStored = "NS"
        /// `EX`: `ms`/`md`/`ma` with a CAS value that no longer matches: someone changed the item meanwhile.
        case exists = "EX"
        /// `NF`: `ms`/`md`/`ma` on an item that does not exist.
        case notFound = "NF"
        /// `MN`: the answer to `mn` (meta no-op), which carries no flag.
        case noop = "MN"
    }

    public var status: Status
    /// The `O` flag: the opaque token of the command this answers; `nil` when the reply carries none.
    public var opaque: UInt32?
    /// The `c` flag: the item's CAS value.
    public var cas: UInt64?
    /// The `t` flag: seconds the item has left, -1 for none.
    public var ttl: Int64?
    /// The data of a `VA` reply, `nil` for the other statuses.
    public var value: ByteBuffer?

    public init(status: Status, opaque: UInt32? = nil, cas: UInt64? = nil, ttl: Int64? = nil, value: ByteBuffer? = nil) {
        self.status = status
        self.opaque = opaque
        self.cas = cas
        self.ttl = ttl
        self.value = value
    }

    /// The value as a decimal unsigned integer (what `ma` returns with `v`), `nil` when it is anything else.
    ///
    /// Trailing spaces are allowed: memcached keeps a counter's length when a decrement shortens it, padding the
    /// digits with spaces (`10` decremented reads `9 `).
    public var number: UInt64? {
        guard let value = self.value else { return nil }
        var digits = value.readableBytesView[...]
        while digits.last == UInt8(ascii: " ") { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.count <= 20 else { return nil }
        var result: UInt64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflow1) = result.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = shifted.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            result = next
        }
        return result
    }
}
