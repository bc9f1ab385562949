import Common
import Cryptography

/// Dynamic client registration (RFC 7591, OIDC Registration 1.0) and the
/// client configuration endpoint (RFC 7592), over the registry: every rule
/// of SPEC 6.0 applies (privileged scopes by the caller's token, the
/// organization's client limit, the redirect-URI rules).
///
/// Who registers: the holder of an initial access token (a client_credentials
/// token carrying `clients:write`) into that token's organization, or anyone
/// into the organization an operator opened (`latchkey org set ORG_ID
/// --open-registration on`), with no privileged scope. The registered
/// client then reads, replaces and deletes itself with its registration
/// access token (`lkg_…`, stored hashed, compared in constant time).
public struct ClientRegistration {
    /// The meta value naming the organization that takes anonymous registrations.
    public static let openOrganizationMeta = "open_registration_org"
    /// Metadata Latchkey knows; anything else is ignored (RFC 7591 §2).
    public static let known = ["redirect_uris", "grant_types", "response_types", "token_endpoint_auth_method", "client_name", "client_uri",
                               "scope", "id_token_signed_response_alg"] + ClientMetadata.names
    /// What the code flow grants a client that names no scope.
    public static let defaultScope = ["openid", "profile", "email", "offline_access"]

    let registry: ClientRegistry

    public init(registry: ClientRegistry) { self.registry = registry }

    var store: Store { registry.store }
    var env: Environment { registry.env }

    /// Why a registration request was refused, in RFC 7591 §3.2.2's terms.
    public enum Refusal: Error, Equatable {
        case invalidRedirectURI(String)
        case invalidMetadata(String)
        /// No initial access token and no open organization; or a token without `clients:write`.
        case notAllowed
        /// RFC 7592 §2: an unknown client or a wrong registration access token (the two alike).
        case invalidToken
        /// The open organization took as many anonymous registrations as its window allows: try again after `seconds`.
        case allowanceSpent(seconds: Int64)
    }

    /// How many anonymous registrations an organization takes a day: its client limit (so a full
    /// day of creating and deleting keeps no more retired ids and audit events than one full organization).
    public static let anonymousWindowMillis: Int64 = 86_400_000

    /// A registered client as RFC 7591 §3.2.1 returns it.
    public struct Registered: Sendable, Equatable {
        public var client: Client
        public var secret: String?
        public var registrationToken: String?

        public init(client: Client, secret: String?, registrationToken: String?) {
            self.client = client
            self.secret = secret
            self.registrationToken = registrationToken
        }
    }

    /// `latchkey org set ORG_ID --open-registration on|off`: one organization at a time takes anonymous registrations.
    public static func setOpen(_ open: Bool, organizationID: String, store: Store) throws {
        try store.write {
            guard try store.organization(organizationID) != nil else { throw ProvisioningError.invalid("no organization \(organizationID)") }
            if open {
                try store.setMeta(openOrganizationMeta, organizationID)
            } else if try store.meta(openOrganizationMeta) == organizationID {
                try store.deleteMeta(openOrganizationMeta)
            }
        }
    }

    // MARK: Registration

    /// The organization's primary client acting for an anonymous registrant
    /// (the audit log says `anonymous`): no scope, so no privileged one.
    public func openRegistrant(requestID: String?) throws -> Caller {
        guard let org = try store.read({ try store.meta(ClientRegistration.openOrganizationMeta) }),
              let primary = try store.read({ try store.organization(org)?.primaryClientID.flatMap { try store.client($0) } }) else {
            throw Refusal.notAllowed
        }
        var caller = Caller(client: primary, scopes: [], requestID: requestID, surface: "registration")
        caller.actor = ClientRegistration.anonymous
        return caller
    }

    public static let anonymous = "anonymous"
    /// What an anonymous registrant may ask for: a relying party's grants and
    /// the OpenID scopes, nothing that reaches other apps of the organization
    /// (the app surface's scopes, connections, client_credentials).
    public static let anonymousGrants = ["authorization_code", "refresh_token"]

    /// The attribute that marks a client registered anonymously: its own
    /// updates (RFC 7592) stay within what an anonymous registration may ask.
    static let anonymousAttribute = "registered_anonymously"

