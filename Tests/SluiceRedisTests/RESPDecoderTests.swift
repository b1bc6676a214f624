import NIOCore
import NIOEmbedded
import SluiceRedis
import Testing

/// Feeds `wire` to a ``RESPDecoder`` on an `EmbeddedChannel` in chunks of `chunk` bytes
/// (`nil`: all at once) and returns every value decoded.
private func decode(_ wire: [UInt8], chunk: Int? = nil, decoder: RESPDecoder = RESPDecoder()) throws -> [RESPValue] {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(decoder))
    defer { _ = try? channel.finish() }
    var rest = wire[...]
    repeat {
        let size = chunk ?? rest.count
        try channel.writeInbound(ByteBuffer(bytes: rest.prefix(size)))
        rest = rest.dropFirst(size)
    } while !rest.isEmpty
    var values: [RESPValue] = []
    while let value = try channel.readInbound(as: RESPValue.self) { values.append(value) }
    return values
}

private func decode(_ wire: String, chunk: Int? = nil, decoder: RESPDecoder = RESPDecoder()) throws -> [RESPValue] {
    try decode(Array(wire.utf8), chunk: chunk, decoder: decoder)
}

private func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }

/// Every RESP2 and RESP3 type, as sent by Redis, and what it decodes to.
private let everyType: [(wire: String, value: RESPValue)] = [
    ("+OK\r\n", .simpleString("OK")),
    ("+\r\n", .simpleString("")),
    ("-ERR unknown command 'FOO'\r\n", .error("ERR unknown command 'FOO'")),
    (":0\r\n", .integer(0)),
    (":-42\r\n", .integer(-42)),
    (":9223372036854775807\r\n", .integer(.max)),
    (":-9223372036854775808\r\n", .integer(.min)),
    ("$5\r\nhello\r\n", bulk("hello")),
    ("$0\r\n\r\n", bulk("")),
    ("$4\r\na\r\nb\r\n", bulk("a\r\nb")),
    ("$-1\r\n", .bulkString(nil)),
    ("*0\r\n", .array([])),
    ("*-1\r\n", .array(nil)),
    ("*3\r\n:1\r\n$1\r\nx\r\n*1\r\n+y\r\n", .array([.integer(1), bulk("x"), .array([.simpleString("y")])])),
    ("*2\r\n$-1\r\n*-1\r\n", .array([.bulkString(nil), .array(nil)])),
    ("_\r\n", .null),
    (",1.5\r\n", .double(1.5)),
    (",-0.25e2\r\n", .double(-25)),
    (",inf\r\n", .double(.infinity)),
    (",-inf\r\n", .double(-.infinity)),
    ("#t\r\n", .boolean(true)),
    ("#f\r\n", .boolean(false)),
    ("(3492890328409238509324850943850943825024385\r\n", .bigNumber("3492890328409238509324850943850943825024385")),
    ("(-12\r\n", .bigNumber("-12")),
    ("!21\r\nSYNTAX invalid syntax\r\n", .error("SYNTAX invalid syntax")),
    ("=15\r\ntxt:Some string\r\n", .verbatimString("Some string")),
    ("%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", .map([.simpleString("first"), .integer(1), .simpleString("second"), .integer(2)])),
    ("%0\r\n", .map([])),
    ("~3\r\n+a\r\n+b\r\n:1\r\n", .set([.simpleString("a"), .simpleString("b"), .integer(1)])),
    (">3\r\n+message\r\n+chan\r\n$2\r\nhi\r\n", .push([.simpleString("message"), .simpleString("chan"), bulk("hi")])),
    // An attribute is read and dropped; the value it annotates is kept.
    ("|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.19\r\n$1\r\nb\r\n,0.01\r\n*2\r\n:2039123\r\n:9543892\r\n",
     .array([.integer(2_039_123), .integer(9_543_892)])),
    ("*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n", .array([.integer(1), .integer(2)])),
]

@Suite struct RESPDecoderTests {
    @Test(arguments: everyType.indices)
    func decodesEveryTypeWholeAndByteByByte(index: Int) throws {
        let (wire, value) = everyType[index]
        #expect(try decode(wire) == [value], "\(wire.debugDescription)")
        #expect(try decode(wire, chunk: 1) == [value], "\(wire.debugDescription) byte by byte")
        #expect(try decode(wire, chunk: 3) == [value], "\(wire.debugDescription) 3 bytes at a time")
    }

    @Test func decodesBackToBackRepliesSplitAtEveryByte() throws {
        let wire = everyType.map(\.wire).joined()
        let expected = everyType.map(\.value)
        #expect(try decode(wire) == expected)
        #expect(try decode(wire, chunk: 1) == expected)
        #expect(try decode(wire, chunk: 7) == expected)
        // Split in two at many positions (byte by byte above covers every one).
        let bytes = Array(wire.utf8)
        for split in stride(from: 1, to: bytes.count, by: 5) {
            let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
            try channel.writeInbound(ByteBuffer(bytes: bytes[..<split]))
            try channel.writeInbound(ByteBuffer(bytes: bytes[split...]))
            var values: [RESPValue] = []
            while let value = try channel.readInbound(as: RESPValue.self) { values.append(value) }
            #expect(values == expected, "split at \(split)")
            _ = try channel.finish()
        }
    }

