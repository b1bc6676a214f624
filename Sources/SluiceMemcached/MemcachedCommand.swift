import NIOCore

/// One meta command, not yet on the wire: its verb, key, flags and (for `ms`) data.
///
/// The opaque token (`O`) is not part of it: the connection's handler gives each command the next token of its own
/// when it writes it (``MemcachedCommandEncoder``), and expects the reply to carry it back.
public struct MemcachedCommand: Sendable {
    public enum Verb: String, Sendable {
        /// `mg`: meta get.
        case get = "mg"
        /// `ms`: meta set.
        case set = "ms"
        /// `ma`: meta arithmetic.
        case arithmetic = "ma"
        /// `md`: meta delete.
        case delete = "md"
        /// `mn`: meta no-op; takes no key or flag, answered `MN`.
        case noop = "mn"
    }

    public var verb: Verb
    /// The whole key, prefix included; empty for `mn`.
    public var key: String
    /// Flag tokens such as `v`, `c`, `N60`, `C1234`, without `O` (added on write); never `q` (quiet mode would drop
    /// replies the handler counts on).
    public var flags: [String]
    /// The data of `ms`; `nil` for the other verbs.
    public var value: ByteBuffer?

    public init(_ verb: Verb, key: String, flags: [String] = [], value: ByteBuffer? = nil) {
        self.verb = verb
        self.key = key
        self.flags = flags
        self.value = value
    }

    /// `mn`.
    public static let noop = MemcachedCommand(.noop, key: "")

    /// Why memcached would refuse this command or this client would misread its reply, `nil` when it is fine.
    public var problem: String? {
        if self.verb == .noop {
            return self.key.isEmpty && self.flags.isEmpty && self.value == nil ? nil : "mn takes no key, flag or data"
        }
        let key = self.key.utf8
        if key.isEmpty || key.count > 250 { return "a key must hold 1 to 250 bytes" }
        if key.contains(where: { $0 <= 0x20 || $0 >= 0x7F }) { return "a key must be printable ASCII without spaces" }
        for flag in self.flags {
            guard let letter = flag.utf8.first, flag.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                return "a flag must be printable ASCII without spaces"
            }
            if letter == UInt8(ascii: "O") || letter == UInt8(ascii: "q") { return "flags O and q are the client's own" }
        }
        if (self.verb == .set) != (self.value != nil) { return "data goes with ms, and only with ms" }
        return nil
    }
}

extension MemcachedCommand: CustomStringConvertible {
    /// The verb and key only: enough for a log line, never the data.
    public var description: String {
        self.verb == .noop ? "mn" : "\(self.verb.rawValue) \(self.key)"
    }
}

/// Writes meta commands into a buffer: `<verb> <key> [<datalen>] <flags>* O<token>\r\n[<data>\r\n]`.
public enum MemcachedCommandEncoder {
    /// Appends `command` with the opaque token `opaque` (ignored for `mn`, which takes none) to `buffer`.
    /// - Precondition: `command.problem == nil` (checked by the handler before it writes).
    public static func write(_ command: MemcachedCommand, opaque: UInt32, into buffer: inout ByteBuffer) {
        buffer.writeString(command.verb.rawValue)
        if command.verb != .noop {
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeString(command.key)
            if let value = command.value {
                buffer.writeInteger(UInt8(ascii: " "))
                buffer.writeString(String(value.readableBytes))
            }
            for flag in command.flags {
                buffer.writeInteger(UInt8(ascii: " "))
                buffer.writeString(flag)
            }
            buffer.writeString(" O")
            buffer.writeString(String(opaque))
        }
        buffer.writeInteger(UInt16(0x0D0A))
        if let value = command.value {
            buffer.writeImmutableBuffer(value)
            buffer.writeInteger(UInt16(0x0D0A))
        }
    }
}