    static func isAnonymous(_ client: Client) -> Bool { client.attributes[anonymousAttribute]?.boolValue == true }

    static func checkAnonymousLimits(_ spec: ClientSpec) throws {
        if let extra = spec.scope.first(where: { !ClientRegistration.defaultScope.contains($0) }) {
            throw Refusal.invalidMetadata("scope: an anonymous registration may ask for \(Scopes.join(ClientRegistration.defaultScope)) only, not \(extra)")
        }
        if let extra = spec.grantTypes.first(where: { !ClientRegistration.anonymousGrants.contains($0) }) {
            throw Refusal.invalidMetadata("grant_types: an anonymous registration may use authorization_code and refresh_token only, not \(extra)")
        }
    }

    public func register(_ metadata: JSON, caller: Caller) throws -> Registered {
        var spec = try self.spec(metadata, current: nil)
        if caller.actor == ClientRegistration.anonymous {
            try ClientRegistration.checkAnonymousLimits(spec)
            try ClientRegistration.checkReachable(spec.backchannelLogoutURI)
            spec.attributes.set(ClientRegistration.anonymousAttribute, .bool(true))
        }
        let token = env.randomToken(prefix: "lkg_", bytes: 32)
        do {
            // One transaction: a client never exists without its registration access token, and a refused
            // registration spends none of the organization's anonymous allowance.
            let issued = try store.write {
                if caller.actor == ClientRegistration.anonymous { try spendAnonymousWrite(organizationID: caller.organizationID) }
                let issued = try registry.create(spec, caller: caller)
                try store.setRegistrationToken(clientID: issued.client.clientID, hash: ClientRegistration.hash(token), at: env.now())
                return issued
            }
            return Registered(client: issued.client, secret: issued.secret, registrationToken: token)
        } catch let e as RegistryError {
            throw refusal(e)
        }
    }

    /// Inside the write: one of the organization's anonymous writes a day
    /// (as many as its client limit), or 429 until its window ends.
    func spendAnonymousWrite(organizationID: String) throws {
        let limit = try store.organization(organizationID)?.clientLimit ?? 0
        let now = env.now()
        if let ends = try store.spendAnonymousWrite(organizationID: organizationID, limit: limit,
                                                    windowMillis: ClientRegistration.anonymousWindowMillis, now: now) {
            throw Refusal.allowanceSpent(seconds: max(1, (ends - now + 999) / 1000))
        }
    }

    // MARK: Configuration (RFC 7592)

    /// The client, when `token` is its registration access token.
    public func authorized(_ clientID: String, token: String?) throws -> Client {
        guard let token, !token.isEmpty, clientID.utf8.count <= 64 else { throw Refusal.invalidToken }
        return try store.read {
            let stored = try store.registrationTokenHash(clientID: clientID) ?? ""
            // Compared whether or not the client exists, so timing tells nothing.
            let matches = Digest.constantTimeEqual(Array(stored.utf8), Array(ClientRegistration.hash(token).utf8))
            // A disabled client cannot manage itself (an operator disabled it: it must not switch itself back on).
            guard matches, !stored.isEmpty, let client = try store.client(clientID), !client.isPrimary, client.enabled else {
                throw Refusal.invalidToken
            }
            return client
        }
    }

