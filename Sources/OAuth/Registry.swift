import Common
import Cryptography

/// Who is calling a management operation: an authenticated client, acting
/// in its own organization with the scopes its token carries.
public struct Caller: Sendable {
    public var client: Client
    public var scopes: [String]
    public var requestID: String?
    /// Which API was used, for the audit log: the surface's one name (native,
    /// integration, identity, app, upstream).
    public var surface: String

    public init(client: Client, scopes: [String], requestID: String?, surface: String) {
        self.client = client
        self.scopes = scopes
        self.requestID = requestID
        self.surface = surface
    }

    /// Who the audit log names, when not the client itself (an anonymous registrant).
    public var actor: String?

    public var organizationID: String { client.organizationID }
    public func holds(_ scope: String) -> Bool { scopes.contains(scope) }
}

/// How a write states the version it was based on.
public enum ExpectedVersion: Sendable, Equatable {
    /// `If-Match: "<version>"` (412 when stale).
    case ifMatch(Int)
    /// A `version` field in the body (409 when stale).
    case field(Int)
}

/// The result of creating or rotating: the secret is shown here once.
public struct IssuedSecret: Sendable, Equatable {
    public var client: Client
    public var secret: String?
    public var previousSecretExpiresAt: Int64?
}

/// The OAuth client registry (SPEC 6.0): every surface calls these.
public struct ClientRegistry {
    public static let maxGraceSeconds = 7 * 86_400
    let env: Environment
    let store: Store
    let hasher: SecretHasher
    /// Where caller-chosen passwords are hashed (the slow-hash pool) and how
    /// often one client may set one (SPEC 7.1).
    let guards: AbuseGuards?

    public init(env: Environment, store: Store, hasher: SecretHasher, guards: AbuseGuards? = nil) {
        self.env = env
        self.store = store
        self.hasher = hasher
        self.guards = guards
    }

    // MARK: Reads

    /// A client of the caller's organization; `notFound` otherwise.
    public func get(_ id: String, caller: Caller) throws -> Client {
        guard let client = try store.client(id), client.organizationID == caller.organizationID else { throw RegistryError.notFound }
        return client
    }

    /// `get` inside a write, with the client's row held until the commit
    /// (`clientForUpdate`): what the write changes is the latest committed
    /// client, on every node.
    func getForUpdate(_ id: String, caller: Caller) throws -> Client {
        guard let client = try store.clientForUpdate(id), client.organizationID == caller.organizationID else { throw RegistryError.notFound }
        return client
    }

    public func list(caller: Caller, namePrefix: String?, limit: Int, offset: Int) throws -> (clients: [Client], total: Int) {
        try list(caller: caller, filter: ClientFilter(namePrefix: namePrefix), limit: limit, offset: offset)
    }

    /// One page of the caller's organization's clients passing `filter` (filtered and paged by the store).
    public func list(caller: Caller, filter: ClientFilter, limit: Int, offset: Int) throws -> (clients: [Client], total: Int) {
        try store.read { try store.clients(organizationID: caller.organizationID, filter: filter, limit: limit, offset: offset) }
    }

    /// Every client of the caller's organization, page by page.
    public func all(caller: Caller) throws -> [Client] {
        var clients: [Client] = []
        while true {
            let page = try list(caller: caller, namePrefix: nil, limit: 250, offset: clients.count)
            clients += page.clients
            if page.clients.isEmpty || clients.count >= page.total { return clients }
        }
    }

    /// The integration surface tells a client of another organization apart
    /// (its source answered AU0008, SPEC 6.2); every other surface uses
    /// `get`, for which the two are one 404.
    public func locate(_ id: String, caller: Caller) throws -> Client {
        guard let client = try store.client(id) else { throw RegistryError.notFound }
        guard client.organizationID == caller.organizationID else { throw RegistryError.forbidden(.otherOrganization) }
        return client
    }

