import Common
import Cryptography
import JOSE
import OAuth
import SQLiteStore
import TestSupport
import Testing

/// private_key_jwt (RFC 7523 §2.2, §3; SPEC 10.2) over plain values, on the store the run is on.
@Suite struct ClientAssertionTests {
    static let tokenEndpoint = StoreFixture.issuer + "/oauth2/token"

    let h: StoreFixture
    let key: SigningKey
    let clientID: String

    init() throws {
        h = try StoreFixture()
        key = try SigningKey.generate(.es256)
        let jwk = try JWK.publicJWK(key, kid: "k1")
        let spec = ClientSpec(name: "Signed", grantTypes: ["client_credentials"], authMethod: "private_key_jwt", scope: ["clients:read"],
                              jwks: ["keys": [jwk]])
        let issued = try h.registry().create(spec, caller: try h.caller(scopes: ["clients:read", "clients:write"]))
        #expect(issued.secret == nil, "no secret for a client that signs")
        clientID = issued.client.clientID
    }

    var authenticator: ClientAuthenticator {
        get throws {
            ClientAuthenticator(env: h.env, store: h.store, hasher: try Provisioning.secretHasher(store: h.store, env: h.env), guards: nil,
                                endpoint: Self.tokenEndpoint)
        }
    }

    func assertion(_ overrides: [String: JSON?] = [:], signer: SigningKey? = nil, kid: String? = "k1") throws -> String {
        let now = h.clock.now / 1000
        var claims: [(String, JSON)] = [("iss", .string(clientID)), ("sub", .string(clientID)), ("aud", .string(Self.tokenEndpoint)),
                                        ("exp", .int(now + 60)), ("iat", .int(now)), ("jti", .string(h.env.randomToken(bytes: 12)))]
        for (name, value) in overrides {
            claims.removeAll { $0.0 == name }
            if let value { claims.append((name, value)) }
        }
        return try JWS.sign(payload: .object(claims), key: signer ?? key, kid: kid, typ: "JWT")
    }

    func authenticate(_ jwt: String, clientID: String? = nil) throws -> Client {
        try authenticator.authenticate(.assertion(clientID: clientID, assertion: jwt), allowPublic: false)
    }

    func refused(_ jwt: String, clientID: String? = nil) -> Bool {
        do { _ = try authenticate(jwt, clientID: clientID); return false } catch let e as OAuthError { return e.code == "invalid_client" && e.status == 401 } catch { return false }
    }

    @Test func aGoodAssertionAuthenticatesOnceAndOnlyOnce() throws {
        let jwt = try assertion()
        #expect(try authenticate(jwt, clientID: clientID).clientID == clientID)
        #expect(refused(jwt), "RFC 7523 §3: the jti is single use")
        let now = h.clock.now / 1000
        #expect(try authenticate(try assertion(["jti": "reused", "exp": .int(now + 60)])).clientID == clientID)
        #expect(refused(try assertion(["jti": "reused", "exp": .int(now + 61)])), "the jti, not the JWT: re-signed with another exp, refused")
        #expect(try authenticate(try assertion(["aud": .string(StoreFixture.issuer)])).clientID == clientID, "the issuer as audience")
        #expect(try authenticate(try assertion(["aud": [.string("https://other.example"), .string(Self.tokenEndpoint)]])).clientID == clientID)
        #expect(try authenticate(try assertion(kid: nil)).clientID == clientID, "without kid every registered key is tried")
    }

    /// A client_credentials token for a signed assertion and no DPoP proof
    /// writes once, the assertion's jti: no write transaction of its own for
    /// a proof it does not have (each one takes SQLite's writer lock).
    @Test(.enabled(if: TestStore.isSQLite, "SQLite's writer lock")) func aTokenWithoutAProofWritesOnlyTheAssertion() throws {
        let exchange = TokenExchange(service: TokenService(env: h.env, store: h.store, keys: KeyRing(store: h.store, env: h.env)), authenticator: try authenticator)
        func token() throws -> TokenResponse {
            try exchange.exchange(TokenRequest(grantType: "client_credentials", parameters: [:]),
                                  credentials: .assertion(clientID: clientID, assertion: try assertion()))
        }
        _ = try token()  // the first also notes the client's use (once a day)
        let before = h.sqlite.writesBegun
        #expect(try token().accessToken.isEmpty == false)
        #expect(h.sqlite.writesBegun - before == 1)
    }

