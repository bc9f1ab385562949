import Common
import Cryptography

/// What `latchkey init` and `latchkey org create` return: shown once.
public struct ProvisionedOrganization: Sendable, Equatable {
    public var organizationID: String
    public var clientID: String
    public var clientSecret: String

    public var json: JSON {
        ["organization_id": .string(organizationID), "client_id": .string(clientID), "client_secret": .string(clientSecret)]
    }
}

public enum ProvisioningError: Error, Equatable, CustomStringConvertible {
    case alreadyInitialized
    case notInitialized
    case invalid(String)
    case duplicateUser

    public var description: String {
        switch self {
        case .alreadyInitialized: return "the database is already initialized"
        case .notInitialized: return "the database is not initialized: run `latchkey init` first"
        case let .invalid(message): return message
        case .duplicateUser: return "a user with that username already exists"
        }
    }
}

/// Server set-up operations behind the CLI (SPEC 1.2), each one transaction.
public struct Provisioning {
    public static let defaultClientLimit = 100
    let env: Environment
    let store: Store

    public init(env: Environment, store: Store) {
        self.env = env
        self.store = store
    }

    public func isInitialized() throws -> Bool { try store.meta("initialized_at") != nil }

    /// Loads (creating on first use) the pepper under which generated secrets
    /// are hashed. With a key-encryption key it is stored sealed
    /// (`secret_pepper_sealed`, SPEC 7.1), and a pepper stored in clear
    /// before a KEK was configured is sealed on first use.
    public static func secretHasher(store: Store, env: Environment) throws -> SecretHasher {
        if let pepper = try loadPepper(store: store, env: env, sealIfClear: false) { return SecretHasher(pepper: pepper) }
        return try store.write {
            if let pepper = try loadPepper(store: store, env: env, sealIfClear: true) { return SecretHasher(pepper: pepper) }
            try KeyManagement.refuseUnlessKEKFits(store, env: env)
            let pepper = env.random(32)
            if let kek = env.kek {
                try store.setMeta("secret_pepper_sealed", Hex.encode(try SealedBox.seal(pepper, key: kek)))
            } else {
                try store.setMeta("secret_pepper", Hex.encode(pepper))
            }
            return SecretHasher(pepper: pepper)
        }
    }

    /// The stored pepper; nil when there is none, or (unless `sealIfClear`,
    /// inside a write) when a clear one waits to be sealed with the KEK.
    static func loadPepper(store: Store, env: Environment, sealIfClear: Bool) throws -> [UInt8]? {
        if let hex = try store.meta("secret_pepper_sealed"), let sealed = Hex.decode(hex) {
            guard let kek = env.kek else { throw ProvisioningError.invalid("the secret pepper is sealed: configure the key-encryption key (LATCHKEY_KEK_FILE)") }
            return try SealedBox.open(sealed, key: kek)
        }
        guard let hex = try store.meta("secret_pepper"), let pepper = Hex.decode(hex) else { return nil }
        guard let kek = env.kek else { return pepper }
        guard sealIfClear else { return nil }
        try store.setMeta("secret_pepper_sealed", Hex.encode(try SealedBox.seal(pepper, key: kek)))
        try store.deleteMeta("secret_pepper")
        return pepper
    }

    /// SPEC 7.1: with a key-encryption key configured, nothing that could mint
    /// or verify a credential stays in clear. Seals what was stored before
    /// the KEK was configured (signing private keys, upstream client secrets,
    /// the pepper), in one transaction; returns how many it sealed. Run by
    /// `latchkey serve` at start; a no-op without a KEK or when all is sealed.
    @discardableResult
    public static func sealAtRest(store: Store, env: Environment) throws -> Int {
        guard let kek = env.kek else { return 0 }
        _ = try secretHasher(store: store, env: env)
        return try store.write {
            var sealed = 0
            for key in try store.signingKeys() where !key.encrypted {
                try store.sealSigningKey(kid: key.kid, privateKey: try SealedBox.seal(key.privateKey, key: kek))
                sealed += 1
            }
            if sealed > 0 { try KeyManagement.bumpVersion(store) }
            for var record in try store.upstreamsStoredInClear() {
                record.secret = try SealedBox.seal(record.secret, key: kek)
                record.secretEncrypted = true
                guard try store.updateUpstream(record, from: record.version) else { throw StoreError.busy }
                sealed += 1
            }
            return sealed
        }
    }