    /// RFC 7592 §2.2: the metadata sent replaces what was registered; what
    /// RFC 7591 does not cover (enabled, lifetimes, description, extra data,
    /// a compatible surface's attributes) stays as the operator left it. A
    /// client that becomes confidential gets a new secret, returned here.
    ///
    /// One transaction from the token check to the new secret (attacker
    /// review): the client replaced is the one the write sees, so an
    /// operator's `enabled: false` committed meanwhile is not overwritten
    /// with a stale `true`, and a refused secret leaves nothing changed.
    public func replace(_ clientID: String, token: String?, metadata: JSON, requestID: String? = nil) throws -> Registered {
        // Refused before any write when the token is wrong; checked again inside it.
        _ = try authorized(clientID, token: token)
        guard metadata["client_id"] == .string(clientID) else { throw Refusal.invalidMetadata("client_id must be the client's own (RFC 7592 §2.2)") }
        try registry.guards?.spendOwnChange(clientID: clientID, now: registry.env.now())
        let verified = try verifiedSecrets(metadata["client_secret"], clientID: clientID)
        do {
            return try store.write {
                let client = try authorized(clientID, token: token)
                // The secrets the client_secret was verified against are still the client's (no slow hash in here).
                if let verified, try store.secrets(clientID: clientID).map(\.id) != verified {
                    throw Refusal.invalidMetadata("client_secret: the client's secret changed meanwhile")
                }
                let caller = self.caller(client, requestID: requestID)
                let updated = try registry.update(clientID, caller: caller, expected: nil, action: "client.updated") { current in
                    // The client as the write holds it (its row locked): an operator's change committed meanwhile is what is
                    // replaced, and an operator's cut committed meanwhile (the token ended) refuses it.
                    guard current.enabled, try stillHolds(clientID, token: token) else { throw Refusal.invalidToken }
                    // A client registered anonymously writes within the same allowance as its registration: each
                    // replacement is an audit event and a version, and nothing else bounded them (attacker review,
                    // session 18). Spent with the client's row held, as a delete takes its organization's after it.
                    if ClientRegistration.isAnonymous(current) { try spendAnonymousWrite(organizationID: current.organizationID) }
                    return try replacement(metadata, for: current)
                }
                if updated.authMethod.usesSecret, try store.secrets(clientID: clientID).isEmpty {
                    let issued = try registry.rotateSecret(clientID, caller: self.caller(updated, requestID: requestID), graceSeconds: 0)
                    return Registered(client: issued.client, secret: issued.secret, registrationToken: nil)
                }
                return Registered(client: updated, secret: nil, registrationToken: nil)
            }
        } catch let e as RegistryError {
            throw refusal(e)
        }
    }

    /// §2.2: a `client_secret` sent with a replacement must be the one currently issued (it never sets one).
    /// Verified before the write (a caller-chosen password costs a slow hash, which must hold no write lock);
    /// a wrong one counts against the client's failure limit, as at the token endpoint. Returns the ids of the
    /// secrets it was verified against, nil when none was sent.
    func verifiedSecrets(_ sent: JSON?, clientID: String) throws -> [Int64]? {
        guard let sent, sent != .null else { return nil }
        let secrets = try store.read { try store.secrets(clientID: clientID) }
        let key = FailureLimiter.Key.account("registration:" + clientID, from: "*")
        let now = env.now()
        if let wait = registry.guards?.failures.retryAfter(key, now: now) { throw TooManyFailures(retryAfterSeconds: wait) }
        guard let text = sent.stringValue,
              try registry.hasher.verify(text, against: secrets, now: now, guards: registry.guards, limitKeys: [key]) else {
            registry.guards?.failures.recordFailure([key], now: now)
            throw Refusal.invalidMetadata("client_secret: not the client's current secret (RFC 7592 §2.2)")
        }
        return secrets.map(\.id)
    }

    /// Inside a write, once the client's row is held: whether `token` is still its registration access token.
    func stillHolds(_ clientID: String, token: String?) throws -> Bool {
        guard let token, let stored = try store.registrationTokenHash(clientID: clientID) else { return false }
        return Digest.constantTimeEqual(Array(stored.utf8), Array(ClientRegistration.hash(token).utf8))
    }