    /// RFC 7518 does not ask for low-S ECDSA: a client library signs either
    /// way (Latchkey's own tokens are low-S and checked strictly).
    /// An assertion's record is kept past its `exp`, to the server's millisecond: assertions whose client pins one
    /// `exp` do not all share one expiry, which one purge would take whole (review, session 31).
    @Test func anAssertionsRecordExpiresAtTheServersMillisecond() throws {
        let exp = h.clock.now / 1000 + 60
        for jti in ["first", "second"] {
            _ = try authenticate(try assertion(["jti": .string(jti), "exp": .int(exp)]))
            h.clock.advance(millis: 1)
        }
        let expiries = try h.rows("client_assertions").compactMap { row -> Int64? in if case let .int(v)? = row["expires_at"] { v } else { nil } }
        #expect(expiries.count == 2 && Set(expiries).count == 2, "\(expiries)")
        #expect(expiries.allSatisfy { $0 >= (exp + 2 * ClientAssertion.skewSeconds) * 1000 && $0 < (exp + 2 * ClientAssertion.skewSeconds + 1) * 1000 })
    }

    @Test func aHighSSignatureFromTheClientVerifies() throws {
        let jwt = try assertion()
        let parts = jwt.split(separator: ".").map(String.init)
        let signature = try #require(Base64.urlDecode(parts[2]))
        // s' = n - s, the other valid signature of the same message.
        let n: [UInt8] = Hex.decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")!
        var high = [UInt8](repeating: 0, count: 32), borrow = 0
        for i in stride(from: 31, through: 0, by: -1) {
            let d = Int(n[i]) - Int(signature[32 + i]) - borrow
            high[i] = UInt8((d + 256) % 256)
            borrow = d < 0 ? 1 : 0
        }
        let flipped = parts[0] + "." + parts[1] + "." + Base64.urlEncode(Array(signature.prefix(32)) + high)
        #expect(try authenticate(flipped).clientID == clientID)
        #expect(refused(jwt), "the same assertion (its jti) in the other form is a replay")
    }

    /// RFC 9126 §2's audiences: the issuer, the token endpoint, the PAR
    /// endpoint; no other URL, so an assertion made for another server's
    /// "token endpoint" that points here elsewhere does not pass.
    @Test func theAudienceIsTheIssuerTheTokenOrThePAREndpoint() throws {
        for aud in [StoreFixture.issuer, StoreFixture.issuer + "/oauth2/token", StoreFixture.issuer + "/oauth2/par"] {
            #expect(try authenticate(try assertion(["aud": .string(aud)])).clientID == clientID, "\(aud)")
        }
        for aud in [StoreFixture.issuer + "/oauth2/introspect", StoreFixture.issuer + "/api/v1/clients", StoreFixture.issuer + "/"] {
            #expect(refused(try assertion(["aud": .string(aud)])), "\(aud)")
        }
        // A FAPI 2.0 client's assertions name the issuer, nothing else.
        try h.store.write {
            var c = try #require(try h.store.client(clientID))
            c.fapi2 = true
            try h.store.updateClient(c)
        }
        #expect(refused(try assertion(["aud": .string(Self.tokenEndpoint)])))
        // FAPI 2.0 §5.3.2.1 (attacker review, session 13): the issuer as a string, not an array that also names another
        // server (an assertion a client made for several audiences is not one made for this server alone).
        #expect(refused(try assertion(["aud": [.string(StoreFixture.issuer), "https://evil.example/token"]])))
        #expect(refused(try assertion(["aud": [.string(StoreFixture.issuer)]])))
        #expect(try authenticate(try assertion(["aud": .string(StoreFixture.issuer)])).clientID == clientID)
    }