    /// A client the consent screen may show: enabled, with the
    /// authorization_code grant and a redirect URI, never a primary or machine client.
    public func consentable(_ id: String) throws -> Client? {
        guard let client = try store.client(id), client.canAskForConsent else { return nil }
        return client
    }

    /// The app surface's `/auth/code` (SPEC 6.4): an app is an enabled
    /// client with the authorization_code grant and exactly one redirect
    /// URI, of `organization` when the caller is bound to one; never one that
    /// must push its requests (RFC 9126 §6: it gets codes through PAR only).
    public func app(forCode id: String, organization: String?) throws -> Client? {
        guard let client = try store.client(id), client.enabled, client.redirectURIs.count == 1, !client.mustPushRequests,
              client.grantTypes.contains(.authorizationCode), organization == nil || organization == client.organizationID else { return nil }
        return client
    }

    // MARK: Writes

    /// Creates a secondary client. A confidential client gets a generated
    /// `lks_` secret, or `password` (caller-chosen, scrypt-hashed) when given.
    public func create(_ spec: ClientSpec, caller: Caller, password: String? = nil) throws -> IssuedSecret {
        let problems = spec.problems()
        guard problems.isEmpty else { throw RegistryError.invalid(problems) }
        try checkPrivilegedScopes(added: spec.scope, caller: caller)
        // A create that cannot succeed costs no slow hash (attacker review, session 13): a full organization or a
        // taken id is told so first; the checks inside the write are the ones that hold under races.
        if password != nil { _ = try store.read { try checkCreatable(id: spec.clientID, caller: caller) } }
        let passwordRecord = try password.map { try self.passwordRecord($0, clientID: "", caller: caller) }
        return try store.write {
            try checkSigningKey(spec.idTokenAlg)
            if let alg = spec.userinfoAlg { try checkSigningKey(alg, field: "userinfo_signed_response_alg") }
            let id = spec.clientID ?? env.randomID(24)
            let org = try checkCreatable(id: id, caller: caller)
            let now = env.now()
            var client = Client(clientID: id, organizationID: org.id, isPrimary: false, name: spec.name, createdAt: now)
            spec.apply(to: &client)
            try store.insertClient(client)
            var secret: String?
            if client.authMethod.usesSecret {
                if var record = passwordRecord {
                    record.clientID = id
                    record.createdAt = now
                    try store.insertSecret(record)
                } else {
                    let generated = hasher.generate(env)
                    try store.insertSecret(hasher.record(for: generated, clientID: id, at: now))
                    secret = generated
                }
            }
            try audit(caller, "client.created", target: id, details: ["client_name": .string(spec.name)])
            return IssuedSecret(client: client, secret: secret)
        }
    }

    /// The caller's organization, when it has room for one more client and
    /// `id` (when known) is free for good (SPEC 4.5: an id is never reused, so
    /// no old token of a deleted client can come back).
    private func checkCreatable(id: String?, caller: Caller) throws -> Organization {
        guard let org = try store.organization(caller.organizationID) else { throw RegistryError.notFound }
        guard try store.clientCount(organizationID: org.id) < org.clientLimit else { throw RegistryError.limitReached }
        if let id, try store.client(id) != nil || store.isClientIDRetired(id) { throw RegistryError.conflict(.clientIDTaken) }
        return org
    }