    @Test func decodesNaN() throws {
        let values = try decode(",nan\r\n", chunk: 1)
        guard case .double(let value) = values.first else {
            Issue.record("got \(values)")
            return
        }
        #expect(value.isNaN)
    }

    @Test func bulkStringsAreBinarySafe() throws {
        let payload: [UInt8] = Array(0...255) + [13, 10, 13, 10]
        let wire = Array("$\(payload.count)\r\n".utf8) + payload + [13, 10]
        #expect(try decode(wire, chunk: 1) == [.bulkString(ByteBuffer(bytes: payload))])
    }

    @Test func partialInputProducesNothingYet() throws {
        #expect(try decode("$5\r\nhel") == [])
        #expect(try decode("*2\r\n:1\r\n") == [])
        #expect(try decode("+OK\r") == [])
        #expect(try decode("%1\r\n+a\r\n") == [])
    }

    @Test(arguments: [
        "?\r\n",  // unknown type byte
        "+OK\rX\r\n",  // CR without LF
        ":12a\r\n",
        ":\r\n",
        ":9223372036854775808\r\n",  // overflow
        "$-2\r\n",
        "$abc\r\n",
        "$3\r\nabcd\r\n",  // no CRLF after the declared length
        "*-2\r\n",
        "%-1\r\n",
        "~-1\r\n",
        "_x\r\n",
        ",\r\n",
        ",1.5x\r\n",
        "#x\r\n",
        "(12a\r\n",
        "=3\r\nabc\r\n",  // verbatim without format prefix
        "$?\r\n;4\r\nHell\r\n;0\r\n",  // streamed string
        "*?\r\n:1\r\n.\r\n",  // streamed aggregate
        "*2\r\n:1\r\n!x\r\n",
    ])
    func rejectsMalformedInput(wire: String) {
        #expect(throws: RedisError.self, "\(wire.debugDescription)") { try decode(wire) }
        #expect(throws: RedisError.self, "\(wire.debugDescription) byte by byte") { try decode(wire, chunk: 1) }
    }

    @Test func malformedInputIsAProtocolError() {
        #expect {
            try decode("?\r\n")
        } throws: { error in
            guard case .protocolError(let why) = error as? RedisError else { return false }
            return why.contains("0x3f")
        }
    }

    @Test func bulkLengthLimit() throws {
        // At the limit: accepted, waiting for the bytes. Past it: refused before any byte arrives.
        #expect(try decode("$536870912\r\n") == [])
        #expect(throws: RedisError.self) { try decode("$536870913\r\n") }
        let small = RESPDecoder(maximumBulkLength: 4)
        #expect(try decode("$4\r\nabcd\r\n", decoder: small) == [bulk("abcd")])
        #expect(throws: RedisError.self) { try decode("$5\r\nabcde\r\n", decoder: small) }
        #expect(throws: RedisError.self) { try decode("!5\r\nabcde\r\n", decoder: small) }
    }

    @Test func nestingLimit() throws {
        func nested(_ depth: Int) -> String { String(repeating: "*1\r\n", count: depth) + ":1\r\n" }
        var expected = RESPValue.integer(1)
        for _ in 0..<32 { expected = .array([expected]) }
        #expect(try decode(nested(32), chunk: 1) == [expected])
        #expect(throws: RedisError.self) { try decode(nested(33)) }
        #expect(throws: RedisError.self) { try decode(String(repeating: "%1\r\n+k\r\n", count: 33) + ":1\r\n") }
        #expect(throws: RedisError.self) { try decode(nested(1000)) }
    }

    @Test func lineLengthLimit() throws {
        let long = String(repeating: "x", count: 64 * 1024)
        #expect(try decode("+\(long)\r\n") == [.simpleString(long)])
        #expect(throws: RedisError.self) { try decode("+\(long)x\r\n") }
        // Refused before the line ends: an endless line is not buffered without bound.
        #expect(throws: RedisError.self) { try decode("+\(long)xx") }
    }

    @Test func hugeCountsReserveNothingUpFront() throws {
        #expect(try decode("*2147483647\r\n:1\r\n") == [])
        #expect(throws: RedisError.self) { try decode("*2147483648\r\n") }
    }

    @Test func conveniences() {
        #expect(RESPValue.integer(7).int == 7)
        #expect(bulk("42").int == 42)
        #expect(bulk("4x").int == nil)
        #expect(RESPValue.simpleString("OK").string == "OK")
        #expect(bulk("héllo").string == "héllo")
        #expect(RESPValue.verbatimString("v").string == "v")
        #expect(RESPValue.bulkString(nil).string == nil)
        #expect(RESPValue.integer(1).string == nil)
        #expect(RESPValue.array([.integer(1)]).array == [.integer(1)])
        #expect(RESPValue.set([.integer(1)]).array == [.integer(1)])
        #expect(RESPValue.array(nil).array == nil)
        #expect(RESPValue.null.isNull && RESPValue.bulkString(nil).isNull && RESPValue.array(nil).isNull)
        #expect(!RESPValue.integer(0).isNull)
    }
}
