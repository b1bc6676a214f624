import NIOCore
import Testing

@testable import SluiceProxy

@Suite("HeadBytes: heads written into reserved memory")
struct HeadBytesTests {
    @Test("an estimate far too small is retried with more room until the whole text fits, byte-exact")
    func overflowRetries() {
        let long = String(repeating: "abcdefghij", count: 100)
        var runs = 0
        var buffer = ByteBuffer(string: "prefix:")
        buffer.writeHeadBytes(estimate: 1) { out in
            runs += 1
            out.append("Name: ")
            out.append(long)
            out.append(byte: UInt8(ascii: ";"))
            out.appendDecimal(-1234567890)
            out.append("\r\n")
        }
        #expect(String(buffer: buffer) == "prefix:Name: \(long);-1234567890\r\n")
        #expect(runs > 1)  // 64 bytes first, then 128, ... up to 1024+
    }

    @Test("decimals are written as String(value) writes them, at every digit count and both ends of Int64")
    func decimals() {
        var values: [Int64] = [0, 1, -1, 9, 10, 99, 100, .max, .min, .max - 1, .min + 1]
        var power: Int64 = 1
        for _ in 0..<18 {
            power *= 10
            values += [power - 1, power, power + 1, -power, -(power - 1)]
        }
        for value in values {
            var buffer = ByteBuffer()
            buffer.writeHeadBytes(estimate: 64) { $0.appendDecimal(value) }
            #expect(String(buffer: buffer) == String(value))
        }
    }

    @Test("a writer that is exactly full takes nothing more and says so")
    func exactFit() {
        var bytes = [UInt8](repeating: 0, count: 5)
        bytes.withUnsafeMutableBytes { memory in
            var out = HeadBytes(memory)
            out.append("abcde")
            #expect(out.count == 5 && !out.overflowed)
            out.appendDecimal(7)
            #expect(out.overflowed)
            out.append(byte: 1)
            #expect(out.count == 5)
        }
        #expect(bytes == Array("abcde".utf8))
    }
}
