import NIOCore
import NIOEmbedded
import SluiceMemcached
import Testing

/// Feeds `wire` to a ``MemcachedReplyDecoder`` on an `EmbeddedChannel` in chunks of `chunk` bytes (`nil`: all at
/// once) and returns every reply decoded.
private func decode(
    _ wire: [UInt8],
    chunk: Int? = nil,
    decoder: MemcachedReplyDecoder = MemcachedReplyDecoder()
) throws -> [MemcachedReply] {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(decoder))
    defer { _ = try? channel.finish() }
    var rest = wire[...]
    repeat {
        let size = chunk ?? rest.count
        try channel.writeInbound(ByteBuffer(bytes: rest.prefix(size)))
        rest = rest.dropFirst(size)
    } while !rest.isEmpty
    var replies: [MemcachedReply] = []
    while let reply = try channel.readInbound(as: MemcachedReply.self) { replies.append(reply) }
    return replies
}

private func decode(_ wire: String, chunk: Int? = nil, decoder: MemcachedReplyDecoder = MemcachedReplyDecoder()) throws -> [MemcachedReply] {
    try decode(Array(wire.utf8), chunk: chunk, decoder: decoder)
}

private func meta(
    _ status: MemcachedMetaReply.Status,
    opaque: UInt32? = nil,
    cas: UInt64? = nil,
    ttl: Int64? = nil,
    value: String? = nil
) -> MemcachedReply {
    .meta(MemcachedMetaReply(status: status, opaque: opaque, cas: cas, ttl: ttl, value: value.map { ByteBuffer(string: $0) }))
}

/// Every reply the store meets, as memcached 1.6 sends it, and what it decodes to.
private let everyReply: [(wire: String, reply: MemcachedReply)] = [
    ("HD\r\n", meta(.done)),
    ("HD O1\r\n", meta(.done, opaque: 1)),
    ("HD O6 c4\r\n", meta(.done, opaque: 6, cas: 4)),
    ("VA 1 O1\r\n3\r\n", meta(.value, opaque: 1, value: "3")),
    ("VA 1 c3 t60 O4\r\n0\r\n", meta(.value, opaque: 4, cas: 3, ttl: 60, value: "0")),
    ("VA 3 t-1 O4294967295\r\nabc\r\n", meta(.value, opaque: .max, ttl: -1, value: "abc")),
    ("VA 0 O2\r\n\r\n", meta(.value, opaque: 2, value: "")),
    ("VA 4 O2\r\na\r\nb\r\n", meta(.value, opaque: 2, value: "a\r\nb")),
    ("VA 2 k:abc b s1 O3\r\nxy\r\n", meta(.value, opaque: 3, value: "xy")),
    ("EN O5\r\n", meta(.miss, opaque: 5)),
    ("NS O7\r\n", meta(.notStored, opaque: 7)),
    ("EX O9\r\n", meta(.exists, opaque: 9)),
    ("NF O9\r\n", meta(.notFound, opaque: 9)),
    ("MN\r\n", meta(.noop)),
    ("CLIENT_ERROR bad data chunk\r\n", .clientError("bad data chunk")),
    ("CLIENT_ERROR\r\n", .clientError("")),
    ("SERVER_ERROR out of memory storing object\r\n", .serverError("out of memory storing object")),
    ("ERROR\r\n", .error),
]

@Suite struct MemcachedReplyDecoderTests {
    @Test(arguments: everyReply.indices)
    func everyReplyAllAtOnceAndByteByByte(_ index: Int) throws {
        let (wire, reply) = everyReply[index]
        #expect(try decode(wire) == [reply])
        #expect(try decode(wire, chunk: 1) == [reply])
        #expect(try decode(wire, chunk: 3) == [reply])
    }

    @Test func pipelinedRepliesInOrderWhateverTheSplit() throws {
        let wire = everyReply.map(\.wire).joined()
        let expected = everyReply.map(\.reply)
        for chunk in [nil, 1, 2, 5, 7, 64] as [Int?] {
            #expect(try decode(wire, chunk: chunk) == expected, "chunk \(String(describing: chunk))")
        }
    }

