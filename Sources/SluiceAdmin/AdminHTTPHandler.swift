import NIOCore
import NIOHTTP1

/// Answers admin requests on one connection: consumes request parts, produces one full response per request.
///
/// Sits after `configureHTTPServerPipeline` (which serialises pipelined requests and turns parse errors into 400).
/// The head is kept until `.end` arrives; a body is read and dropped (no admin endpoint takes one), so a client that
/// sends one still gets its answer. The answer comes from ``AdminRouter`` in a task, since `/limits` may wait for a
/// shared store; the event loop is never blocked, and the pipeline handler before this one holds a pipelined next
/// request back until this answer's `.end` is written, so answers stay in order.
///
/// Keep-alive follows the request (`HTTPRequestHead.isKeepAlive`); the connection is closed after the response
/// of a request that did not ask to keep it.
final class AdminHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let router: AdminRouter
    /// The head of the request being read, `nil` between requests.
    private var head: HTTPRequestHead?

    init(router: AdminRouter) {
        self.router = router
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            let router = self.router
            let authorization = head.headers.first(name: "authorization")
            let hosts = head.headers["host"]
            // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host; HTTP/1.0 may have none.
            if hosts.count > 1 || (hosts.isEmpty && head.version != .http1_0) {
                self.write(.error(.badRequest, "a request needs exactly one Host header"), for: head, context: context)
                return
            }
            let answered = context.eventLoop.makePromise(of: AdminResponse.self)
            answered.completeWithTask {
                await router.respond(
                    method: head.method,
                    uri: head.uri,
                    authorization: authorization,
                    host: hosts.first
                )
            }
            let handler = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            answered.futureResult.whenSuccess { response in
                let (handler, context) = handler.value
                handler.write(response, for: head, context: context)
            }
        }
    }

    private func write(_ response: AdminResponse, for request: HTTPRequestHead, context: ChannelHandlerContext) {
        let keepAlive = request.isKeepAlive
        var headers = HTTPHeaders(response.headers)
        let hasBody = response.status != .noContent && response.status != .notModified
        if hasBody {
            headers.replaceOrAdd(name: "Content-Length", value: String(response.body.utf8.count))
        }
        if !keepAlive {
            headers.replaceOrAdd(name: "Connection", value: "close")
        } else if request.version == .http1_0 {
            headers.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        let head = HTTPResponseHead(version: request.version, status: response.status, headers: headers)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if hasBody, request.method != .HEAD, !response.body.isEmpty {
            let buffer = context.channel.allocator.buffer(string: response.body)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        if keepAlive {
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let closed = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
            let channel = context.channel
            closed.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
