import NIOCore
import SluiceHTTP1

/// Copies the field lines a head writer keeps exactly as they were received, each run of neighbouring kept lines in
/// one copy (issue 19: the head is forwarded with in-place edits). Writing a field as name, `": "`, value and CRLF
/// took four buffer writes per field; a head whose fields are all kept is now one.
///
/// A line runs from its name to the next line's name (for the last field, to the head's final CRLF), so it carries
/// its own `": "`, whitespace and CRLF as the parser accepted them.
struct FieldLineRun {
    private var start = 0
    private var end = 0

    /// Where line `index` of `fields` ends, in a head of `headLength` bytes.
    @inline(__always)
    static func lineEnd(_ fields: [ParsedRequestHead.Field], _ index: Int, headLength: Int) -> Int {
        index + 1 < fields.count ? fields[index + 1].name.lowerBound : headLength - 2
    }

    /// Keeps line `index` of `fields`; it is copied with its neighbours by ``flush(_:into:)``.
    @inline(__always)
    mutating func keep(
        _ fields: [ParsedRequestHead.Field],
        _ index: Int,
        headLength: Int,
        bytes: UnsafeRawBufferPointer,
        into out: inout HeadBytes
    ) {
        let line = fields[index].name.lowerBound..<Self.lineEnd(fields, index, headLength: headLength)
        if line.lowerBound != self.end {
            self.flush(bytes, into: &out)
            self.start = line.lowerBound
        }
        self.end = line.upperBound
    }

    /// Copies the run kept so far.
    @inline(__always)
    mutating func flush(_ bytes: UnsafeRawBufferPointer, into out: inout HeadBytes) {
        if self.end > self.start {
            out.append(UnsafeRawBufferPointer(rebasing: bytes[self.start..<self.end]))
        }
        self.start = self.end
    }
}