    /// What `client` becomes under a replacement with `metadata`.
    func replacement(_ metadata: JSON, for client: Client) throws -> ClientSpec {
        let sent = try self.spec(metadata, current: client)
        var spec = ClientSpec(client)
        spec.clientID = nil
        (spec.name, spec.clientURI, spec.redirectURIs, spec.grantTypes) = (sent.name, sent.clientURI, sent.redirectURIs, sent.grantTypes)
        (spec.authMethod, spec.scope, spec.idTokenAlg, spec.postLogoutRedirectURIs) = (sent.authMethod, sent.scope, sent.idTokenAlg, sent.postLogoutRedirectURIs)
        (spec.backchannelLogoutURI, spec.backchannelLogoutSessionRequired) = (sent.backchannelLogoutURI, sent.backchannelLogoutSessionRequired)
        // (ClientMetadata.read set each of these on `sent`.)
        (spec.jwks, spec.requirePushedRequests, spec.userinfoAlg) = (sent.jwks, sent.requirePushedRequests, sent.userinfoAlg)
        (spec.policyURI, spec.tosURI) = (sent.policyURI, sent.tosURI)
        // What holds the client to a stricter profile stays set: the client itself may add it, only an operator removes it.
        spec.fapi2 = client.fapi2 || sent.fapi2
        spec.dpopBoundAccessTokens = client.dpopBoundAccessTokens || sent.dpopBoundAccessTokens
        spec.requirePushedRequests = client.requirePushedRequests || sent.requirePushedRequests
        // A client registered anonymously stays within what that allowed: Latchkey's POSTs never at loopback or an
        // address, and (attacker review: a PUT gave it client_credentials and API scopes) no more than such a
        // registration may ask. One registered with an initial access token may name any URI, as it did then.
        if ClientRegistration.isAnonymous(client) {
            if sent.backchannelLogoutURI != client.backchannelLogoutURI { try ClientRegistration.checkReachable(sent.backchannelLogoutURI) }
            try ClientRegistration.checkAnonymousLimits(spec)
        }
        return spec
    }

    /// RFC 7592 §2.3: the client deletes itself (its id is never given again,
    /// SPEC 4.5), checked in the same transaction: a client disabled a moment
    /// before cannot.
    public func delete(_ clientID: String, token: String?, requestID: String? = nil) throws {
        do {
            try store.write {
                let client = try authorized(clientID, token: token)
                // The row held, the token checked again: an operator's cut committed meanwhile refuses it.
                guard try store.clientForUpdate(clientID) != nil, try stillHolds(clientID, token: token) else { throw Refusal.invalidToken }
                try registry.deleteRegistered(client, caller: caller(client, requestID: requestID))
            }
        } catch RegistryError.notFound {
            throw Refusal.invalidToken
        }
    }

    /// The holder of a registration access token: the client's owner (RFC
    /// 7592), with the client's scopes but no privileged one. It may change
    /// the credential of a client that holds none (its method, its keys, a
    /// new secret), and add none; a privileged scope an operator gave the
    /// client later is not the token's to hand on (SPEC 6.0).
    func caller(_ client: Client, requestID: String?) -> Caller {
        Caller(client: client, scopes: client.scope.filter { !Scopes.isPrivileged($0) }, requestID: requestID, surface: "registration")
    }

    // MARK: Metadata

    /// RFC 7591 §2 metadata as a client specification, with Latchkey's and
    /// OIDC Registration's defaults: the code grant, client_secret_basic,
    /// RS256 ID tokens and the code flow's scopes.
    func spec(_ metadata: JSON, current: Client?) throws -> ClientSpec {
        guard let members = metadata.objectValue else { throw Refusal.invalidMetadata("The body must be a JSON object.") }
        let body = JSON.object(members.filter { ClientRegistration.known.contains($0.0) })
        var r = FieldReader(body) { Refusal.invalidMetadata("\($0.field) \($0.message)") }
        let grantTypes = try r.strings("grant_types") ?? ["authorization_code"]
        if let responseTypes = try r.strings("response_types") {
            // RFC 7591 §2.1: response types and grant types must agree; the code flow is the one response type.
            guard responseTypes == ["code"] || (responseTypes.isEmpty && !grantTypes.contains("authorization_code")) else {
                throw Refusal.invalidMetadata("response_types must be [\"code\"]")
            }
        }
        var scope = ClientRegistration.defaultScope
        if let raw = try r.string("scope") {
            guard let parsed = Scopes.parse(raw) else { throw Refusal.invalidMetadata("scope must be space-separated scope tokens") }
            scope = parsed
        }
        let name = try r.string("client_name") ?? current?.name ?? "Registered client"
        let idTokenAlg = try r.string("id_token_signed_response_alg")
        var spec = ClientSpec(name: name, clientURI: try r.string("client_uri"), redirectURIs: try r.strings("redirect_uris") ?? [],
                              grantTypes: grantTypes, authMethod: try r.string("token_endpoint_auth_method") ?? "client_secret_basic", scope: scope,
                              enabled: true, idTokenAlg: idTokenAlg ?? "RS256")
        try ClientMetadata.read(&r, into: &spec)
        // RS256 is OpenID's default, and FAPI 2.0 §5.4 excludes it: a FAPI client naming none gets ES256.
        if idTokenAlg == nil && (spec.fapi2 || current?.fapi2 == true) { spec.idTokenAlg = SignatureAlgorithm.es256.rawValue }
        return spec
    }

