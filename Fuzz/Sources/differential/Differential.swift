import FuzzSupport
import SluiceDifferential

/// The request-head parser of the request path against NIOHTTP1's `HTTPRequestDecoder` (llhttp) on an
/// `EmbeddedChannel`, as Sluice's client pipeline configured it, and the chunked-body parser against the same
/// decoder (``RequestHeadDifferential`` and ``ChunkedBodyDifferential``, which the differential tests use too).
///
/// Traps when Sluice accepts a head llhttp refuses or has not finished, or when both accept and they disagree on
/// method, target, version, field names and values, or framing (Content-Length / chunked / none); when llhttp
/// refuses, after the head, a head Sluice accepted; and when Sluice finds the end of a chunked body where llhttp does
/// not end it at the same byte with the same data; and, for requests pipelined on one connection, when a message
/// Sluice reads whole (as the proxy reads them: body skipped by its framing, the next head only after a keep-alive
/// request) is not read alike by llhttp (``PipelineDifferential``). Sluice refusing what llhttp accepts is allowed (stricter; such
/// cases are listed in docs/behaviour.md).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDifferential(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = FuzzInput.bytes(data, size)
    if let finding = RequestHeadDifferential.compare(input) {
        fuzzCheck(false, "Sluice laxer than llhttp or disagreeing: \(finding)")
    }
    if let finding = ChunkedBodyDifferential.compare(input) {
        fuzzCheck(false, finding)
    }
    if let finding = PipelineDifferential.compare(input) {
        fuzzCheck(false, finding)
    }
    return 0
}