    /// Schema must exist; creates the signing keys (`algorithm`'s signs
    /// access tokens; ES256 and RS256 are always published), the first
    /// organization and its primary client. Fails on an initialized database.
    public func initialize(issuer: String, organizationName: String, clientLimit: Int, algorithm: SignatureAlgorithm = .es256) throws -> ProvisionedOrganization {
        let hasher = try Provisioning.secretHasher(store: store, env: env)
        return try store.write {
            guard try store.meta("initialized_at") == nil else { throw ProvisioningError.alreadyInitialized }
            try store.setMeta("issuer", issuer)
            try store.setMeta("initialized_at", String(env.now()))
            try KeyManagement.rotate(store: store, env: env, algorithm: algorithm)
            try KeyManagement.ensurePublished(store: store, env: env)
            return try createOrganizationInTransaction(name: organizationName, clientLimit: clientLimit, hasher: hasher, action: "system.initialized")
        }
    }

    public func createOrganization(name: String, clientLimit: Int) throws -> ProvisionedOrganization {
        let hasher = try Provisioning.secretHasher(store: store, env: env)
        return try store.write {
            guard try store.meta("initialized_at") != nil else { throw ProvisioningError.notInitialized }
            return try createOrganizationInTransaction(name: name, clientLimit: clientLimit, hasher: hasher, action: "organization.created")
        }
    }

    private func createOrganizationInTransaction(name: String, clientLimit: Int, hasher: SecretHasher, action: String) throws -> ProvisionedOrganization {
        let trimmed = name.trimmingCharacters()
        guard !trimmed.isEmpty, trimmed.utf8.count <= 200 else { throw ProvisioningError.invalid("organization name must be 1..200 bytes") }
        guard ClientSpec.isDisplaySafe(trimmed), ClientSpec.isVisible(trimmed) else {
            throw ProvisioningError.invalid("organization name must show a visible character and not contain control or bidirectional-override characters")
        }
        guard (1...100_000).contains(clientLimit) else { throw ProvisioningError.invalid("client limit must be 1..100000") }
        let now = env.now()
        let orgID = "org-" + env.randomID(20)
        let clientID = env.randomID(24)
        try store.insertOrganization(Organization(id: orgID, name: trimmed, clientLimit: clientLimit, primaryClientID: nil, createdAt: now))
        let client = Client(clientID: clientID, organizationID: orgID, isPrimary: true, name: "\(trimmed) primary client",
                            grantTypes: [.clientCredentials], authMethod: .clientSecretBasic, scope: Scopes.primary, createdAt: now)
        try store.insertClient(client)
        try store.setPrimaryClient(organizationID: orgID, clientID: clientID)
        let secret = hasher.generate(env)
        try store.insertSecret(hasher.record(for: secret, clientID: clientID, at: now))
        try store.appendAudit(AuditEvent(organizationID: orgID, actor: "cli", action: action, target: clientID, surface: "cli",
                                         requestID: nil, details: ["organization_name": .string(trimmed)], createdAt: now))
        return ProvisionedOrganization(organizationID: orgID, clientID: clientID, clientSecret: secret)
    }

    /// SPEC 6.0 `latchkey org reset-primary`: the primary client gets the
    /// client_credentials grant and every management scope back, is enabled
    /// and confidential again, and gets a new secret; every older secret ends
    /// now (no grace: the operator resets because a secret is lost or leaked).
    /// The secret works as printed, with HTTP Basic and no DPoP proof: what
    /// a primary may set on itself that would stop that (the secret in the
    /// form only, bound tokens) is undone too (review, session 31).
    public func resetPrimary(organizationID: String) throws -> ProvisionedOrganization {
        let hasher = try Provisioning.secretHasher(store: store, env: env)
        return try store.write {
            guard let org = try store.organization(organizationID), let primaryID = org.primaryClientID,
                  var client = try store.clientForUpdate(primaryID) else { throw ProvisioningError.invalid("no organization \(organizationID)") }
            let now = env.now()
            if !client.grantTypes.contains(.clientCredentials) { client.grantTypes.append(.clientCredentials) }
            for scope in Scopes.primary where !client.scope.contains(scope) { client.scope.append(scope) }
            client.enabled = true
            // Back to a secret in HTTP Basic, whatever it used: a leaked private_key_jwt key is locked out like a leaked secret.
            if !client.authMethod.usesSecret { client.jwks = nil }
            client.authMethod = .clientSecretBasic
            // A primary on a secret is no FAPI 2.0 client, and its tokens need no proof of a key.
            client.fapi2 = false
            client.dpopBoundAccessTokens = false
            // The reset ends every token issued so far (a leaked secret's tokens included).
            client.tokenGeneration += 1
            client.version += 1
            client.updatedAt = now
            try store.updateClient(client)
            for old in try store.secrets(clientID: primaryID) { try store.deleteSecret(id: old.id) }
            let secret = hasher.generate(env)
            try store.insertSecret(hasher.record(for: secret, clientID: primaryID, at: now))
            try store.appendAudit(AuditEvent(organizationID: org.id, actor: "cli", action: "organization.primary_reset", target: primaryID,
                                             surface: "cli", requestID: nil, createdAt: now))
            return ProvisionedOrganization(organizationID: org.id, clientID: primaryID, clientSecret: secret)
        }
    }

