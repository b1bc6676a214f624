import NIOCore

/// Appends the bytes of a head Sluice writes itself (a 429, a local answer, the RateLimit fields) straight into
/// reserved `ByteBuffer` memory.
///
/// Why: each `ByteBuffer.writeString`/`writeStaticString` checks capacity, uniqueness and indices on its own, and
/// a blocked answer is some thirty of them, which the limit scenario (mostly 429s) paid on every request. Here the
/// capacity is reserved once and each append is a bounds check and a copy.
///
/// Never unsafe and never a trap: an append that does not fit marks the writer ``overflowed`` and writes nothing
/// more; ``ByteBuffer/writeHeadBytes(estimate:_:)`` then throws the attempt away and runs it again with twice the
/// room. Estimates only decide how often that happens (never, for the heads Sluice writes).
struct HeadBytes {
    private let base: UnsafeMutableRawPointer?
    private let capacity: Int
    /// Bytes written so far.
    private(set) var count = 0
    /// An append did not fit: what was written is incomplete and must be discarded.
    private(set) var overflowed = false

    init(_ memory: UnsafeMutableRawBufferPointer) {
        self.base = memory.baseAddress
        self.capacity = memory.count
    }

    @inline(__always)
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard !self.overflowed, bytes.count <= self.capacity - self.count, let base = self.base else {
            self.overflowed = true
            return
        }
        if let source = bytes.baseAddress, bytes.count > 0 {
            (base + self.count).copyMemory(from: source, byteCount: bytes.count)
        }
        self.count += bytes.count
    }

    @inline(__always)
    mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { self.append(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always)
    mutating func append(_ text: String) {
        var text = text  // `withUTF8` is mutating; a native or small string is not copied
        text.withUTF8 { self.append(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always)
    mutating func append(byte: UInt8) {
        guard !self.overflowed, self.count < self.capacity, let base = self.base else {
            self.overflowed = true
            return
        }
        base.storeBytes(of: byte, toByteOffset: self.count, as: UInt8.self)
        self.count += 1
    }

    /// `value` in decimal, as `String(value)` writes it.
    mutating func appendDecimal(_ value: Int64) {
        if value < 0 { self.append(byte: UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits = 1
        var scale: UInt64 = 10
        while digits < 20 && magnitude >= scale {
            digits += 1
            scale = scale &* 10
        }
        guard !self.overflowed, digits <= self.capacity - self.count, let base = self.base else {
            self.overflowed = true
            return
        }
        var index = self.count + digits
        repeat {
            index -= 1
            base.storeBytes(of: UInt8(ascii: "0") &+ UInt8(magnitude % 10), toByteOffset: index, as: UInt8.self)
            magnitude /= 10
        } while magnitude > 0
        self.count += digits
    }
}

extension ByteBuffer {
    /// Writes what `body` appends, with `estimate` bytes reserved at first (see ``HeadBytes``). `body` may run more
    /// than once (with more room each time), so it must append the same bytes every time it runs.
    mutating func writeHeadBytes(estimate: Int, _ body: (inout HeadBytes) -> Void) {
        var room = max(estimate, 64)
        while true {
            var fitted = false
            self.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { memory in
                var writer = HeadBytes(memory)
                body(&writer)
                guard !writer.overflowed else { return 0 }
                fitted = true
                return writer.count
            }
            if fitted { return }
            room *= 2
        }
    }
}
