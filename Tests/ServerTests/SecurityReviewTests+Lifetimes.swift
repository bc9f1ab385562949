import Common
import Cryptography
import Foundation
import Synchronization
import HTTPCore
import Imaging
import OAuth
import Server
import TestSupport
import Testing

/// Items 6 to 13: lifetimes and ids, reserved prefixes, linear parsers, batch reads, image headers.
extension SecurityReviewTests {
    // 6. A token lives no longer than its client; ids are never reused.
    @Test func aDeletedClientsIDIsRetiredAndItsTokensStayDead() throws {
        let h = try Harness()
        let token = try h.token()
        let x = try #require(h.json("POST", "/api/v1/clients", token: token, body: ["client_id": "client-x-1", "client_name": "X", "scope": "clients:write"]).json)
        let xToken = try h.token(clientID: "client-x-1", secret: try #require(x["client_secret"]?.stringValue))
        #expect(h.json("DELETE", "/api/v1/clients/client-x-1", token: token).status == 204)
        let orgB = try Provisioning(env: h.env, store: h.store).createOrganization(name: "B", clientLimit: 10)
        let bToken = try h.token(clientID: orgB.clientID, secret: orgB.clientSecret)
        #expect(h.json("POST", "/api/v1/clients", token: bToken, body: ["client_id": "client-x-1", "client_name": "X again"]).status == 409)
        #expect(h.json("POST", "/api/v1/clients", token: token, body: ["client_id": "client-x-1", "client_name": "X again"]).status == 409)
        #expect(h.json("GET", "/api/v1/clients/current", token: xToken).status == 401)
        #expect(h.json("POST", "/api/v1/clients", token: xToken, body: ["client_name": "y"]).status == 401)
        // The store itself refuses the id, whatever path tries.
        #expect(throws: (any Error).self) {
            try h.store.write { try h.store.insertClient(Client(clientID: "client-x-1", organizationID: orgB.organizationID, name: "z", createdAt: 1)) }
        }
    }

