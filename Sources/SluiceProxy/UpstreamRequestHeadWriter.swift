import NIOCore
import SluiceHTTP1

/// Writes the head a request goes upstream with, from the client's head bytes and their ``ParsedRequestHead``
/// offsets: the kept field lines are copied as bytes, never decoded into `String`s (issue 19, item 2).
///
/// The same rewrite as ``ProxyHandler/rewriteForUpstream(_:framing:target:config:)`` on NIOHTTP1 heads (a differential test
/// holds the two together), SPEC §3:
/// - the request line is `METHOD SP target SP HTTP/1.1`; an absolute-form target goes in origin form, its
///   authority becoming `Host` (RFC 9112 §3.2.2);
/// - hop-by-hop fields are dropped (``HopByHop/names``, `Expect`, and every field `Connection` names except the
///   ``HopByHop/protectedNames``); an upgrade request keeps `Upgrade` and gets `Connection: upgrade`;
/// - the framing is exactly the one the parser decided (`Content-Length: n` once, or `Transfer-Encoding: chunked`);
/// - `X-Forwarded-For` gets the peer appended to the client's values (one field), `X-Forwarded-Proto` and
///   `X-Forwarded-Host` (the client's host) replace the client's; `Host` is the client's with `preserve_host`,
///   else the upstream's.
struct UpstreamRequestHeadWriter {
    /// What the rewrite needs besides the head.
    struct Settings {
        var preserveHost: Bool
        /// `Host` for the upstream when the client's is not kept (``UpstreamTarget/hostHeader``).
        var upstreamHost: String
        /// `http` or `https`.
        var forwardedProto: String
        /// The TCP peer as text, appended to `X-Forwarded-For`.
        var peer: String
    }

    /// Writes the upstream head of `head` (parsed from `bytes`) into `buffer`.
    static func write(
        _ head: ParsedRequestHead,
        bytes: UnsafeRawBufferPointer,
        settings: Settings,
        into buffer: inout ByteBuffer
    ) {
        // Room for the head as received plus what Sluice adds (HeadBytes retries with more if that is short).
        let estimate = bytes.count + settings.peer.utf8.count + settings.upstreamHost.utf8.count + 160
        buffer.writeHeadBytes(estimate: estimate) { out in
            // The names `Connection` lists, lower-cased, as ranges of `bytes` (a few at most; no allocation for none).
            let connectionOptions = HopByHop.connectionOptions(head.fields, in: bytes)
            var forwardedFor = 0
            let isUpgrade = head.isUpgrade
            let absolute = Self.absoluteForm(bytes, head.target)

            out.append(UnsafeRawBufferPointer(rebasing: bytes[head.method]))
            out.append(byte: UInt8(ascii: " "))
            if let absolute {
                // `http://a` and `http://a?q` have an empty path: `/` (RFC 9112 §3.2.1).
                if absolute.originForm.isEmpty || bytes[absolute.originForm.lowerBound] != UInt8(ascii: "/") {
                    out.append(byte: UInt8(ascii: "/"))
                }
                out.append(UnsafeRawBufferPointer(rebasing: bytes[absolute.originForm]))
            } else {
                out.append(UnsafeRawBufferPointer(rebasing: bytes[head.target]))
            }
            out.append(" HTTP/1.1\r\n")

            var clientHost: Range<Int>? = absolute?.authority
            if clientHost == nil, let index = head.hostField { clientHost = head.fields[index].value }

            // Kept lines are copied as received, neighbours in one copy.
            var run = FieldLineRun()
            for index in head.fields.indices {
                let name = head.fields[index].name
                if HopByHop.isDropped(bytes, name, connectionOptions: connectionOptions, dropExpect: true, keepTransferEncoding: false) { continue }
                switch name.count {
                case 4 where HTTPBytes.equalsLowercased(bytes, name, "host"):
                    continue  // written below, once
                case 15 where HTTPBytes.equalsLowercased(bytes, name, "x-forwarded-for"):
                    // Joined into one field, written last (as NIO's replaceOrAdd does).
                    forwardedFor += 1
                    continue
                case 16 where HTTPBytes.equalsLowercased(bytes, name, "x-forwarded-host"):
                    continue
                case 17 where HTTPBytes.equalsLowercased(bytes, name, "x-forwarded-proto"):
                    continue
                case 14 where HTTPBytes.equalsLowercased(bytes, name, "content-length"):
                    continue  // the framing is written below
                default:
                    break
                }
                run.keep(head.fields, index, headLength: head.length, bytes: bytes, into: &out)
            }
            run.flush(bytes, into: &out)
            if isUpgrade {
                for field in head.fields where HTTPBytes.equalsLowercased(bytes, field.name, "upgrade") {
                    Self.writeField(bytes, field, into: &out)
                }
                out.append("Connection: upgrade\r\n")
            }
            switch head.framing {
            case .none:
                break
            case .length(let length):
                out.append("Content-Length: ")
                out.appendDecimal(Int64(length))
                out.append("\r\n")
            case .chunked:
                out.append("Transfer-Encoding: chunked\r\n")
            }
            out.append("X-Forwarded-For: ")
            if forwardedFor > 0 {
                for field in head.fields where HTTPBytes.equalsLowercased(bytes, field.name, "x-forwarded-for") {
                    out.append(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
                    out.append(", ")
                }
            }
            out.append(settings.peer)
            out.append("\r\nX-Forwarded-Proto: ")
            out.append(settings.forwardedProto)
            out.append("\r\n")
            if let clientHost {
                out.append("X-Forwarded-Host: ")
                out.append(UnsafeRawBufferPointer(rebasing: bytes[clientHost]))
                out.append("\r\n")
            }
            out.append("Host: ")
            if settings.preserveHost, let clientHost {
                out.append(UnsafeRawBufferPointer(rebasing: bytes[clientHost]))
            } else {
                out.append(settings.upstreamHost)
            }
            out.append("\r\n\r\n")
        }
    }

    // MARK: pieces

    private static func writeField(_ bytes: UnsafeRawBufferPointer, _ field: ParsedRequestHead.Field, into out: inout HeadBytes) {
        out.append(UnsafeRawBufferPointer(rebasing: bytes[field.name]))
        out.append(": ")
        out.append(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
        out.append("\r\n")
    }


    /// The authority and the origin form (path and query, possibly empty) of an absolute-form target.
    private static func absoluteForm(_ bytes: UnsafeRawBufferPointer, _ target: Range<Int>) -> (authority: Range<Int>, originForm: Range<Int>)? {
        guard let first = target.first, bytes[first] != UInt8(ascii: "/"), bytes[first] != UInt8(ascii: "*") else {
            return nil
        }
        var i = target.lowerBound
        while i + 2 < target.upperBound, !(bytes[i] == 0x3A && bytes[i + 1] == 0x2F && bytes[i + 2] == 0x2F) { i += 1 }
        guard i + 2 < target.upperBound else { return nil }
        let authorityStart = i + 3
        var end = authorityStart
        while end < target.upperBound, bytes[end] != UInt8(ascii: "/"), bytes[end] != UInt8(ascii: "?") { end += 1 }
        return (authorityStart..<end, end..<target.upperBound)
    }
}
