import Testing

@testable import SluiceHTTP1

@Suite("HTTPByteClass")
struct HTTPByteClassTests {
    /// The constant bitmaps and range tests the parsers use say exactly what the classes' definitions say, for
    /// every byte.
    @Test func everyClassMatchesItsDefinitionForEveryByte() {
        let classes = [HTTPByteClass.token, HTTPByteClass.fieldValue, HTTPByteClass.target, HTTPByteClass.host, HTTPByteClass.hex]
        for byte in 0...255 {
            for mask in classes {
                let expected = HTTPByteClass.referenceTable[byte] & mask != 0
                #expect(HTTPByteClass.is(UInt8(byte), mask) == expected, "byte \(byte), class \(mask)")
            }
        }
    }
}
