/// The comparison of ``HTTPRequestHeadParser`` with NIOHTTP1's decoder (llhttp) on one input, shared by the
/// differential tests (`Tests/SluiceHTTP1Tests`) and the `differential` fuzz target (`Fuzz/`).
///
/// Sluice may be stricter than llhttp, never laxer: a head Sluice accepts must be accepted by llhttp, with the same
/// method, target, version, fields and framing, and llhttp must not refuse that head alone afterwards (it judges a
/// request's framing after handing its head over).
public enum RequestHeadDifferential {
    /// A disagreement worth reporting.
    public struct Finding: CustomStringConvertible, Sendable {
        public var input: [UInt8]
        public var sluice: SluiceOutcome
        public var reference: ReferenceOutcome

        public init(input: [UInt8], sluice: SluiceOutcome, reference: ReferenceOutcome) {
            self.input = input
            self.sluice = sluice
            self.reference = reference
        }

        public var description: String {
            "\"\(RequestHeadDifferential.escaped(self.input))\": sluice \(self.sluice), NIOHTTP1 \(self.reference)"
        }
    }

    /// `nil` when the two agree or Sluice is stricter; the finding otherwise.
    public static func compare(_ input: [UInt8]) -> Finding? {
        let reference = NIOReferenceDecoder.decode(input)
        let sluice = SluiceOutcome.parse(input)
        switch (sluice, reference) {
        case (.accepted(let ours, let length), .accepted(let theirs)):
            guard ours == theirs else { return Finding(input: input, sluice: sluice, reference: reference) }
            // llhttp judges the framing after handing over the head (`Request has invalid Transfer-Encoding`): the
            // head alone, with nothing after it, must not be refused.
            if NIOReferenceDecoder.refusesHeadAlone(Array(input[0..<length])) {
                return Finding(input: input, sluice: sluice, reference: .rejected("after the head"))
            }
            return nil
        case (.accepted, _):
            // Laxer: Sluice accepts what llhttp refuses or has not finished.
            return Finding(input: input, sluice: sluice, reference: reference)
        case (.rejected, _), (.incomplete, .incomplete), (.incomplete, .rejected):
            return nil
        case (.incomplete, .accepted):
            // Sluice waits (then times out with 408) for a head llhttp took: stricter.
            return nil
        }
    }

    /// The bytes with CR, LF and every byte outside printable ASCII escaped (`\r`, `\n`, `\xHH`).
    public static func escaped(_ bytes: [UInt8]) -> String {
        let hex: [Character] = Array("0123456789ABCDEF")
        var text = ""
        for b in bytes {
            switch b {
            case 0x0D: text += "\\r"
            case 0x0A: text += "\\n"
            case 0x20...0x7E: text.append(Character(UnicodeScalar(b)))
            default: text += "\\x" + String(hex[Int(b >> 4)]) + String(hex[Int(b & 0xF)])
            }
        }
        return text
    }
}
