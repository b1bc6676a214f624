import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceAdmin

/// The tiny built-in upstream of `sluice demo`: answers every request with a short JSON body
/// naming the method and path, so a person trying Sluice needs no backend of their own.
enum DemoUpstream {
    static func start(group: EventLoopGroup, host: String, port: Int) async throws -> Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(DemoUpstreamHandler())
                }
            }
            .bind(host: host, port: port).get()
    }
}

private final class DemoUpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var head: HTTPRequestHead?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head = self.head else { return }
            var body = #"{"upstream":"sluice-demo","method":"\#(head.method.rawValue)","path":"#
            JSONText.appendString(head.uri, to: &body)
            body += "}\n"
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(body.utf8.count))
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            if head.method != .HEAD {
                context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            }
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
