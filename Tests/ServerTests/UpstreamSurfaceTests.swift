import Common
import HTTPCore
import OAuth
import TestSupport
import Testing

@Suite struct UpstreamSurfaceTests {
    func basic(_ h: Harness) -> (String, String) { ("Authorization", Harness.basic(h.primary.clientID, h.primary.clientSecret)) }

    func send(_ h: Harness, _ method: String, query: String = "", path: String = "/uc/resources/oauthclient", contentType: String? = "application/json",
              accept: String? = nil, body: String = "", auth: Bool = true) -> Response {
        var headers: [(String, String)] = []
        if auth { headers.append(basic(h)) }
        if let contentType, !body.isEmpty { headers.append(("Content-Type", contentType)) }
        if let accept { headers.append(("Accept", accept)) }
        return h.call(method, path, query: query, headers: headers, body: Array(body.utf8))
    }

    @Test func jsonLifecycle() throws {
        let h = try Harness()
        let create = """
            {"name": "Corp Azure", "provider": "Azure AD", "tenantId": "contoso.onmicrosoft.com", "clientId": "abc-123", "clientSecret": "upstream-secret",
             "scopes": ["openid", "email"], "clusterRedirectUrls": [{"clusterNode": "node1", "redirectUrl": "https://uc.example/cb"}],
             "opswiseGroups": ["ops"], "sysId": "0123456789abcdef0123456789abcdef", "description": "SSO"}
            """
        let r = send(h, "POST", body: create)
        #expect(r.status == 200)
        #expect(r.bodyText == "Successfully created the OAuth Client with id 0123456789abcdef0123456789abcdef.")
        let read = try #require(send(h, "GET", query: "oauthclientname=Corp%20Azure").json)
        #expect(read["authorizationEndpoint"] == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize")
        #expect(read["tokenEndpoint"] == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token")
        #expect(read["clientSecret"] == nil)
        #expect(read["version"] == 1)
        #expect(!send(h, "GET", query: "oauthclientid=0123456789abcdef0123456789abcdef").bodyText.contains("upstream-secret"))
        // Update by sysId with the current version; a stale version is 409.
        let update = send(h, "PUT", body: #"{"sysId": "0123456789abcdef0123456789abcdef", "description": "Updated", "version": 1}"#)
        #expect(update.bodyText == "Successfully updated the OAuth Client with id 0123456789abcdef0123456789abcdef.")
        #expect(send(h, "PUT", body: #"{"sysId": "0123456789abcdef0123456789abcdef", "description": "Stale", "version": 1}"#).status == 409)
        #expect(send(h, "PUT", body: #"{"name": "Corp Azure", "provider": "Google"}"#).status == 400)
        #expect(send(h, "GET", query: "oauthclientid=0123456789abcdef0123456789abcdef").json?["version"] == 2)
        // retainSysIds false: a new id is generated.
        let generated = send(h, "POST", body: #"{"name": "Google SSO", "provider": 2, "clientId": "g", "clientSecret": "s", "scopes": ["openid"], "sysId": "ffffffffffffffffffffffffffffffff", "retainSysIds": false}"#)
        #expect(generated.status == 200)
        #expect(!generated.bodyText.contains("ffffffffffffffffffffffffffffffff"))
        let list = try #require(send(h, "GET", path: "/uc/resources/oauthclient/list").json?.arrayValue)
        #expect(list.count == 2)
        #expect(list.first(where: { $0["name"] == "Google SSO" })?["authorizationEndpoint"] == "https://accounts.google.com/o/oauth2/v2/auth")
        #expect(send(h, "POST", body: #"{"name": "Google SSO", "provider": "Google", "clientId": "g", "clientSecret": "s", "scopes": ["openid"]}"#).status == 409)
        #expect(send(h, "DELETE", query: "oauthclientname=Google%20SSO").bodyText == "OAuth Client deleted successfully.")
        let missing = send(h, "GET", query: "oauthclientname=Google%20SSO")
        #expect(missing.status == 404 && missing.bodyText == "An OAuth Client with name \"Google SSO\" does not exist.")
        #expect(send(h, "GET", query: "oauthclientid=00000000000000000000000000000000").bodyText == "An OAuth Client with id \"00000000000000000000000000000000\" does not exist.")
        #expect(send(h, "GET", query: "oauthclientname=a&oauthclientid=b").status == 400)
        #expect(send(h, "GET").status == 400)
    }

    /// A name is counted in characters and bounded in bytes: one character can carry thousands of combining
    /// marks, and PostgreSQL's index on (organization, name) holds about 2,700 bytes once compressed (an
    /// incompressible one was a 500 there and a 200 on SQLite); 100 characters of four bytes each still fit.
    @Test func aNameOfOneCharacterButManyBytesIsRefusedOnEveryStore() throws {
        let h = try Harness()
        func create(_ name: String, sysID: String) -> Response {
            send(h, "POST", body: #"{"name": "\#(name)", "provider": "Google", "clientId": "g", "clientSecret": "s", "scopes": ["openid"], "sysId": "\#(sysID)"}"#)
        }
        // Marks in a varying order, so that PostgreSQL cannot compress the index entry below its limit.
        var generator = SystemRandomNumberGenerator()
        let marks = (0..<3000).map { _ in Character(Unicode.Scalar(0x300 + UInt32.random(in: 0..<0x70, using: &generator))!) }
        let heavy = create("e" + String(marks), sysID: String(repeating: "a", count: 32))
        #expect(heavy.status == 400, "\(heavy.status) \(heavy.bodyText)")
        let wide = create(String(repeating: "😀", count: 100), sysID: String(repeating: "b", count: 32))
        #expect(wide.status == 200, "\(wide.status) \(wide.bodyText)")
    }

    @Test func xmlInAndOut() throws {
        let h = try Harness()
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <oauthClient retainSysIds="true">
              <name>XML &amp; Co</name><provider>Google</provider><clientId>xml-client</clientId><clientSecret>s3cret</clientSecret>
              <scopes><scope>openid</scope><scope>email</scope></scopes>
              <clusterRedirectUrls><clusterRedirectUrl><clusterNode>n1</clusterNode><redirectUrl>https://uc.example/cb</redirectUrl></clusterRedirectUrl></clusterRedirectUrls>
              <opswiseGroups><opswiseGroup>admins</opswiseGroup></opswiseGroups>
            </oauthClient>
            """
        let r = send(h, "POST", contentType: "application/xml", body: xml)
        #expect(r.status == 200, "\(r.bodyText)")
        let out = send(h, "GET", query: "oauthclientname=XML%20%26%20Co", accept: "application/xml")
        #expect(out.headers[.contentType]?.hasPrefix("application/xml") == true)
        let doc = try XMLElement.parse(out.body)
        #expect(doc.name == "oauthClient")
        #expect(doc.child("name")?.text == "XML & Co")
        #expect(doc.child("scopes")?.all("scope").map(\.text) == ["openid", "email"])
        #expect(doc.child("clientSecret") == nil)
        #expect(doc.child("tokenEndpoint")?.text == "https://oauth2.googleapis.com/token")
        let list = try XMLElement.parse(send(h, "GET", path: "/uc/resources/oauthclient/list", accept: "application/xml").body)
        #expect(list.name == "oauthClients" && list.all("oauthClient").count == 1)
    }

    @Test func xxeAndBadBodiesAreRefused() throws {
        let h = try Harness()
        let xxe = """
            <?xml version="1.0"?><!DOCTYPE oauthClient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
            <oauthClient><name>&xxe;</name><provider>Google</provider><clientId>c</clientId><clientSecret>s</clientSecret><scopes><scope>a</scope></scopes></oauthClient>
            """
        let r = send(h, "POST", contentType: "application/xml", body: xxe)
        #expect(r.status == 400)
        #expect(!r.bodyText.contains("root:"))
        let cases: [(String, String)] = [
            ("application/xml", "<oauthClient><name>x</name>"), ("application/xml", "<oauthClient><bogus>1</bogus></oauthClient>"),
            ("application/xml", "<oauthClient><name>&undefined;</name></oauthClient>"), ("application/json", "{"),
            ("application/json", #"{"name": "x", "provider": "Okta", "clientId": "c", "clientSecret": "s", "scopes": ["a"]}"#),
            ("application/json", #"{"name": "x", "provider": "Google", "clientId": "c", "clientSecret": "s", "scopes": []}"#),
            ("application/json", #"{"name": "x", "provider": "Google", "clientId": "c", "scopes": ["a"]}"#),
            ("application/json", #"{"provider": "Google", "clientId": "c", "clientSecret": "s", "scopes": ["a"]}"#),
            ("application/json", #"{"name": "x", "provider": "Google", "clientId": "c", "clientSecret": "s", "scopes": ["a"], "sysId": "xyz"}"#),
            ("application/json", #"{"name": "x", "provider": "Google", "clientId": "c", "clientSecret": "s", "scopes": ["a"], "unknown": 1}"#),
            ("application/json", .init(repeating: "x", count: 3)),
        ]
        for (type, body) in cases {
            let response = send(h, "POST", contentType: type, body: body)
            #expect(response.status == 400, "\(body): \(response.bodyText)")
            #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
        }
        #expect(send(h, "POST", contentType: "text/csv", body: "a,b").status == 415)
        // An ampersand in a secret is refused without the secret's text in the answer (secret hygiene review, session 29).
        let ampersand = "<oauthClient><name>x</name><provider>Google</provider><clientId>c</clientId><clientSecret>a&UpSecretPart42;b</clientSecret>"
            + "<scopes><scope>a</scope></scopes></oauthClient>"
        let refused = send(h, "POST", contentType: "application/xml", body: ampersand)
        #expect(refused.status == 400 && !refused.bodyText.contains("UpSecretPart42") && refused.bodyText.contains("&amp;"), "\(refused.bodyText)")
        #expect(try h.store.upstreams(organizationID: h.primary.organizationID).isEmpty)
    }

    @Test func httpBasicWithProvidersManageOnly() throws {
        let h = try Harness()
        let none = send(h, "GET", path: "/uc/resources/oauthclient/list", auth: false)
        #expect(none.status == 401 && none.headers[.wwwAuthenticate]?.hasPrefix("Basic") == true)
        #expect(none.bodyText == "Operation prohibited due to security constraints.")
        let wrong = h.call("GET", "/uc/resources/oauthclient/list", headers: [("Authorization", Harness.basic(h.primary.clientID, "lks_wrong"))])
        #expect(wrong.status == 403 && wrong.bodyText == "Operation prohibited due to security constraints.")
        let bearer = h.call("GET", "/uc/resources/oauthclient/list", headers: [("Authorization", "Bearer \(try h.token())")])
        #expect(bearer.status == 401 || bearer.status == 403)
        // A client without providers:manage is refused.
        let hasher = try Provisioning.secretHasher(store: h.store, env: h.env)
        let secret = hasher.generate(h.env)
        try h.store.write {
            try h.store.insertClient(Client(clientID: "no-providers", organizationID: h.primary.organizationID, name: "x", scope: ["clients:read"], createdAt: 0))
            try h.store.insertSecret(hasher.record(for: secret, clientID: "no-providers", at: 0))
        }
        let noScope = h.call("GET", "/uc/resources/oauthclient/list", headers: [("Authorization", Harness.basic("no-providers", secret))])
        #expect(noScope.status == 403)
        // Attacker review, session 18: nor is one whose client_credentials grant an operator took away (its tokens ended
        // with it; its secret still opened this surface).
        let (id, madeSecret) = try h.createClient(["client_name": "Provider admin", "grant_types": ["client_credentials"], "scope": "providers:manage"])
        let list = { h.call("GET", "/uc/resources/oauthclient/list", headers: [("Authorization", Harness.basic(id, madeSecret))]).status }
        #expect(list() == 200)
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: try h.token(), body: [
            "grant_types": ["authorization_code"], "redirect_uris": ["https://admin.example/cb"]], contentType: "application/merge-patch+json").status == 200)
        #expect(list() == 403)
    }

    /// SPEC 6.0, 6.5: a sysId is its organization's own. Another organization's record is not found, changed
    /// or deleted by its id, and the same id retained in two organizations is two records (a sysId taken
    /// elsewhere used to be a 409 that told the id exists).
    @Test func sysIdsAreEachOrganizationsOwn() throws {
        let h = try Harness()
        let sysID = "0123456789abcdef0123456789abcdef"
        let record = #"{"name": "Shared name", "provider": "Google", "clientId": "c", "clientSecret": "s", "scopes": ["openid"], "sysId": "\#(sysID)"}"#
        #expect(send(h, "POST", body: record).status == 200)
        let orgB = try Provisioning(env: h.env, store: h.store).createOrganization(name: "B", clientLimit: 10)
        func asB(_ method: String, query: String = "", body: String = "") -> Response {
            var headers = [("Authorization", Harness.basic(orgB.clientID, orgB.clientSecret))]
            if !body.isEmpty { headers.append(("Content-Type", "application/json")) }
            return h.call(method, "/uc/resources/oauthclient", query: query, headers: headers, body: Array(body.utf8))
        }
        let notFound = "An OAuth Client with id \"\(sysID)\" does not exist."
        #expect(asB("GET", query: "oauthclientid=\(sysID)").bodyText == notFound)
        #expect(asB("PUT", body: #"{"sysId": "\#(sysID)", "description": "B was here"}"#).status == 404)
        #expect(asB("DELETE", query: "oauthclientid=\(sysID)").status == 404)
        let created = asB("POST", body: record)
        #expect(created.status == 200 && created.bodyText == "Successfully created the OAuth Client with id \(sysID).")
        #expect(asB("PUT", body: #"{"sysId": "\#(sysID)", "description": "B's own"}"#).status == 200)
        #expect(asB("DELETE", query: "oauthclientid=\(sysID)").status == 200)
        // Organization A's record was never touched.
        let mine = try #require(send(h, "GET", query: "oauthclientid=\(sysID)").json)
        #expect(mine["version"] == 1 && mine["description"] == .null)
        #expect(send(h, "POST", body: record).status == 409)
    }

    @Test func secretsAreSealedWithTheKEK() throws {
        let h = try Harness(kek: Array(repeating: 7, count: 32))
        #expect(send(h, "POST", body: #"{"name": "Sealed", "provider": "Google", "clientId": "c", "clientSecret": "very-secret-value", "scopes": ["openid"]}"#).status == 200)
        let stored = try #require(try h.store.upstreams(organizationID: h.primary.organizationID).first)
        #expect(stored.secretEncrypted)
        #expect(!String(decoding: stored.secret, as: UTF8.self).contains("very-secret-value"))
    }
}
