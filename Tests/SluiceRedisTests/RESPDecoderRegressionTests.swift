import Foundation
import NIOCore
import SluiceRedis
import Testing

/// Inputs the `resp` fuzz target (Fuzz/, docs/fuzzing.md) broke, kept as files in `Regressions/` (`resp-*`) and fed
/// through what that target does: the decoder called until it needs more bytes, as NIO's `ByteToMessageHandler` calls
/// it, on the input whole and in pieces, with the same values and the same end each way.
@Suite struct RESPDecoderRegressionTests {
    static func regressions(_ prefix: String) throws -> [(name: String, bytes: [UInt8])] {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Regressions")
        return try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix(prefix) }.sorted()
            .map { name in (name, Array(try Data(contentsOf: folder.appendingPathComponent(name)))) }
    }

    /// The values decoded from `bytes` fed in pieces of `piece` bytes, and the error that ended the stream.
    static func decode(_ bytes: [UInt8], piece: Int) -> (values: [RESPValue], error: String?) {
        var decoder = RESPDecoder()
        var buffer = ByteBuffer()
        var values: [RESPValue] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + piece)
            buffer.writeBytes(bytes[offset..<end])
            offset = end
            do {
                while let value = try decoder.decode(buffer: &buffer) { values.append(value) }
            } catch {
                return (values, "\(error)")
            }
        }
        return (values, nil)
    }

    @Test func regressionInputsDecodeAlikeWholeAndInPieces() throws {
        let inputs = try Self.regressions("resp-")
        #expect(!inputs.isEmpty)
        for (name, bytes) in inputs {
            let whole = Self.decode(bytes, piece: bytes.count)
            for piece in [bytes.count / 3 + 1, bytes.count / 2 + 1] {
                let split = Self.decode(bytes, piece: piece)
                #expect(split.values == whole.values && split.error == whole.error, "\(name) in pieces of \(piece)")
            }
        }
    }

    /// `resp-attribute-chain`: attributes in a row were read by recursion, one stack frame each; a peer sending many
    /// (4 bytes each) overflowed the stack. The value they annotate is decoded.
    @Test func manyAttributesInARowDoNotExhaustTheStack() throws {
        let (name, bytes) = try #require(try Self.regressions("resp-attribute-chain").first)
        #expect(Self.decode(bytes, piece: bytes.count).values == [.simpleString("OK")], "\(name)")
        let longer = Array(repeating: Array("|0\r\n".utf8), count: 200_000).flatMap { $0 } + Array("+OK\r\n".utf8)
        #expect(Self.decode(longer, piece: longer.count).values == [.simpleString("OK")])
    }
}