    /// Replaces the writable fields with what `change` makes of the current
    /// client, after the version, ownership and scope rules.
    public func update(_ id: String, caller: Caller, expected: ExpectedVersion?, action: String = "client.updated",
                       change: (Client) throws -> ClientSpec) throws -> Client {
        try store.write {
            let current = try getForUpdate(id, caller: caller)
            switch expected {
            case let .ifMatch(v) where v != current.version: throw RegistryError.preconditionFailed
            case let .field(v) where v != current.version: throw RegistryError.staleVersion
            default: break
            }
            try checkMayChange(current, caller: caller)
            var spec = try change(current)
            spec.clientID = nil
            let problems = spec.problems()
            guard problems.isEmpty else { throw RegistryError.invalid(problems) }
            try checkPrivilegedScopes(added: spec.scope.filter { !current.scope.contains($0) }, caller: caller)
            // New keys are a credential: whoever registers them can sign as the client (switching between secret methods
            // hands over nothing; a new secret comes only through rotateSecret and setPassword). So is taking one away,
            // or giving a disabled one its power back (see `givesCredentialPower`).
            if let keys = spec.jwks, keys != current.jwks { try checkMaySetCredentials(of: current, caller: caller) }
            if ClientRegistry.givesCredentialPower(from: current, to: spec) { try checkMaySetCredentials(of: current, caller: caller) }
            if spec.idTokenAlg != current.idTokenAlg.rawValue { try checkSigningKey(spec.idTokenAlg) }
            if let alg = spec.userinfoAlg, alg != current.userinfoAlg?.rawValue { try checkSigningKey(alg, field: "userinfo_signed_response_alg") }
            // Migration 7 disabled the clients registered with a user's or an organization's id form: enabled again,
            // their tokens' `sub` would name a user (RFC 9700 §4.15; attacker review, session 24).
            if !current.enabled && spec.enabled && ClientSpec.hasReservedPrefix(current.clientID) {
                throw RegistryError.conflict(.reservedClientID)
            }
            if current.isPrimary {
                if !spec.enabled { throw RegistryError.conflict(.primaryMustStayEnabled) }
                if spec.authMethod == "none" { throw RegistryError.conflict(.primaryMustStayConfidential) }
                // SPEC 6.0: an organization never locks itself out.
                if !spec.grantTypes.contains("client_credentials") { throw RegistryError.primaryLockout }
                if current.scope.contains(where: { Scopes.isPrivileged($0) && !spec.scope.contains($0) }) { throw RegistryError.primaryLockout }
            }
            var updated = current
            spec.apply(to: &updated)
            // Keys registered for private_key_jwt go when the client stops using it (they would come back with it otherwise).
            if updated.authMethod != .privateKeyJWT && current.authMethod == .privateKeyJWT { updated.jwks = nil }
            updated.version = current.version + 1
            updated.updatedAt = env.now()
            // Held to pushed requests from now on (RFC 9126 §6, FAPI 2.0), nothing is withdrawn: a request that was not
            // pushed gets no code (`answerableClient`), and a code issued for one is refused at redemption; what was
            // pushed goes on.
            if current.enabled != updated.enabled {
                // What was about to become a grant (unredeemed codes, device codes, pushed requests: attacker
                // review) goes when the client is disabled; and again when it is enabled, for a request that read
                // it enabled just before the disable may have written one after it (no grant is begun for a
                // disabled client, so any left is one of those). First: on PostgreSQL (read committed) these
                // writes wait for a redemption in flight to commit, so the revocation below sees the family it
                // created (as a disconnect does).
                try store.withdrawPendingGrants(clientID: id)
            }
            if current.enabled && !updated.enabled {
                // SPEC 4.5: a disabled client's tokens end now, and re-enabling it brings none back;
                // its registration access token (RFC 7592) included, which would otherwise outlive an incident.
                updated.tokenGeneration += 1
                try store.revokeFamilies(clientID: id, at: env.now())
                try store.deleteRegistrationToken(clientID: id)
            } else if current.scope.contains(where: { Scopes.isPrivileged($0) && !updated.scope.contains($0) })
                        || (current.grantTypes.contains(.clientCredentials) && !updated.grantTypes.contains(.clientCredentials)) {
                // A privileged scope taken away (after an incident, say) is gone from the tokens already out too:
                // they end now, and the client asks for new ones with what it still holds. So is client_credentials:
                // the client's own tokens end with the grant that gave them (attacker review, session 17).
                updated.tokenGeneration += 1
            } else if isOperator(caller, of: id) && ClientRegistry.replacesCredential(from: current, to: updated) {
                // An operator's new kind of credential or new keys: what was issued for the old credential ends, as at
                // an operator's rotation without grace (a token left alive could switch the method back and mint a
                // secret; attacker review, session 28).
                updated.tokenGeneration += 1
            }
            // Made public: the refresh tokens it was given while it authenticated would work with its id alone
            // (attacker review, session 24). Its users' grants end; they sign in again.
            if !current.isPublic && updated.isPublic { try store.revokeFamilies(clientID: id, at: env.now()) }
            if ClientRegistry.cutsOff(from: current, to: updated) { try endRegistrationTokenIfCutOff(id, caller: caller) }
            try store.updateClient(updated)
            // A redirect URI added (attacker review, session 13): remembered approvals would send codes there without
            // a word to the user, and for a public client the redirect URI is all that binds a code to the app. Each
            // user approves again, on a consent screen that names where the answer goes.
            if updated.redirectURIs.contains(where: { !current.redirectURIs.contains($0) }) {
                try store.forgetRememberedConsent(clientID: id)
            }
            // A client that no longer authenticates with a secret keeps none that could still work.
            if !updated.authMethod.usesSecret && current.authMethod.usesSecret {
                for secret in try store.secrets(clientID: id) { try store.deleteSecret(id: secret.id) }
            }
            try audit(caller, action, target: id, details: ["version": JSON(updated.version)])
            return updated
        }
    }

