import Common
import Cryptography
import OAuth
import TestSupport
import Testing

/// The authorization checks every code-issuing surface shares (issue 12),
/// over plain values.
@Suite struct AuthorizationCheckTests {
    static let confidential = Client(clientID: "conf", organizationID: "org", name: "Conf", redirectURIs: ["https://c.example/cb"],
                                     grantTypes: [.authorizationCode], authMethod: .clientSecretBasic,
                                     scope: ["openid", "profile", "clients:write"], createdAt: 0)
    static let publicApp = Client(clientID: "pub", organizationID: "org", name: "Pub", redirectURIs: ["https://p.example/cb"],
                                  grantTypes: [.authorizationCode], authMethod: .publicClient, scope: ["openid"], createdAt: 0)
    static let good = String(repeating: "a", count: 43)

    /// RFC 7636 Appendix B: the verifier and its S256 challenge.
    @Test func rfc7636AppendixBVector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        #expect(Base64.urlEncode(Digest.sha256(verifier)) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        #expect(AuthorizationService.isValidCodeChallenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"))
    }

    @Test(arguments: [
        (nil, nil, false, nil, nil),                                          // confidential without PKCE
        (good, "S256", false, good, nil),
        (good, "S256", true, good, nil),
        (nil, nil, true, nil, AuthorizationCheck.pkceRequired),
        (good, "plain", false, nil, .challengeMethodUnsupported),
        (nil, "plain", true, nil, .challengeMethodUnsupported),               // the method is judged first
        (nil, "S256", false, nil, .challengeMissing),
        (good, nil, false, nil, .challengeMethodMissing),
        ("short", "S256", false, nil, .challengeMalformed),
        (String(repeating: "a", count: 129), "S256", true, nil, .challengeMalformed),
        (String(repeating: "a", count: 42) + "!", "S256", true, nil, .challengeMalformed),
    ] as [(String?, String?, Bool, String?, AuthorizationCheck?)])
    func pkce(challenge: String?, method: String?, isPublic: Bool, accepted: String?, refused: AuthorizationCheck?) {
        let client = isPublic ? Self.publicApp : Self.confidential
        do {
            let result = try AuthorizationChecks.pkce(challenge: challenge, method: method, client: client)
            #expect(refused == nil && result == accepted)
        } catch {
            #expect(error == refused)
        }
    }

    /// SPEC 10.2: a client held to FAPI 2.0 uses PKCE (S256) though it is confidential, pushes its requests and binds its tokens.
    @Test func aFAPI2ClientMustUsePKCEPushAndBind() throws {
        var fapi = Self.confidential
        fapi.fapi2 = true
        #expect(throws: AuthorizationCheck.pkceRequired) { try AuthorizationChecks.pkce(challenge: nil, method: nil, client: fapi) }
        #expect(try AuthorizationChecks.pkce(challenge: Self.good, method: "S256", client: fapi) == Self.good)
        #expect(fapi.mustPushRequests && fapi.mustBindTokens && !Self.confidential.mustPushRequests)
        let spec = ClientSpec(name: "x", redirectURIs: ["https://c.example/cb"], fapi2: true)
        #expect(spec.problems().contains { $0.field == "fapi2_security_profile" }, "a secret is not enough")
    }

    @Test func nonce() throws {
        #expect(try AuthorizationChecks.nonce(nil) == nil)
        #expect(try AuthorizationChecks.nonce("n-1") == "n-1")
        #expect(throws: AuthorizationCheck.nonceTooLong) { try AuthorizationChecks.nonce(String(repeating: "n", count: 256)) }
        #expect(try AuthorizationChecks.nonce(String(repeating: "n", count: 255)) != nil)
        #expect(try AuthorizationChecks.nonce("tab\there") == "tab\there", "printable only where the surface asks")
        #expect(throws: AuthorizationCheck.nonceNotPrintable) { try AuthorizationChecks.nonce("tab\there", printable: true) }
        #expect(throws: AuthorizationCheck.nonceNotPrintable, "a NUL on every surface") { try AuthorizationChecks.nonce("a\u{0}b") }
    }

    @Test func privilegedScopesAreNeverRequestedOfAUser() {
        #expect(AuthorizationChecks.isRequestable("openid", by: Self.confidential))
        #expect(!AuthorizationChecks.isRequestable("clients:write", by: Self.confidential), "registered, but a management scope")
        #expect(!AuthorizationChecks.isRequestable("email", by: Self.confidential), "not registered")
    }

    // MARK: The ordered list

    static func judge(_ p: AuthorizationParameters, _ surface: AuthorizationSurface) -> Result<AuthorizationRequest, AuthorizationFailure> {
        let clients = [confidential.clientID: confidential, publicApp.clientID: publicApp]
        do {
            return .success(try AuthorizationChecks.run(p, surface: surface) { clients[$0] }.1)
        } catch {
            return .failure(error as! AuthorizationFailure)
        }
    }

    /// A request wrong in every way is refused for one thing at a time, in
    /// the documented order; mending each in turn walks the whole list.
    @Test func authorizationEndpointJudgesInOrder() throws {
        typealias Mend = (inout AuthorizationParameters) -> Void
        let walk: [(AuthorizationCheck, Bool, Mend)] = [
            (.clientMissing, false, { $0.clientID = "nobody" }),
            (.clientUnknown, false, { $0.clientID = "conf" }),
            (.redirectURIMissing, false, { $0.redirectURI = "https://evil.example/cb" }),
            (.redirectURINotRegistered, false, { $0.redirectURI = "https://c.example/cb" }),
            (.parameterRepeated, false, { $0.repeated = false }),
            (.responseModeUnsupported, true, { $0.responseMode = "form_post" }),
            (.responseTypeMissing, true, { $0.responseType = "token" }),
            (.responseTypeUnsupported, true, { $0.responseType = "code" }),
            (.requestObjectUnsupported, true, { $0.requestObject = nil }),
            (.requestURIUnsupported, true, { $0.requestURI = nil }),
            (.scopeMalformed, true, { $0.scope = "openid clients:write" }),
            (.scopeNotAllowed, true, { $0.scope = "openid" }),
            (.claimsMalformed, true, { $0.claims = #"{"id_token": {"acr": {"essential": true, "values": ["2", "3"]}}}"# }),
            (.acrUnmet, true, { $0.claims = #"{"id_token": {"acr": {"essential": true, "values": ["1"]}}, "userinfo": {"given_name": null, "email": null}}"# }),
            (.challengeMethodUnsupported, true, { $0.codeChallengeMethod = "S256" }),
            (.challengeMalformed, true, { $0.codeChallenge = Self.good }),
            (.nonceTooLong, true, { $0.nonce = "n-1" }),
            (.promptInvalid, true, { $0.prompt = "login consent" }),
            (.maxAgeInvalid, true, { $0.maxAge = "0" }),
            (.stateTooLong, true, { $0.state = "s\u{1}" }),
            (.stateNotPrintable, true, { $0.state = "s" }),
            (.dpopKeyMalformed, true, { $0.dpopJKT = String(repeating: "k", count: 43) }),
        ]
        var p = AuthorizationParameters(scope: "openid  profile", nonce: String(repeating: "n", count: 256), codeChallenge: "short",
                                        codeChallengeMethod: "plain")
        p.repeated = true
        p.responseMode = "fragment"
        p.requestObject = "eyJ"
        p.requestURI = "urn:x"
        p.prompt = "none login"
        p.maxAge = "-1"
        p.state = String(repeating: "s", count: 2049)
        p.claims = #"{"id_token": ["acr"]}"#
        p.dpopJKT = "short"
        for (expected, redirected, mend) in walk {
            guard case .failure(let failure) = Self.judge(p, .authorizationEndpoint) else {
                Issue.record("accepted before \(expected)")
                return
            }
            #expect(failure.check == expected)
            #expect((failure.destination != nil) == redirected, "\(expected)")
            if let to = failure.destination {
                #expect(to.redirectURI == "https://c.example/cb")
                #expect(to.mode == (expected == .responseModeUnsupported ? .query : .formPost), "an unknown mode answers in the default one")
                #expect(to.state == ([.stateTooLong, .stateNotPrintable].contains(expected) ? nil : p.state), "a state too long or unprintable is not echoed")
            }
            mend(&p)
        }
        let request = try Self.judge(p, .authorizationEndpoint).get()
        var expected = AuthorizationRequest(clientID: "conf", redirectURI: "https://c.example/cb", redirectURISent: true, scope: ["openid", "profile"],
                                            state: "s", nonce: "n-1", codeChallenge: Self.good, prompt: ["login", "consent"], maxAge: 0,
                                            responseMode: .formPost,
                                            claims: ClaimsRequest(idToken: ["acr"], userinfo: ["given_name", "email"], essentialACR: ["1"]))
        expected.dpopJKT = String(repeating: "k", count: 43)
        #expect(request == expected, "profile joins the scope for given_name; email, which the client may not ask for, does not")
        #expect(AuthorizationChecks.order.map(\.name) == ["client", "redirectURI", "singleValued", "responseMode", "responseType", "requestObject",
                                                             "scope", "claims", "pkce", "nonce", "prompt", "maxAge", "state", "dpopKey"])
    }

    /// max_age is plain digits (attacker review, session 10: "+5" was taken as 5).
    @Test(arguments: ["+5", " 5", "5 ", "0x10", "-0", "1e3", "99999999999", ""])
    func maxAgeIsPlainDigits(_ raw: String) throws {
        var p = AuthorizationParameters(pairs: [("client_id", "conf"), ("redirect_uri", "https://c.example/cb"), ("response_type", "code"),
                                                ("scope", "openid"), ("code_challenge", Self.good), ("code_challenge_method", "S256"),
                                                ("max_age", "300")])
        #expect(try Self.judge(p, .authorizationEndpoint).get().maxAge == 300)
        p.maxAge = raw
        guard case .failure(let failure) = Self.judge(p, .authorizationEndpoint) else { Issue.record("max_age \(raw) accepted"); return }
        #expect(failure.check == .maxAgeInvalid)
    }

    /// The app API runs the same list with its own rules: the one registered
    /// URI, code implied, unrequestable scopes dropped, openid required.
    @Test func appAPIRunsTheSameList() throws {
        var p = AuthorizationParameters(nonce: "tab\there")
        let walk: [(AuthorizationCheck, (inout AuthorizationParameters) -> Void)] = [
            (.clientMissing, { $0.clientID = "nobody" }),
            (.clientUnknown, { $0.clientID = "pub" }),
            (.scopeMalformed, { $0.scope = String(repeating: "x", count: 256) }),
            (.scopeMalformed, { $0.scope = "clients:write email" }),
            (.openIDRequired, { $0.scope = "openid  openid clients:write" }),
            (.pkceRequired, { ($0.codeChallenge, $0.codeChallengeMethod) = (Self.good, "S256") }),
            (.nonceNotPrintable, { $0.nonce = nil }),
        ]
        for (expected, mend) in walk {
            guard case .failure(let failure) = Self.judge(p, .appAPI) else {
                Issue.record("accepted before \(expected)")
                return
            }
            #expect(failure.check == expected)
            mend(&p)
        }
        let request = try Self.judge(p, .appAPI).get()
        #expect(request.redirectURI == "https://p.example/cb" && !request.redirectURISent)
        #expect(request.scope == ["openid"], "duplicates and unrequestable scopes dropped")
    }

    @Test func aClientWithoutTheCodeGrantIsUnauthorized() {
        var noCode = Self.confidential
        noCode.grantTypes = [.clientCredentials]
        var p = AuthorizationParameters(clientID: "conf", scope: "openid")
        p.redirectURI = "https://c.example/cb"
        p.responseType = "code"
        let result = Result { try AuthorizationChecks.run(p, surface: .authorizationEndpoint) { _ in noCode } }
        guard case .failure(let error) = result, let failure = error as? AuthorizationFailure else {
            Issue.record("accepted")
            return
        }
        #expect(failure.check == .grantNotAllowed && failure.check.errorCode == "unauthorized_client")
    }
}

/// OIDC Core §5.5's `claims` parameter.
@Suite struct ClaimsRequestTests {
    @Test(arguments: [
        #"{}"#, #"{"userinfo": null}"#, #"{"id_token": {"auth_time": {"essential": true}}, "other": 1}"#,
        #"{"userinfo": {"email": {"essential": true}, "name": null, "locale": {"value": "fr"}, "address": {"values": ["x"]}}}"#,
    ])
    func wellFormed(_ text: String) {
        #expect(ClaimsRequest(parameter: text) != nil, "\(text)")
    }

    @Test(arguments: [
        "", "[]", "null", "not json", #"{"id_token": []}"#, #"{"userinfo": {"email": true}}"#, #"{"userinfo": {"email": {"essential": "yes"}}}"#,
        #"{"userinfo": {"email": {"values": "x"}}}"#, #"{"userinfo": {"": null}}"#, #"{"userinfo": {"a b": null}}"#,
    ])
    func malformed(_ text: String) {
        #expect(ClaimsRequest(parameter: text) == nil, "\(text)")
    }

    @Test func boundsAndMeaning() throws {
        let many = (0..<33).map { "\"c\($0)\": null" }.joined(separator: ", ")
        #expect(ClaimsRequest(parameter: "{\"userinfo\": {\(many)}}") == nil, "at most 32 claims")
        #expect(ClaimsRequest(parameter: "{\"userinfo\": {\"n\": \"" + String(repeating: "x", count: 4100) + "\"}}") == nil)
        let r = try #require(ClaimsRequest(parameter: #"{"id_token": {"acr": {"essential": true, "value": "1"}, "phone_number": null}, "userinfo": {"address": null, "picture": null}}"#))
        #expect(r.scopes == ["phone", "address"], "claims Latchkey does not hold bring no scope")
        #expect(r.wantsACR && r.acrSatisfiable)
        #expect(ClaimsRequest(json: r.json) == r, "stored and read back")
        let named = try #require(ClaimsRequest(parameter: #"{"id_token": {"sub": {"value": "usr-abc", "essential": true}}}"#))
        #expect(named.subject == "usr-abc" && ClaimsRequest(json: named.json) == named)
        #expect(ClaimsRequest(parameter: #"{"id_token": {"sub": {"value": 7}}}"#) == nil, "a subject is a string")
        #expect(try #require(ClaimsRequest(parameter: #"{"userinfo": {"sub": {"value": "usr-abc"}}}"#)).subject == nil)
        #expect(!(try #require(ClaimsRequest(parameter: #"{"id_token": {"acr": {"essential": true, "values": ["urn:mace:incommon:iap:silver"]}}}"#)).acrSatisfiable))
        #expect(try #require(ClaimsRequest(parameter: #"{"id_token": {"acr": {"values": ["2"]}}}"#)).acrSatisfiable, "a voluntary acr is answered with what there is")
    }
}