    /// Latchkey POSTs logout tokens to `backchannel_logout_uri` from inside
    /// the deployment: a registrant nobody vouched for may name only an https
    /// URI on a DNS name, never loopback or an IP literal (no internal
    /// address by construction; DNS pointing inside stays the operator's
    /// egress filter's job). With an initial access token any URI the
    /// registry accepts will do.
    static func checkReachable(_ uri: String?) throws {
        guard let uri else { return }
        guard let parts = URIRules.parse(uri), parts.scheme == "https", !URIRules.isLoopback(parts.host),
              !parts.host.hasPrefix("["), !isNotAPublicName(parts.host) else {
            throw Refusal.invalidMetadata("backchannel_logout_uri: must be https on a DNS name for a client registered without an initial access token")
        }
    }

    /// Whether a host is not a name on the public DNS: an IPv4 address in any
    /// spelling a resolver takes (`127.1`, `0x7f.0.0.1`, `2130706433`,
    /// octal; as the WHATWG URL standard decides, its last label is a number,
    /// and no DNS name ends in one, RFC 1123 §2.1), a `localhost` name, or a
    /// single label (`vm`, `ip6-localhost`: names from /etc/hosts or the
    /// search domain, never a public host).
    static func isNotAPublicName(_ host: String) -> Bool {
        var labels = host.lowercased().split(separator: ".", omittingEmptySubsequences: false)
        if labels.count > 1 && labels.last == "" { labels.removeLast() }
        guard labels.count > 1, let last = labels.last else { return true }
        if last == "localhost" { return true }
        if !last.isEmpty && last.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { return true }
        return last.hasPrefix("0x") && last.utf8.dropFirst(2).allSatisfy { Hex.nibble($0) != nil }
    }

    func refusal(_ e: RegistryError) -> Refusal {
        switch e {
        case let .invalid(errors):
            let first = errors.first ?? FieldError("metadata", "is invalid")
            let text = "\(first.field): \(first.message)"
            return first.field.hasPrefix("redirect_uris") ? .invalidRedirectURI(text) : .invalidMetadata(text)
        case let .forbidden(why): return .invalidMetadata(why.message)
        case let .conflict(why): return .invalidMetadata(why.message)
        case .notFound: return .invalidToken
        case .preconditionFailed: return .invalidMetadata("The client changed meanwhile.")
        }
    }

    static func hash(_ token: String) -> String { Base64.urlEncode(Digest.sha256(token)) }

    /// The metadata RFC 7591 §3.2.1 returns (the secret and token only when just issued).
    public static func json(_ r: Registered, issuer: String) -> JSON {
        let c = r.client
        var members: [(String, JSON)] = [
            ("client_id", .string(c.clientID)), ("client_id_issued_at", .int(c.createdAt / 1000)),
        ]
        if let secret = r.secret { members += [("client_secret", .string(secret)), ("client_secret_expires_at", .int(0))] }
        if let token = r.registrationToken { members.append(("registration_access_token", .string(token))) }
        members += [
            ("registration_client_uri", .string("\(issuer)/oauth2/register/\(c.clientID)")),
            ("client_name", .string(c.name)), ("redirect_uris", JSON(c.redirectURIs)), ("grant_types", JSON(c.grantTypes.map(\.rawValue))),
            ("response_types", c.grantTypes.contains(.authorizationCode) ? ["code"] : .array([])),
            ("token_endpoint_auth_method", .string(c.authMethod.rawValue)), ("scope", .string(Scopes.join(c.scope))),
            ("id_token_signed_response_alg", .string(c.idTokenAlg.rawValue)),
        ] + ClientMetadata.members(c)
        if let uri = c.clientURI { members.append(("client_uri", .string(uri))) }
        return .object(members)
    }
}