/// The commands of a decision (``MemcachedDecision``), encoded straight into the connection's outgoing buffer: the
/// key from its parts, the numbers as decimals, no `String` or flag array. They are the same bytes as the
/// ``MemcachedCommands`` of the same name; the key prefix is checked once, by the store (``MemcachedKeyspace``).
enum MemcachedKeyCommand {
    /// `ma KEY N<ttl> J<cost> D<cost> v`.
    case increment(MemcachedKeyName, cost: Int64, ttl: Int64)
    /// `ma KEY MD D<cost>`.
    case decrement(MemcachedKeyName, cost: Int64)
    /// `mg KEY v`.
    case get(MemcachedKeyName)
    /// `mg KEY v c`.
    case getWithCAS(MemcachedKeyName)
    /// `ms KEY <len> T<ttl> C<cas>` (or `ME` without a CAS value; neither without `swap`).
    case store(MemcachedKeyName, value: ByteBuffer, ttl: Int64, cas: UInt64?, swap: Bool)

    /// The same command as a ``MemcachedCommand`` (when it goes through a promise).
    func command(prefix: String) -> MemcachedCommand {
        switch self {
        case .increment(let name, let cost, let ttl): MemcachedCommands.increment(name.string(prefix: prefix), by: cost, ttl: ttl)
        case .decrement(let name, let cost): MemcachedCommands.decrement(name.string(prefix: prefix), by: cost)
        case .get(let name): MemcachedCommands.get(name.string(prefix: prefix))
        case .getWithCAS(let name): MemcachedCommands.getWithCAS(name.string(prefix: prefix))
        case .store(let name, let value, let ttl, let cas, let swap):
            MemcachedCommands.store(name.string(prefix: prefix), value, ttl: ttl, cas: cas, swap: swap)
        }
    }

    /// Appends the command with the opaque token `opaque`.
    func write(prefix: String, opaque: UInt32, into buffer: inout ByteBuffer) {
        switch self {
        case .increment(let name, let cost, let ttl):
            buffer.writeStaticString("ma ")
            name.write(prefix: prefix, into: &buffer)
            buffer.writeStaticString(" N")
            MemcachedDecimal.write(ttl, into: &buffer)
            buffer.writeStaticString(" J")
            MemcachedDecimal.write(cost, into: &buffer)
            buffer.writeStaticString(" D")
            MemcachedDecimal.write(cost, into: &buffer)
            buffer.writeStaticString(" v")
        case .decrement(let name, let cost):
            buffer.writeStaticString("ma ")
            name.write(prefix: prefix, into: &buffer)
            buffer.writeStaticString(" MD D")
            MemcachedDecimal.write(cost, into: &buffer)
        case .get(let name):
            buffer.writeStaticString("mg ")
            name.write(prefix: prefix, into: &buffer)
            buffer.writeStaticString(" v")
        case .getWithCAS(let name):
            buffer.writeStaticString("mg ")
            name.write(prefix: prefix, into: &buffer)
            buffer.writeStaticString(" v c")
        case .store(let name, let value, let ttl, let cas, let swap):
            buffer.writeStaticString("ms ")
            name.write(prefix: prefix, into: &buffer)
            buffer.writeInteger(UInt8(ascii: " "))
            MemcachedDecimal.write(Int64(value.readableBytes), into: &buffer)
            buffer.writeStaticString(" T")
            MemcachedDecimal.write(ttl, into: &buffer)
            if swap {
                if let cas {
                    buffer.writeStaticString(" C")
                    MemcachedDecimal.write(cas, into: &buffer)
                } else {
                    buffer.writeStaticString(" ME")
                }
            }
        }
        buffer.writeStaticString(" O")
        MemcachedDecimal.write(UInt64(opaque), into: &buffer)
        buffer.writeInteger(UInt16(0x0D0A))
        if case .store(_, let value, _, _, _) = self {
            buffer.writeImmutableBuffer(value)
            buffer.writeInteger(UInt16(0x0D0A))
        }
    }
}
