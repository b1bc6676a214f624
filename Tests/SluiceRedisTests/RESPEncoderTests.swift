import NIOCore
import NIOEmbedded
import SluiceRedis
import Testing

@Suite struct RESPEncoderTests {
    private func encode(_ command: RedisCommand) throws -> String {
        String(buffer: command.encoded)
    }

    @Test func encodesAnArrayOfBulkStrings() throws {
        #expect(try self.encode(RedisCommand("SET", "key", "value")) == "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n")
        #expect(try self.encode(RedisCommand("PING")) == "*1\r\n$4\r\nPING\r\n")
        #expect(try self.encode(RedisCommand(arguments: [])) == "*0\r\n")
    }

    @Test func argumentsAreBinarySafe() throws {
        let command = RedisCommand(arguments: [ByteBuffer(string: "SET"), ByteBuffer(string: "a\r\nb"), ByteBuffer()])
        #expect(try self.encode(command) == "*3\r\n$3\r\nSET\r\n$4\r\na\r\nb\r\n$0\r\n\r\n")
    }

    @Test func multiDigitLengths() throws {
        let long = String(repeating: "x", count: 12_345)
        let arguments = (0..<10).map { "\($0)" }
        let wire = try self.encode(RedisCommand(arguments: [ByteBuffer(string: long)] + arguments.map { ByteBuffer(string: $0) }))
        #expect(wire.hasPrefix("*11\r\n$12345\r\n\(long)\r\n$1\r\n0\r\n"))
    }

    @Test func roundTripsThroughTheDecoder() throws {
        let payload = ByteBuffer(bytes: Array(0...255))
        let arguments = [ByteBuffer(string: "SET"), ByteBuffer(string: "k"), payload]
        let command = RedisCommand(arguments: arguments)
        let decoder = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
        try decoder.writeInbound(command.encoded)
        let value = try decoder.readInbound(as: RESPValue.self)
        #expect(value == .array(arguments.map { .bulkString($0) }))
        _ = try decoder.finish()
    }

    @Test func descriptionNamesTheCommandOnly() {
        #expect(RedisCommand("auth", "user", "secret").description == "AUTH")
    }
}
