import NIOCore
import SluiceHTTP1

/// How the client handler sends a response body after ``ClientResponseHeadWriter`` wrote its head.
enum ClientResponseFraming: Sendable, Equatable {
    /// The body goes as the upstream sent it: a `Content-Length` body, no body (HEAD, 1xx, 204, 304, a 101's
    /// tunnel), or a chunked body passed through, chunk framing included, to an HTTP/1.1 client.
    case asReceived
    /// A body delimited by the upstream's close, to an HTTP/1.1 client: each slice goes as one chunk
    /// (``ClientResponseHeadWriter/writeChunkHeader(length:into:)``, the data, ``ClientResponseHeadWriter/writeChunkDataEnd(into:)``),
    /// and ``ClientResponseHeadWriter/writeLastChunk(into:)`` ends it when the upstream closes.
    case chunkEncode
    /// An HTTP/1.0 client and a chunked or close-delimited body: the data only, and the client connection closes
    /// after it (HTTP/1.0 has no chunked coding).
    case closeDelimited

    /// The client connection must close after this response, whatever was asked.
    var forcesClose: Bool { self == .closeDelimited }

    /// What to ask ``UpstreamConnectionHandler`` for when the head arrives.
    var delivery: UpstreamBodyDelivery { self == .closeDelimited ? .dataOnly : .asReceived }
}

/// Writes the response head that goes to the client, from the upstream's head bytes and their
/// ``ParsedResponseHead`` offsets: kept field lines are copied as bytes, never decoded into `String`s (issue 19,
/// item 2, response direction).
///
/// The same rewrite as `ProxyHandler.upstreamReceived(.head)` on NIOHTTP1 heads (a differential test holds the two
/// together, field order aside), SPEC §3:
/// - the status line is `HTTP/1.<client's minor> <code> <reason as received>`;
/// - hop-by-hop fields are dropped (``HopByHop/names``, and every field `Connection` names except the
///   ``HopByHop/protectedNames``), except a chunked body's `Transfer-Encoding` passed through to an HTTP/1.1 client;
///   a 101 keeps `Upgrade` and gets `Connection: upgrade` (RFC 9110 §7.8);
/// - the extra fields (RateLimit headers) are appended;
/// - framing: `Content-Length` as received; no body (HEAD, 1xx, 204, 304) keeps the upstream's `Content-Length`; a
///   chunked body to an HTTP/1.1 client keeps the upstream's `Transfer-Encoding` field(s) verbatim; a body until the
///   close gets `Transfer-Encoding: chunked` for an HTTP/1.1 client; an HTTP/1.0 client gets a chunked or
///   close-delimited body as data only, unframed, and the connection closes after it;
/// - `Connection: close` to an HTTP/1.1 client that is not kept alive, `Connection: keep-alive` to an HTTP/1.0
///   client that is.
enum ClientResponseHeadWriter {
    /// Writes the client's head of `head` (parsed from `bytes`) into `buffer`.
    ///
    /// - Parameters:
    ///   - head: the upstream's final response head (or a 101).
    ///   - bytes: the head's bytes; `head`'s offsets index them from 0.
    ///   - clientMinorVersion: the client request's `HTTP/1.x` minor version (0 or 1).
    ///   - keepAlive: whether the client connection should stay open (the request asked for it and the proxy is not
    ///     draining); forced to `false` when the framing is ``ClientResponseFraming/closeDelimited``. Ignored for a 101.
    ///   - extraFields: fields appended after the upstream's (RateLimit headers).
    /// - Returns: how the body is to be sent; ``ClientResponseFraming/forcesClose`` says whether the connection
    ///   closes after it whatever `keepAlive` said.
    @discardableResult
    static func write(
        _ head: ParsedResponseHead,
        bytes: UnsafeRawBufferPointer,
        clientMinorVersion: Int,
        keepAlive: Bool,
        extraFields: [(name: String, value: String)],
        into buffer: inout ByteBuffer
    ) -> ClientResponseFraming {
        Self.write(head, bytes: bytes, clientMinorVersion: clientMinorVersion, keepAlive: keepAlive, into: &buffer) { out in
            for (name, value) in extraFields {
                out.append(name)
                out.append(": ")
                out.append(value)
                out.append("\r\n")
            }
        }
    }

