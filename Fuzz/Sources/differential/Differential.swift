import FuzzSupport
import SluiceDifferential

/// The request-head parser of the request path against NIOHTTP1's `HTTPRequestDecoder` (llhttp) on an
/// `EmbeddedChannel`, as Sluice's client pipeline configured it (``RequestHeadDifferential``, which the differential
/// tests use too).
///
/// Traps when Sluice accepts a head llhttp refuses or has not finished, or when both accept and they disagree on
/// method, target, version, field names and values, or framing (Content-Length / chunked / none); and when llhttp
/// refuses, after the head, a head Sluice accepted. Sluice refusing what llhttp accepts is allowed (stricter; such
/// cases are listed in docs/behaviour.md).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDifferential(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = FuzzInput.bytes(data, size)
    if let finding = RequestHeadDifferential.compare(input) {
        fuzzCheck(false, "Sluice laxer than llhttp or disagreeing: \(finding)")
    }
    return 0
}