    /// Verification work is bounded: RSA 2048 to 4096 bits with a small odd
    /// exponent, one key tried per assertion.
    @Test func keysThatWouldCostOrForgeAreRefused() throws {
        let registry = try h.registry()
        let caller = try h.caller(scopes: ["clients:read", "clients:write"])
        let rsa = try JWK.publicJWK(try SigningKey.generate(.rs256), kid: "r")
        let huge = Base64.urlEncode([UInt8](repeating: 0xFF, count: 383) + [0x01])
        func spec(_ keys: [JSON]) -> ClientSpec {
            ClientSpec(name: "x", grantTypes: ["client_credentials"], authMethod: "private_key_jwt", jwks: ["keys": .array(keys)])
        }
        for (name, keys) in [("e = 1", [rsa.setting("e", "AQ")]), ("a 3070-bit exponent", [rsa.setting("e", .string(huge))]),
                             ("an even exponent", [rsa.setting("e", "AQAA")]),
                             ("two keys without kids", [try JWK.publicJWK(key, kid: "a").setting("kid", nil), rsa.setting("kid", nil)]),
                             ("the same kid twice", [try JWK.publicJWK(key, kid: "same"), rsa.setting("kid", "same")])] as [(String, [JSON])] {
            #expect(throws: RegistryError.self, "\(name)") { try registry.create(spec(keys), caller: caller) }
        }
        // With two keys, an assertion without kid is not tried against each.
        let two = try registry.create(spec([try JWK.publicJWK(key, kid: "k1"), rsa]), caller: caller).client
        let now = h.clock.now / 1000
        let unnamed = try JWS.sign(payload: ["iss": .string(two.clientID), "sub": .string(two.clientID), "aud": .string(Self.tokenEndpoint),
                                            "exp": .int(now + 60), "jti": "j"], key: key, kid: nil, typ: "JWT")
        #expect(throws: OAuthError.self) { try authenticator.authenticate(.assertion(clientID: nil, assertion: unnamed), allowPublic: false) }
    }

    /// An operator's reset of a primary that signs with keys goes back to a
    /// secret and drops the keys: a leaked key is locked out.
    @Test func aPrimaryResetDropsTheKeys() throws {
        try h.store.write {
            var primary = try #require(try h.store.client(h.primary.clientID))
            primary.authMethod = .privateKeyJWT
            primary.jwks = ["keys": [try JWK.publicJWK(key, kid: "k1")]]
            try h.store.updateClient(primary)
        }
        _ = try Provisioning(env: h.env, store: h.store).resetPrimary(organizationID: h.primary.organizationID)
        let reset = try #require(try h.store.read { try h.store.client(h.primary.clientID) })
        #expect(reset.authMethod == .clientSecretBasic && reset.jwks == nil)
    }

    @Test func everyBrokenClaimIsRefused() throws {
        let now = h.clock.now / 1000
        for (name, overrides) in [
            ("another audience", ["aud": .string("https://other.example/oauth2/token")]),
            ("no audience", ["aud": nil]),
            ("expired", ["exp": .int(now - 1)]),
            ("exp more than five minutes ahead", ["exp": .int(now + 400)]),
            ("no exp", ["exp": nil]),
            ("no jti", ["jti": nil]),
            ("a NUL in jti", ["jti": "a\u{0}b"]),  // a 500 on PostgreSQL before (text holds no NUL)
            ("a control character in jti", ["jti": "a\u{7f}b"]),
            ("iss not the client", ["iss": "someone"]),
            ("sub not the client", ["sub": "someone"]),
            ("not yet valid", ["nbf": .int(now + 120)]),
            // A claim that is there but no NumericDate is malformed, not absent.
            ("nbf a string", ["nbf": .string("0")]),
            ("iat a string", ["iat": .string("0")]),
            ("not yet valid by a fraction", ["nbf": .double(Double(now) + 120.5)]),
            ("exp a string", ["exp": .string(String(now + 60))]),
        ] as [(String, [String: JSON?])] {
            #expect(refused(try assertion(overrides)), "\(name)")
        }
        // RFC 7519 §2: a NumericDate may have a fraction (attacker review, session 19: such exp was refused).
        let fractional = try assertion(["exp": .double(Double(now) + 60.25), "iat": .double(Double(now) - 0.5)])
        #expect(try authenticate(fractional, clientID: clientID).clientID == clientID)
        #expect(refused(try assertion(), clientID: "another-client"), "client_id must be the assertion's client")
    }