    /// ``write(_:bytes:clientMinorVersion:keepAlive:extraFields:into:)`` with the extra fields written by
    /// `writeExtraFields` (``RateLimitFieldValues/write(into:)``: no `String` per field). `writeExtraFields` may run more
    /// than once (``ByteBuffer/writeHeadBytes(estimate:_:)``) and must write the same fields each time.
    @discardableResult
    static func write(
        _ head: ParsedResponseHead,
        bytes: UnsafeRawBufferPointer,
        clientMinorVersion: Int,
        keepAlive: Bool,
        into buffer: inout ByteBuffer,
        writeExtraFields: (inout HeadBytes) -> Void
    ) -> ClientResponseFraming {
        let clientIs11 = clientMinorVersion >= 1
        let isSwitching = head.isSwitchingProtocols
        let framing: ClientResponseFraming
        var keepTransferEncoding = false
        switch head.framing {
        case .none, .length:
            framing = .asReceived
        case .chunked:
            framing = clientIs11 ? .asReceived : .closeDelimited
            keepTransferEncoding = clientIs11
        case .untilClose:
            framing = clientIs11 ? .chunkEncode : .closeDelimited
        }

        // The names `Connection` lists (a few at most; no allocation when it names none but its own options).
        let connectionOptions = HopByHop.connectionOptions(head.fields, in: bytes)

        // Room for the head as received plus the fields Sluice adds (HeadBytes retries with more if that is short).
        buffer.writeHeadBytes(estimate: bytes.count + 512) { out in
            out.append(clientIs11 ? "HTTP/1.1 " : "HTTP/1.0 ")
            out.append(UnsafeRawBufferPointer(rebasing: bytes[head.statusRange]))
            out.append(byte: UInt8(ascii: " "))
            out.append(UnsafeRawBufferPointer(rebasing: bytes[head.reason]))
            out.append("\r\n")

            // Kept lines are copied as received, neighbours in one copy.
            var run = FieldLineRun()
            for index in head.fields.indices {
                if HopByHop.isDropped(
                    bytes,
                    head.fields[index].name,
                    connectionOptions: connectionOptions,
                    dropExpect: false,
                    keepTransferEncoding: keepTransferEncoding
                ) {
                    continue
                }
                run.keep(head.fields, index, headLength: head.length, bytes: bytes, into: &out)
            }
            run.flush(bytes, into: &out)
            if isSwitching {
                for field in head.fields where HTTPBytes.equalsLowercased(bytes, field.name, "upgrade") {
                    Self.writeField(bytes, field, into: &out)
                }
                out.append("Connection: upgrade\r\n")
            }
            writeExtraFields(&out)
            if framing == .chunkEncode {
                out.append("Transfer-Encoding: chunked\r\n")
            }
            if !isSwitching {
                let keepAlive = keepAlive && !framing.forcesClose
                if clientIs11 {
                    if !keepAlive { out.append("Connection: close\r\n") }
                } else if keepAlive {
                    out.append("Connection: keep-alive\r\n")
                }
            }
            out.append("\r\n")
        }
        return framing
    }

    // MARK: chunk encoding (``ClientResponseFraming/chunkEncode``)

    /// Writes a chunk's size line, `hex CRLF`, for `length` data bytes (`length` > 0: a 0 would end the body).
    static func writeChunkHeader(length: Int, into buffer: inout ByteBuffer) {
        precondition(length > 0, "an empty chunk ends the body")
        var digits = 0
        var rest = length
        while rest > 0 {
            digits += 1
            rest >>= 4
        }
        var shift = (digits - 1) * 4
        while shift >= 0 {
            let nibble = UInt8((length >> shift) & 0xF)
            buffer.writeInteger(nibble < 10 ? 0x30 + nibble : 0x61 - 10 + nibble)
            shift -= 4
        }
        buffer.writeStaticString("\r\n")
    }

    /// Writes the CRLF after a chunk's data.
    static func writeChunkDataEnd(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("\r\n")
    }

    /// Writes the last chunk and the empty trailer section: `0 CRLF CRLF`.
    static func writeLastChunk(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("0\r\n\r\n")
    }

    // MARK: pieces

    private static func writeField(_ bytes: UnsafeRawBufferPointer, _ field: ParsedResponseHead.Field, into out: inout HeadBytes) {
        out.append(UnsafeRawBufferPointer(rebasing: bytes[field.name]))
        out.append(": ")
        out.append(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
        out.append("\r\n")
    }

}