    /// Disabling a client ends its tokens for good (re-enabling brings none
    /// back, refresh tokens included); an operator's reset ends the primary's.
    @Test func disablingOrResettingAClientEndsItsTokensForGood() throws {
        let h = try Harness()
        _ = try h.user()
        let primary = try h.token()
        let created = try #require(h.json("POST", "/api/v1/clients", token: primary, body: [
            "client_name": "c", "scope": "openid offline_access clients:read", "redirect_uris": .array([.string(Harness.redirect)]),
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        ]).json)
        let id = try #require(created["client_id"]?.stringValue), secret = try #require(created["client_secret"]?.stringValue)
        let own = try h.token(clientID: id, secret: secret)
        let pkce = PKCE()
        let code = try flow.code(h, Browser(h), client: id, pkce: pkce, scope: "openid offline_access")
        let tokens = try #require(flow.exchange(h, client: id, secret: secret, code: code, verifier: pkce.verifier).json)
        let refresh = try #require(tokens["refresh_token"]?.stringValue)
        // A code issued before the incident and not redeemed yet (attacker review, session 17: it redeemed after re-enabling).
        let pending = PKCE()
        let unredeemed = try flow.code(h, Browser(h), client: id, pkce: pending, scope: "openid offline_access")
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: primary, body: ["enabled": false]).status == 200)
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: primary, body: ["enabled": true]).status == 200)
        let late = flow.exchange(h, client: id, secret: secret, code: unredeemed, verifier: pending.verifier)
        #expect(late.status == 400 && late.json?["error"] == "invalid_grant", "\(late.bodyText)")
        #expect(h.json("GET", "/api/v1/clients/current", token: own).status == 401)
        #expect(h.form("/oauth2/introspect", [("token", own)], basic: (h.primary.clientID, h.primary.clientSecret)).json == ["active": false])
        #expect(h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh)], basic: (id, secret)).status == 400)
        let again = try h.token(clientID: id, secret: secret)
        #expect(h.json("GET", "/api/v1/clients/current", token: again).status == 200)
        // The operator's reset ends the primary's outstanding tokens too.
        _ = try Provisioning(env: h.env, store: h.store).resetPrimary(organizationID: h.primary.organizationID)
        #expect(h.json("GET", "/api/v1/clients", token: primary).status == 401)
    }

    // 7. Reserved prefixes: a client can never carry a user's subject.
    @Test func clientIDsCannotTakeUserOrOrganizationForms() throws {
        let h = try Harness()
        let token = try h.token()
        let user = try h.user()
        // `anonymous` too: it is the audit log's name for an anonymous registrant (session 9 review).
        for id in [user, "usr-abcdef", "USR-abcdef", "org-abcdef", "Org-12345", "anonymous", "Anonymous"] {
            #expect(h.json("POST", "/api/v1/clients", token: token, body: ["client_id": .string(id), "client_name": "x"]).status == 400, "\(id)")
        }
        #expect(!ClientSpec.isValidClientID(user))
    }

    /// Attacker review, session 24: a confidential client made public keeps no refresh token it was given while it
    /// authenticated (each would work with its client id alone from then on).
    @Test func aClientMadePublicKeepsNoRefreshToken() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        let flow = UserFlowTests(), pkce = PKCE()
        let tokens = flow.exchange(h, client: client, secret: secret, code: try flow.code(h, Browser(h), client: client, pkce: pkce), verifier: pkce.verifier)
        let refresh = try #require(tokens.json?["refresh_token"]?.stringValue)
        let changed = h.json("PATCH", "/api/v1/clients/\(client)", token: try h.token(), body: ["token_endpoint_auth_method": "none"])
        #expect(changed.status == 200, "\(changed.bodyText)")
        let stolen = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)])
        #expect(stolen.status == 400 && stolen.json?["error"] == "invalid_grant", "\(stolen.bodyText)")
    }

    /// Attacker review, session 24: a client registered with a reserved id form before the prefixes were reserved
    /// (migration 7 disabled it) could be enabled again, and its tokens' `sub` would name a user. It stays disabled:
    /// 409 on every surface that enables clients, nothing changed; its other settings may still change.
    @Test func aQuarantinedClientStaysDisabled() throws {
        let h = try Harness()
        let token = try h.token()
        let user = try h.user()
        for id in [user, "ORG-legacy1"] {
            // As migration 7 left it: inserted before the rule, then disabled.
            let legacy = Client(clientID: id, organizationID: h.primary.organizationID, name: "legacy", grantTypes: [.clientCredentials],
                                enabled: false, createdAt: 0)
            try h.store.write { try h.store.insertClient(legacy) }
            let enable = h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["enabled": true])
            #expect(enable.status == 409, "\(id): \(enable.status)")
            #expect(enable.json?["code"]?.stringValue == "reserved_client_id")
            let v3 = h.json("PATCH", "/v3/oauth-clients/\(id)", token: token, body: [["op": "replace", "path": "/enabled", "value": true]],
                            contentType: "application/json-patch+json")
            #expect(v3.status == 409, "\(id): /v3 \(v3.status) \(v3.bodyText)")
            #expect(try h.store.read { try h.store.client(id) }?.enabled == false)
            #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["description": "quarantined"]).status == 200)
        }
    }

    // 8. Parsers are linear: a tag with many attributes costs work in proportion to its size.
    @Test func xmlAttributesAreParsedInLinearWork() throws {
        for count in [1_000, 9_000] {
            var doc = "<oauthClient"
            for i in 0..<count { doc += " a\(i)=\"v\"" }
            doc += "/>"
            let bytes = Array(doc.utf8)
            var work = 0
            let root = try XMLElement.parse(bytes, work: &work)
            #expect(root.attributes.count == count)
            #expect(work <= 4 * bytes.count, "\(count) attributes: \(work) steps for \(bytes.count) bytes")
        }
        var duplicate = "<r"
        for i in 0..<5_000 { duplicate += " a\(i)=\"v\"" }
        duplicate += " a0=\"again\"/>"
        var work = 0
        #expect(throws: XMLParseError.self) { _ = try XMLElement.parse(Array(duplicate.utf8), work: &work) }
        #expect(work <= 4 * duplicate.utf8.count)
    }

    /// What a parsed document may hold is bounded by count, not only by the body's bytes (review, session 20:
    /// parsed, a value takes 12 to 15 times its text, and three 1 MiB bodies took a worker past 64 MiB).
    @Test func documentsWithTooManyNodesAreRefused() throws {
        let elements = "<r>" + String(repeating: "<a/>", count: XMLElement.maxNodes) + "</r>"
        #expect(throws: XMLParseError.self) { try XMLElement.parse(Array(elements.utf8)) }
        #expect(try XMLElement.parse(Array(("<r>" + String(repeating: "<a/>", count: XMLElement.maxNodes - 1) + "</r>").utf8)).children.count
                == XMLElement.maxNodes - 1)
        var attributes = "<r"
        for i in 0..<XMLElement.maxNodes { attributes += " a\(i)=\"\"" }
        #expect(throws: XMLParseError.self) { try XMLElement.parse(Array((attributes + "/>").utf8)) }
        let values = { (n: Int) in "[" + Array(repeating: "0", count: n).joined(separator: ",") + "]" }
        #expect(try JSON.parse(values(99_999)).arrayValue?.count == 99_999)
        #expect(throws: JSONParseError.self) { try JSON.parse(values(100_000)) }
        let h = try Harness()
        let token = try h.token()
        let big = h.call("PATCH", "/v3/oauth-clients/\(h.primary.clientID)", headers: [("Authorization", "Bearer \(token)"),
                                                                                       ("Content-Type", "application/json-patch+json")],
                         body: Array(values(200_000).utf8))
        #expect(big.status == 400)
    }

    @Test func mergePatchesWithManyMembersMergeCorrectly() throws {
        var target: [(String, JSON)] = []
        var patch: [(String, JSON)] = []
        for i in 0..<50_000 {
            target.append(("k\(i)", .int(Int64(i))))
            patch.append(("k\(i)", i % 2 == 0 ? .null : .int(-Int64(i))))
            patch.append(("n\(i)", .int(1)))
        }
        let merged = JSON.object(target).mergePatched(with: .object(patch))
        let members = try #require(merged.objectValue)
        #expect(members.count == 25_000 + 50_000)
        #expect(merged["k1"] == .int(-1))
        #expect(merged["k2"] == nil)
        #expect(merged["n49999"] == .int(1))
    }

    // 11. The public batch read takes at most 20 ids and carries small previews; 25. only consent-capable clients.
    @Test func publicAppReadsAreBoundedAndOnlyForConsentCapableClients() throws {
        let h = try Harness()
        let token = try h.token()
        let app = try #require(h.json("POST", "/api/oauth/app", token: token, body: ["name": "Photos", "redirect_uri": "https://p.example/cb"]).json?["client_id"]?.stringValue)
        let upload = h.call("PUT", "/api/oauth/app/id/\(app)/image", headers: [
            ("Authorization", "Bearer \(token)"), ("Content-Type", "multipart/form-data; boundary=XyZ-boundary-42"),
        ], body: Fixtures.multipart(contentType: "image/png", body: Fixtures.png300x120))
        #expect(upload.status == 204)
        let logo = try #require(h.call("GET", "/api/oauth/app/id/\(app)").json?["logo"]?.stringValue)
        let png = try #require(Base64.decode(String(logo.dropFirst("data:image/png;base64,".count))))
        let header = try #require(Imaging.header(png))
        #expect(max(header.width, header.height) <= 64)
        // Noise, which no encoder shrinks, gets a 32 px preview: at most 32x32x4 bytes and a few headers.
        let noisy = h.call("PUT", "/api/oauth/app/id/\(app)/image", headers: [
            ("Authorization", "Bearer \(token)"), ("Content-Type", "multipart/form-data; boundary=XyZ-boundary-42"),
        ], body: Fixtures.multipart(contentType: "image/png", body: Fixtures.noisePNG(side: 256)))
        #expect(noisy.status == 204, "\(noisy.bodyText)")
        let noisyLogo = try #require(h.call("GET", "/api/oauth/app/id/\(app)").json?["logo"]?.stringValue)
        let noisyPreview = try #require(Base64.decode(String(noisyLogo.dropFirst("data:image/png;base64,".count))))
        #expect(noisyPreview.count <= 6_144, "\(noisyPreview.count) bytes")
        #expect(try #require(Imaging.header(noisyPreview)).width == 32)
        #expect(h.call("GET", "/api/oauth/app/id/\(app)/image").body.count > 100_000, "the logo itself is kept at 256 px")
        // A larger preview stored before that bound is left out.
        let oldPreview = try Imaging.reencodePNG(Fixtures.noisePNG(side: 64), format: .png, maxSide: 64)
        #expect(oldPreview.count > 6_144)
        try h.store.write { try h.store.setLogo(clientID: app, contentType: "image/png", image: Fixtures.noisePNG(side: 64), preview: oldPreview, etag: "old", at: h.clock.now) }
        #expect(h.call("GET", "/api/oauth/app/id/\(app)").json?["logo"] == "")
        let ids = (0..<21).map { "id\($0)x" }.joined(separator: ",")
        #expect(h.call("GET", "/api/oauth/app/ids", query: "ids=\(ids)").status == 400)
        #expect(h.call("GET", "/api/oauth/app/ids", query: "ids=\(app),\(h.primary.clientID)").json?["apps"]?.arrayValue?.count == 1)
        let machine = try #require(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "machine"]).json?["client_id"]?.stringValue)
        for id in [h.primary.clientID, machine] {
            #expect(h.call("GET", "/api/oauth/app/id/\(id)").status == 404)
            #expect(h.call("GET", "/api/oauth/app/id/\(id)/image").status == 404)
        }
    }

    // 13. Dimensions are judged from the header, before any decoding.
    @Test func imagesOverFourMegapixelsAreRefusedFromTheirHeader() throws {
        func png(_ w: UInt32, _ h: UInt32) -> [UInt8] {
            var b = Fixtures.png300x120
            let be: (UInt32) -> [UInt8] = { [UInt8($0 >> 24), UInt8($0 >> 16 & 0xFF), UInt8($0 >> 8 & 0xFF), UInt8($0 & 0xFF)] }
            b.replaceSubrange(16..<24, with: be(w) + be(h))
            return b
        }
        #expect(!Imaging.acceptable(try #require(Imaging.header(png(4096, 4096)))))
        #expect(!Imaging.acceptable(try #require(Imaging.header(png(4097, 1)))))
        #expect(Imaging.acceptable(try #require(Imaging.header(png(2048, 2048)))))
        #expect(throws: ImagingError.self) { _ = try Imaging.reencodePNG(png(4096, 4096), format: .png, maxSide: 256) }
        let h = try Harness()
        let token = try h.token()
        let id = try #require(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "x"]).json?["client_id"]?.stringValue)
        let r = h.call("PUT", "/api/v1/clients/\(id)/logo", headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "image/png")], body: png(4096, 4096))
        #expect(r.status == 400)
        // A JPEG with more than 64 scans (a decoding CPU bomb) is refused from its markers.
        var jpeg = Fixtures.jpeg64x48
        let eoi = jpeg.count - 2
        jpeg.insert(contentsOf: Array(repeating: [0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x00], count: 80).flatMap { $0 }, at: eoi)
        let jpegHeader = try #require(Imaging.header(jpeg))
        #expect(jpegHeader.scans > 64)
        #expect(!Imaging.acceptable(jpegHeader))
        #expect(Imaging.header(Fixtures.jpeg64x48)?.scans == 1)
        // A GIF whose first frame is larger than its logical screen is judged by the frame.
        var gif = Fixtures.gif20x10
        let frame = try #require(gif.firstIndex(of: 0x2C))
        gif.replaceSubrange(frame + 5..<frame + 9, with: [0x00, 0x10, 0x00, 0x10])
        #expect(Imaging.header(gif)?.width == 4096)
        #expect(!Imaging.acceptable(try #require(Imaging.header(gif))))
    }

    /// The child process's answer is framed; anything short, long or
    /// miscounted is refused (a killed or confused decoder is a 400).
    @Test func reencodedImagesRoundTripThroughTheChildFrame() throws {
        let images: [[UInt8]] = [Array(repeating: 1, count: 300), [], [9, 8, 7]]
        let framed = ImageReencoder.frame(images)
        #expect(ImageReencoder.unframe(framed, count: 3) == images)
        #expect(ImageReencoder.unframe(framed, count: 2) == nil)
        #expect(ImageReencoder.unframe(Array(framed.dropLast()), count: 3) == nil)
        #expect(ImageReencoder.unframe(framed + [0], count: 3) == nil)
        #expect(ImageReencoder.unframe([0xFF, 0xFF, 0xFF, 0xFF], count: 1) == nil)
        // A reencoder that fails is a 400 at the endpoint, never a 500.
        let failing = ImageReencoder { _, _, _ in throw ImagingError(description: "killed") }
        let h = try Harness(images: failing)
        let token = try h.token()
        let id = try #require(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "x"]).json?["client_id"]?.stringValue)
        let r = h.call("PUT", "/api/v1/clients/\(id)/logo", headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "image/png")], body: Fixtures.png300x120)
        #expect(r.status == 400)
        #expect(try h.store.logo(clientID: id) == nil)
    }
}
