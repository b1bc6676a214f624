/// One server address written in a Redis URL that lists several (Sentinel's sentinels, a cluster's seed nodes).
public struct RedisSeed: Sendable, Hashable {
    /// A host name or an address, without brackets for IPv6.
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}

extension RedisSeed: CustomStringConvertible {
    /// `host:port`, `[v6]:port` for IPv6 addresses.
    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }
}
