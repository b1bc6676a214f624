import Foundation
import NIOHTTP1
import SluiceConfig
import SluiceLimiter
import Testing

@testable import SluiceAdmin

/// Routing as plain function calls, for the cases the socket tests do not reach.
@Suite struct AdminRouterTests {
    /// A proxy that has not built its first limiter yet.
    struct StartingBackend: AdminBackend {
        var configuration = testConfiguration(adminToken: "t")
        var limiter: RateLimiter? { nil }
        var isReady: Bool { false }
    }

    let router = AdminRouter(backend: StartingBackend(), metrics: SluiceMetrics(), clock: { testNow })

    @Test func limitsWithoutALimiterAre503() async throws {
        let response = await self.router.respond(method: .GET, uri: "/limits/login?key=a", authorization: "Bearer t")
        #expect(response.status == .serviceUnavailable)
        #expect(response.header("content-type") == "application/json")
    }

    @Test func metricsWithoutALimiterStillRender() async throws {
        let response = await self.router.respond(method: .GET, uri: "/metrics", authorization: "Bearer t")
        #expect(response.status == .ok)
        #expect(response.body.contains("sluice_tracked_keys 0.0\n"))
    }

    @Test func authorizationComesBeforeRouting() async throws {
        #expect(await self.router.respond(method: .GET, uri: "/secret-path", authorization: nil).status == .unauthorized)
        #expect(await self.router.respond(method: .POST, uri: "/metrics", authorization: nil).status == .unauthorized)
        let authorized = await self.router.respond(method: .POST, uri: "/metrics", authorization: "Bearer t")
        #expect(authorized.status == .methodNotAllowed)
    }

    @Test func probesAreOpenAndAnswerEveryMethodRule() async throws {
        #expect(await self.router.respond(method: .GET, uri: "/readyz", authorization: nil).status == .serviceUnavailable)
        #expect(await self.router.respond(method: .HEAD, uri: "/healthz", authorization: nil).status == .ok)
        #expect(await self.router.respond(method: .POST, uri: "/healthz", authorization: nil).status == .methodNotAllowed)
        #expect(await self.router.respond(method: .GET, uri: "/healthz?verbose=1", authorization: nil).status == .ok)
    }

    @Test func routes() {
        #expect(AdminRouter.Route(path: "/limits/login") == .limits(rule: "login"))
        #expect(AdminRouter.Route(path: "/limits/") == nil)
        #expect(AdminRouter.Route(path: "/limits/a/b") == nil)
        #expect(AdminRouter.Route(path: "/metrics/") == nil)
    }
}

/// `GET /` (the status page) and `GET /status` (its JSON).
@Suite struct StatusRouteTests {
    let open = AdminRouter(backend: TestBackend(), metrics: SluiceMetrics(), clock: { testNow })
    let guarded = AdminRouter(
        backend: TestBackend(configuration: testConfiguration(adminToken: "t")),
        metrics: SluiceMetrics(),
        clock: { testNow }
    )

    @Test func pageIsOneSelfContainedHTMLDocument() async throws {
        let response = await self.open.respond(method: .GET, uri: "/", authorization: nil)
        #expect(response.status == .ok)
        #expect(response.header("content-type") == "text/html; charset=utf-8")
        #expect(response.header("cache-control") == "no-store")
        let page = response.body.lowercased()
        #expect(page.hasPrefix("<!doctype html>"))
        for external in ["http://", "https://", "src=", "href=", "url(", "@import", "//cdn", "<link"] {
            #expect(!page.contains(external), "the page refers to something outside itself: \(external)")
        }
        #expect(page.contains("<style>") && page.contains("<script>"))
        #expect(page.contains("fetch(\"status\""), "polls the relative JSON route")
        #expect(!page.contains("innerhtml"), "values are set as text, never parsed as markup")
        #expect(await self.open.respond(method: .HEAD, uri: "/", authorization: nil).status == .ok)
    }

    @Test func statusIsJSON() async throws {
        let response = await self.open.respond(method: .GET, uri: "/status", authorization: nil)
        #expect(response.status == .ok)
        #expect(response.header("content-type") == "application/json")
        let json = try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]
        #expect(json?["ready"] as? Bool == true)
        #expect(await self.open.respond(method: .POST, uri: "/status", authorization: nil).status == .methodNotAllowed)
        #expect(await self.open.respond(method: .GET, uri: "/status/", authorization: nil).status == .notFound)
    }

    @Test func bothNeedTheTokenWhenOneIsSet() async throws {
        for uri in ["/", "/status", "/?refresh=1"] {
            let refused = await self.guarded.respond(method: .GET, uri: uri, authorization: nil)
            #expect(refused.status == .unauthorized, "\(uri)")
            #expect(refused.header("www-authenticate") == "Bearer")
            #expect(await self.guarded.respond(method: .GET, uri: uri, authorization: "Bearer t").status == .ok, "\(uri)")
        }
    }
}