    @Test func aPartialReplyWaitsForTheRest() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MemcachedReplyDecoder()))
        defer { _ = try? channel.finish() }
        try channel.writeInbound(ByteBuffer(string: "VA 5 c9 O1\r\nhel"))
        #expect(try channel.readInbound(as: MemcachedReply.self) == nil)
        try channel.writeInbound(ByteBuffer(string: "lo\r"))
        #expect(try channel.readInbound(as: MemcachedReply.self) == nil)
        try channel.writeInbound(ByteBuffer(string: "\nHD O2\r"))
        #expect(try channel.readInbound(as: MemcachedReply.self) == meta(.value, opaque: 1, cas: 9, value: "hello"))
        #expect(try channel.readInbound(as: MemcachedReply.self) == nil)
        try channel.writeInbound(ByteBuffer(string: "\n"))
        #expect(try channel.readInbound(as: MemcachedReply.self) == meta(.done, opaque: 2))
    }

    @Test func numbersOfArithmeticReplies() {
        #expect(MemcachedMetaReply(status: .value, value: ByteBuffer(string: "18446744073709551615")).number == .max)
        #expect(MemcachedMetaReply(status: .value, value: ByteBuffer(string: "18446744073709551616")).number == nil)
        #expect(MemcachedMetaReply(status: .value, value: ByteBuffer(string: "12a")).number == nil)
        #expect(MemcachedMetaReply(status: .value, value: ByteBuffer(string: "")).number == nil)
        // memcached pads a counter that a decrement shortened.
        #expect(MemcachedMetaReply(status: .value, value: ByteBuffer(string: "9 ")).number == 9)
        #expect(MemcachedMetaReply(status: .value, value: ByteBuffer(string: " 9")).number == nil)
        #expect(MemcachedMetaReply(status: .value, value: ByteBuffer(string: "  ")).number == nil)
        #expect(MemcachedMetaReply(status: .done).number == nil)
    }

    /// Garbage, broken framing and oversized values are errors (the handler then closes), never a crash or a wait.
    @Test(
        arguments: [
            "XX\r\n",  // no such status
            "HDX\r\n",
            "hd O1\r\n",
            "HD  O1\r\n",  // double space
            "HD O1 \r\n",  // trailing space
            "HD O\r\n",  // empty token
            "HD Oabc\r\n",  // this client sends decimal tokens only
            "HD O4294967296\r\n",  // beyond 32 bits
            "HD O1 O2\r\n",  // two tokens
            "HD c-1\r\n",
            "HD 1x\r\n",  // a flag must start with a letter
            "HD O1\n",  // bare LF
            "HD O\r1\r\n",  // CR inside a line
            "VA abc O1\r\n",
            "VA -1 O1\r\n",
            "VA O1\r\n",
            "VA 3 O1\r\nabcXY",  // data not ended by CRLF
            "VA 2000000 O1\r\n",  // larger than the value limit
            "MN O1\r\n",
            "ERRORS\r\n",
            "\u{0}\u{1}\u{2}",  // binary garbage, refused at its first byte
            "Z",
        ]
    )
    func malformedRepliesThrow(_ wire: String) {
        #expect(throws: MemcachedError.self) { try decode(wire) }
        #expect(throws: MemcachedError.self) { try decode(wire, chunk: 1) }
    }

    @Test func aLineWithoutEndIsRefusedOnceTooLong() throws {
        let decoder = MemcachedReplyDecoder(maximumLineLength: 32)
        #expect(try decode("HD O1 " + String(repeating: "x", count: 20), decoder: decoder) == [])
        #expect(throws: MemcachedError.self) { try decode("HD O1 " + String(repeating: "x", count: 40), decoder: decoder) }
        #expect(throws: MemcachedError.self) { try decode("HD O1 " + String(repeating: "x", count: 40) + "\r\n", chunk: 1, decoder: decoder) }
    }

    @Test func valueLimitIsInclusive() throws {
        let decoder = MemcachedReplyDecoder(maximumValueLength: 4)
        #expect(try decode("VA 4 O1\r\nabcd\r\n", decoder: decoder) == [meta(.value, opaque: 1, value: "abcd")])
        #expect(throws: MemcachedError.self) { try decode("VA 5 O1\r\n", decoder: decoder) }
    }
}

@Suite struct MemcachedCommandEncoderTests {
    private func encoded(_ command: MemcachedCommand, opaque: UInt32) -> String {
        var buffer = ByteBuffer()
        MemcachedCommandEncoder.write(command, opaque: opaque, into: &buffer)
        return String(buffer: buffer)
    }

    @Test func everyVerb() {
        #expect(encoded(MemcachedCommand(.get, key: "k", flags: ["v", "c"]), opaque: 7) == "mg k v c O7\r\n")
        #expect(
            encoded(MemcachedCommand(.set, key: "k", flags: ["T60", "C12"], value: ByteBuffer(string: "a\r\nb")), opaque: 1)
                == "ms k 4 T60 C12 O1\r\na\r\nb\r\n"
        )
        #expect(encoded(MemcachedCommand(.arithmetic, key: "k:1", flags: ["N61", "J2", "D2", "v"]), opaque: 3) == "ma k:1 N61 J2 D2 v O3\r\n")
        #expect(encoded(MemcachedCommand(.delete, key: "k"), opaque: 4294967295) == "md k O4294967295\r\n")
        #expect(encoded(.noop, opaque: 9) == "mn\r\n")
    }

    @Test func commandsMemcachedWouldRefuse() {
        #expect(MemcachedCommand(.get, key: "a b").problem != nil)
        #expect(MemcachedCommand(.get, key: "").problem != nil)
        #expect(MemcachedCommand(.get, key: String(repeating: "k", count: 251)).problem != nil)
        #expect(MemcachedCommand(.get, key: String(repeating: "k", count: 250)).problem == nil)
        #expect(MemcachedCommand(.get, key: "k\u{7F}").problem != nil)
        #expect(MemcachedCommand(.get, key: "k", flags: ["q"]).problem != nil)
        #expect(MemcachedCommand(.get, key: "k", flags: ["O5"]).problem != nil)
        #expect(MemcachedCommand(.get, key: "k", flags: ["v c"]).problem != nil)
        #expect(MemcachedCommand(.set, key: "k").problem != nil)
        #expect(MemcachedCommand(.get, key: "k", value: ByteBuffer(string: "x")).problem != nil)
        #expect(MemcachedCommand(.noop, key: "k").problem != nil)
        #expect(MemcachedCommand.noop.problem == nil)
    }
}