    /// Whether `spec` hands whoever holds the client's tokens or credential
    /// more than `current` does, as setting a credential would (attacker
    /// reviews, session 13): made public, its codes and refresh tokens work
    /// with its client id alone; without the FAPI 2.0 profile, DPoP-bound
    /// tokens or pushed requests, a stolen token or a forged request does what
    /// they stopped; re-enabled, the secret it had when it was disabled (after
    /// an incident, say) holds its privileged scopes again; so it does when
    /// client_credentials comes back to a client holding privileged scopes.
    /// Switched to private_key_jwt, the keys it registers, or kept from
    /// before while it used a secret, become its credential (attacker review,
    /// session 18: keys stored by a secondary woke after an operator's cut).
    static func givesCredentialPower(from current: Client, to spec: ClientSpec) -> Bool {
        (spec.authMethod == ClientAuthMethod.publicClient.rawValue && !current.isPublic)
            || (spec.authMethod == ClientAuthMethod.privateKeyJWT.rawValue && current.authMethod != .privateKeyJWT)
            || (current.fapi2 && !spec.fapi2)
            || (current.dpopBoundAccessTokens && !spec.dpopBoundAccessTokens)
            || (current.requirePushedRequests && !spec.requirePushedRequests)
            || (!current.enabled && spec.enabled)
            // client_credentials given back to a client that holds (or is given) management scopes: its secret mints them again.
            || (!current.grantTypes.contains(.clientCredentials) && spec.grantTypes.contains(GrantType.clientCredentials.rawValue)
                && (current.scope + spec.scope).contains(where: Scopes.isPrivileged))
    }

    /// Whether a change takes away what the client authenticated with: a
    /// secret for keys or none, keys for a secret or none, or a key it signed
    /// with removed. Switching between the secret methods keeps the same
    /// secret; a key added beside the old ones (a rollover, as a rotation with
    /// grace) or the same keys reordered takes nothing; keys stored on a
    /// client that uses a secret are no credential.
    static func replacesCredential(from current: Client, to updated: Client) -> Bool {
        func kind(_ c: Client) -> Int { c.authMethod.usesSecret ? 1 : c.authMethod == .privateKeyJWT ? 2 : 0 }
        func keys(_ c: Client) -> Set<String> {
            Set((c.jwks?["keys"]?.arrayValue ?? []).map { JSON.object(($0.objectValue ?? []).sorted { $0.0 < $1.0 }).text })
        }
        return kind(current) != kind(updated) || (updated.authMethod == .privateKeyJWT && !keys(current).isSubset(of: keys(updated)))
    }