    @Test func onlyTheRegisteredKeysWithTheirOwnAlgorithmVerify() throws {
        #expect(refused(try assertion(signer: try SigningKey.generate(.es256))), "another key")
        #expect(refused(try assertion(signer: try SigningKey.generate(.es256), kid: nil)))
        // alg none and HS256 with anything as the secret: never.
        let header = Base64.urlEncode(Array(#"{"alg":"none","kid":"k1"}"#.utf8))
        let parts = try assertion().split(separator: ".")
        #expect(refused("\(header).\(parts[1])."))
        let hs = Base64.urlEncode(Array(#"{"alg":"HS256","kid":"k1"}"#.utf8))
        #expect(refused("\(hs).\(parts[1]).\(parts[2])"))
        #expect(refused("garbage"))
    }

    @Test func theMethodIsTheClientsOwn() throws {
        // A client registered for secrets cannot switch to assertions, nor the reverse.
        let primaryAssertion = try JWS.sign(payload: ["iss": .string(h.primary.clientID), "sub": .string(h.primary.clientID),
                                                      "aud": .string(Self.tokenEndpoint), "exp": .int(h.clock.now / 1000 + 60), "jti": "x"],
                                            key: key, kid: "k1", typ: "JWT")
        #expect(refused(primaryAssertion))
        #expect(throws: OAuthError.self) { try authenticator.authenticate(.post(clientID: clientID, secret: "anything"), allowPublic: false) }
    }

    @Test func registrationTakesPublicSignatureKeysOnly() throws {
        let registry = try h.registry()
        let caller = try h.caller(scopes: ["clients:read", "clients:write"])
        let rsa = try SigningKey.generate(.rs256)
        var withPrivate = try JWK.publicJWK(key, kid: "p")
        let rsaJWK = try JWK.publicJWK(rsa, kid: "r")
        let n = Base64.urlDecode(rsaJWK["n"]!.stringValue!)!
        let short = rsaJWK.setting("n", .string(Base64.urlEncode(Array(n.prefix(128)))))
        withPrivate.set("d", "AAAA")
        for (name, jwks) in [("none at all", nil), ("a private member", ["keys": [withPrivate]]), ("no keys", ["keys": []]),
                             ("not a set", .string("x")), ("an encryption key", ["keys": [try JWK.publicJWK(key, kid: "e").setting("use", "enc")]]),
                             ("a short RSA key", ["keys": [short]]),
                             // Attacker review, session 19: an alg other than the key's own was taken and ignored.
                             ("an EC key saying HS256", ["keys": [try JWK.publicJWK(key, kid: "h").setting("alg", "HS256")]]),
                             ("an RSA key saying ES256", ["keys": [rsaJWK.setting("alg", "ES256")]]),
                             ("an alg that is no string", ["keys": [rsaJWK.setting("alg", .int(1))]])] as [(String, JSON?)] {
            let spec = ClientSpec(name: "x", grantTypes: ["client_credentials"], authMethod: "private_key_jwt", jwks: jwks)
            #expect(throws: RegistryError.self, "\(name)") { try registry.create(spec, caller: caller) }
        }
        let ok = ClientSpec(name: "x", grantTypes: ["client_credentials"], authMethod: "private_key_jwt", jwks: ["keys": [rsaJWK]])
        #expect(try registry.create(ok, caller: caller).client.jwks != nil)
    }
}

extension JSON {
    fileprivate func setting(_ key: String, _ value: JSON?) -> JSON {
        var copy = self
        if let value { copy.set(key, value) } else { copy = .object((copy.objectValue ?? []).filter { $0.0 != key }) }
        return copy
    }
}
