import Foundation
import SluiceTestSupport
import Testing

/// `sluice demo` (SPEC §1): config/demo.yaml in front of the built-in upstream on fixed ports.
@Suite("sluice demo")
struct DemoCommandTests {
    /// The demo needs 127.0.0.1:8080 and :8081; the test is skipped when either is taken.
    static var demoPortsFree: Bool {
        [8080, 8081].allSatisfy { port in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return false }
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
        }
    }

    @Test(.enabled(if: demoPortsFree, "ports 8080/8081 are busy"))
    func demoServesAndLimits() async throws {
        let process = try SluiceProcess(["demo"])
        let port = try await process.listeningPort()
        #expect(port == 8080)
        #expect(process.outputSoFar.contains("curl"))
        var statuses: [Int] = []
        var first: RawHTTPClient.Response?
        for _ in 0..<8 {
            let r = try await E2E.request(port: port, "/hello")
            if first == nil { first = r }
            statuses.append(r.status)
            if r.status == 429 { break }
        }
        #expect(first?.status == 200)
        #expect(first?.bodyString.contains("sluice-demo") == true)
        #expect(first?.rateLimit?.name == "per-ip")
        // 5 per 10 seconds per IP.
        #expect(statuses == [200, 200, 200, 200, 200, 429])
        process.signal(SIGINT)
        let status = try await process.waitForExit()
        #expect(status == 0, "\(process.outputSoFar)")
    }

    /// The demo machinery with a file of its own on free ports (runs even when 8080 is taken).
    @Test func demoWithOwnConfig() async throws {
        let upstreamPort = try await ReloadTests.freePort()
        let path = try E2E.writeConfig(
            """
            version: 1
            server:
              listen: "127.0.0.1:0"
              threads: 1
              access_log: "off"
            upstream:
              url: http://127.0.0.1:\(upstreamPort)
            rules:
              - name: per-ip
                key: [ip]
                limits: ["2/minute"]
            """
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        let process = try SluiceProcess(["demo", "--config", path])
        let port = try await process.listeningPort()
        #expect(process.outputSoFar.contains("curl"))
        let first = try await E2E.request(port: port, "/hello")
        #expect(first.status == 200)
        #expect(first.bodyString.contains(#""path":"/hello""#))
        #expect(try await E2E.statuses(port: port, "/hello", count: 2) == [200, 429])
        process.signal(SIGINT)
        #expect(try await process.waitForExit() == 0, "\(process.outputSoFar)")
    }
}
