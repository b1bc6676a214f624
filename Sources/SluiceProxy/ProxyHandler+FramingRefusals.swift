import NIOCore
import NIOHTTP1

/// Requests ``ChunkedFramingGuard`` refuses (SPEC §3 "Hostile clients"): the status of the
/// ``ChunkedFramingError`` if no response has started, else just a close. Either way the connection ends,
/// and the upstream connection of the cut request is closed, never pooled.
extension ProxyHandler {
    /// The guard refused request `error.request`; it passes nothing on after the refusal.
    ///
    /// The error arrives as soon as the guard sees the offending byte, which may be before the refused request's
    /// head has left HTTPServerPipelineHandler (it holds a pipelined request back while the one before it is
    /// answered). The answer then waits for that head, so the exchange in flight finishes untouched.
    func framingRefused(_ error: ChunkedFramingError) {
        self.shared.logger.debug("client framing refused", metadata: ["error": "\(error)", "peer": "\(self.peerIP)"])
        if error.request > self.requestHeadsReceived {
            self.pendingFramingError = error
            return
        }
        switch self.state {
        case .forwarding(let exchange):
            self.abortUpstream(exchange)
            if exchange.responseHeadSent {
                self.closeClient()
                return
            }
            // As for data over max_body_bytes: the answer, then a lingering close (the client may still be sending).
            self.state = .answeredLocally(closeAfter: true, requestEnded: false)
            self.writeLocalResponse(
                status: error.status,
                version: exchange.clientVersion,
                headers: [],
                body: error.answerBody,
                close: true
            )
        case .answeredLocally:
            // Answered already (its body was being read off): the rest of the body cannot be skipped.
            self.closeAfterPendingWrites()
        case .awaitingHead:
            self.writeRawErrorAndClose(error.status)
        case .tunnelling, .closed:
            break
        }
    }

    /// Answers `head` if the guard refused its request before it arrived; returns whether it did.
    func answerPendingFramingRefusal(_ head: HTTPRequestHead) -> Bool {
        guard let pending = self.pendingFramingError, pending.request <= self.requestHeadsReceived else {
            return false
        }
        self.pendingFramingError = nil
        self.answerLocally(status: pending.status, body: pending.answerBody, head: head, close: true)
        return true
    }
}

extension ChunkedFramingError {
    /// The body of the answer.
    var answerBody: String {
        switch self.violation {
        case .chunkLineTooLong: return "bad request: chunk-size line too long\n"
        case .tooManyExtensionBytes: return "bad request: too many chunk-extension bytes\n"
        case .bodyTooLarge: return "request body too large\n"
        case .trailersTooLarge: return "request trailer section too large\n"
        }
    }
}
