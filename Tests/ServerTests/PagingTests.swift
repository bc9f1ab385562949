import Common
import HTTPCore
import TestSupport
import Testing

/// One page reader (`EndpointKit.page`) behind every list, each surface
/// naming and shaping its own parameters and errors.
@Suite struct PagingTests {
    @Test func everyListReadsItsPageTheSameWayAndRefusesInItsOwnShape() throws {
        let h = try Harness()
        let token = try h.token()
        for name in ["a", "b", "c"] {
            #expect(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": .string(name), "grant_types": ["client_credentials"]]).status == 201)
        }
        func get(_ path: String, _ query: String) -> Response {
            h.call("GET", path, query: query, headers: [("Authorization", "Bearer \(token)")])
        }
        // Native: limit 1..250 (default 50), offset optional.
        #expect(get("/api/v1/clients", "limit=2&offset=1").json?["clients"]?.arrayValue?.count == 2)
        #expect(get("/api/v1/clients", "").json?["clients"]?.arrayValue?.count == 4, "the primary and three")
        for bad in ["limit=0", "limit=251", "offset=-1", "offset=1000000001", "limit=x", "limit=%zz"] {
            let r = get("/api/v1/clients", bad)
            #expect(r.status == 400, "\(bad)")
        }
        #expect(get("/api/v1/clients", "limit=0").json?["errors"]?.arrayValue?.first?["field"] == "limit")
        // /v3: the same bounds, its own error body.
        #expect(get("/v3/oauth-clients", "limit=1&offset=2").json?.arrayValue?.count == 1)
        let v3 = get("/v3/oauth-clients", "offset=-5")
        #expect(v3.status == 400 && v3.json?["detailCode"] != nil, "\(v3.bodyText)")
        // The app API: amount and offset both required.
        #expect(get("/api/oauth/app", "amount=3&offset=0").json?["apps"]?.arrayValue?.count == 3)
        for bad in ["amount=3", "offset=0", "amount=256&offset=0", "amount=1&offset=x"] {
            let r = get("/api/oauth/app", bad)
            #expect(r.status == 400 && r.json?["message"] != nil, "\(bad)")
        }
    }
}