    /// Whether a change takes from the client what its registration access
    /// token could put back: a grant type, a scope or a URI removed, its
    /// authentication method or keys changed (a credential replaced), its
    /// back-channel logout URI changed (attacker reviews, session 17).
    static func cutsOff(from current: Client, to updated: Client) -> Bool {
        func removes<T: Equatable>(_ old: [T], _ new: [T]) -> Bool { old.contains { !new.contains($0) } }
        return removes(current.grantTypes, updated.grantTypes) || removes(current.scope, updated.scope)
            || removes(current.redirectURIs, updated.redirectURIs) || removes(current.postLogoutRedirectURIs, updated.postLogoutRedirectURIs)
            || current.authMethod != updated.authMethod || current.jwks != updated.jwks
            || current.backchannelLogoutURI != updated.backchannelLogoutURI
    }

    /// Removes a client with its secrets, logo, grants and tokens. Only the
    /// primary client may do it, and never to itself.
    public func delete(_ id: String, caller: Caller) throws {
        try store.write {
            let client = try getForUpdate(id, caller: caller)
            if client.isPrimary { throw RegistryError.primaryUndeletable }
            guard caller.client.isPrimary else { throw RegistryError.primaryOnly }
            try store.deleteClient(id)
            try audit(caller, "client.deleted", target: id, details: ["client_name": .string(client.name)])
        }
    }

    /// RFC 7592 §2.3: a dynamically registered client deletes itself with
    /// its registration access token (checked by `ClientRegistration`);
    /// never a primary client.
    public func deleteRegistered(_ client: Client, caller: Caller) throws {
        guard !client.isPrimary, caller.client.clientID == client.clientID else { throw RegistryError.primaryOnly }
        try store.write {
            // Disabled by an operator meanwhile: it may not manage itself any more.
            guard try store.clientForUpdate(client.clientID)?.enabled == true else { throw RegistryError.notFound }
            try store.deleteClient(client.clientID)
            try audit(caller, "client.deleted", target: client.clientID, details: ["client_name": .string(client.name)])
        }
    }

    /// A write that changes no field still is a write (SPEC 6.0, 6.4): a new
    /// version and modification time.
    /// A new version of `client`. `endingTokens`: an operator replaced its
    /// credential without grace, so the access tokens given for the old one end
    /// too (its token generation moves on). Left alive, a leaked secret's token
    /// could mint a credential of its own and push out the operator's
    /// (`POST /api/v1/clients/current/secret`, the integration password;
    /// attacker review, session 28).
    func touch(_ client: Client, at now: Int64, endingTokens: Bool = false) throws -> Client {
        var updated = client
        updated.version += 1
        updated.updatedAt = now
        if endingTokens { updated.tokenGeneration += 1 }
        try store.updateClient(updated)
        return updated
    }

    // MARK: Rules

    /// SPEC 6.0: a privileged scope may be given only by a caller whose
    /// token carries it (not merely its client's registration: a narrowed
    /// token gives no more than it carries).
    func checkPrivilegedScopes(added: [String], caller: Caller) throws {
        if let scope = added.first(where: { Scopes.isPrivileged($0) && !caller.holds($0) }) {
            throw RegistryError.privilegedScope(scope)
        }
    }

    /// SPEC 10.1: an ID token algorithm needs a published key; ES256 and
    /// RS256 always have one, EdDSA once an operator made one.
    func checkSigningKey(_ alg: String, field: String = "id_token_signed_response_alg") throws {
        guard let algorithm = SignatureAlgorithm(rawValue: alg), !KeyManagement.alwaysPublished.contains(algorithm) else { return }
        guard try store.signingKeys().contains(where: { $0.algorithm == alg && $0.retiredAt == nil }) else {
            throw RegistryError.invalid([FieldError(field,
                                                    "no \(alg) key is published; `latchkey keys rotate --alg \(alg)` makes one")])
        }
    }

    func audit(_ caller: Caller, _ action: String, target: String?, details: JSON = .object([])) throws {
        try store.appendAudit(AuditEvent(organizationID: caller.organizationID, actor: caller.actor ?? caller.client.clientID, action: action, target: target,
                                         surface: caller.surface, requestID: caller.requestID, details: details, createdAt: env.now()))
    }
}