    /// Adds a local user with an scrypt password hash.
    public func addUser(username: String, email: String?, name: String?, password: String) throws -> String {
        guard Provisioning.isValidUsername(username) else {
            throw ProvisioningError.invalid("username must be 1..64 characters of letters, digits, '.', '_', '-', '@'")
        }
        try Provisioning.checkPassword(password)
        if let email, email.utf8.count > 254 || !email.contains("@") { throw ProvisioningError.invalid("invalid email") }
        if let name, name.utf8.count > 200 { throw ProvisioningError.invalid("name must be at most 200 bytes") }
        let hash = PasswordHasher.hash(password)
        return try store.write {
            guard try store.user(username: username) == nil else { throw ProvisioningError.duplicateUser }
            let id = "usr-" + env.randomID(20)
            try store.insertUser(User(id: id, username: username, email: email, name: name, passwordHash: hash, createdAt: env.now()))
            try store.appendAudit(AuditEvent(organizationID: nil, actor: "cli", action: "user.created", target: id, surface: "cli",
                                             requestID: nil, createdAt: env.now()))
            return id
        }
    }

    static func checkPassword(_ password: String) throws {
        guard password.utf8.count >= 8, password.utf8.count <= 1024 else { throw ProvisioningError.invalid("password must be 8..1024 bytes") }
    }

    /// `latchkey user password`: a new password for a user, and every
    /// session of theirs ended as a sign-out ends one (the codes issued in
    /// it spent, the grants made in it without `offline_access` revoked,
    /// back-channel logout queued for the clients it signed into), unless
    /// `keepSessions`. A sign-in that verified the old password and has not
    /// stored its session yet gets none (`SessionService.start`). Grants that
    /// outlive sessions (`offline_access`, the device flow) stay unless
    /// `revokeGrants`, which disconnects every app of the user as the account
    /// page does (each app's grants, codes and approved device codes, and its
    /// remembered consent). Returns the user's id, the sessions ended and
    /// the apps disconnected.
    public func setPassword(username: String, password: String, keepSessions: Bool, revokeGrants: Bool = false) throws
        -> (userID: String, sessionsEnded: Int, appsDisconnected: Int) {
        try Provisioning.checkPassword(password)
        let hash = PasswordHasher.hash(password)
        return try store.write {
            guard let user = try store.user(username: username) else { throw ProvisioningError.invalid("no user \(username)") }
            // First: from here on, a sign-in holding the old hash waits for this write and then finds the new one.
            try store.setPasswordHash(userID: user.id, hash: hash)
            let sids = keepSessions ? [] : try store.takeSessions(userID: user.id)
            for sid in sids {
                try BackchannelLogout.sessionEnded(sid: sid, userID: user.id, store: store, env: env)
            }
            var disconnected = 0
            if revokeGrants {
                let connections = ConnectionService(env: env, store: store)
                // Each page is disconnected before the next is read (from the start again: what was read is gone).
                while true {
                    let page = try store.connections(userID: user.id, limit: 250, offset: 0).connections
                    var progress = 0
                    for c in page {
                        if try connections.delete(userID: user.id, clientID: c.clientID) { progress += 1 }
                    }
                    disconnected += progress
                    if progress == 0 { break }
                }
            }
            try store.appendAudit(AuditEvent(organizationID: nil, actor: "cli", action: "user.password_changed", target: user.id, surface: "cli",
                                             requestID: nil, createdAt: env.now()))
            return (user.id, sids.count, disconnected)
        }
    }

    /// `latchkey user add/set`: changes a user's standard claims (OIDC Core
    /// §5.1) as `change` says, after their rules; returns what is stored.
    @discardableResult
    public func setProfile(username: String, _ change: (inout UserProfile) -> Void) throws -> UserProfile {
        guard let user = try store.read({ try store.user(username: username) }) else { throw ProvisioningError.invalid("no user \(username)") }
        do {
            return try ProfileService(env: env, store: store).update(userID: user.id, actor: "cli", surface: "cli", change)
        } catch let RegistryError.invalid(problems) {
            let problem = problems.first ?? FieldError("profile", "is invalid")
            throw ProvisioningError.invalid("\(problem.field) \(problem.message)")
        }
    }

    static func isValidUsername(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.utf8.allSatisfy { b in
            (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 46 || b == 95 || b == 45 || b == 64
        }
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
