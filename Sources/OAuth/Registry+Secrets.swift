import Common
import Cryptography

/// Secrets and caller-chosen passwords (SPEC 6.0, 6.2, 7.1): shown once,
/// stored hashed, the old one retired with or without grace.
extension ClientRegistry {
    /// A caller-chosen password's stored record, hashed on the slow-hash pool.
    /// Each costs a slow hash, so a caller may set as many a minute as the
    /// per-account failure limit allows (10 by default; creating clients with
    /// passwords included), then `TooManyFailures`.
    func passwordRecord(_ password: String, clientID: String, caller: Caller) throws -> ClientSecret {
        guard let guards else { return hasher.passwordRecord(for: password, clientID: clientID, at: env.now()) }
        let key = FailureLimiter.Key.account("password-set:" + caller.client.clientID, from: "*")
        let now = env.now()
        if let wait = guards.failures.retryAfter(key, now: now) {
            throw TooManyFailures(retryAfterSeconds: wait, changes: true)
        }
        let record = try guards.pool.run { hasher.passwordRecord(for: password, clientID: clientID, at: now) }
        guards.failures.recordFailure([key], now: now)
        return record
    }

    /// A new generated secret. The current one stays valid for `graceSeconds`
    /// (0 ends it now); any older one ends now. A client may rotate its own
    /// secret; only the primary may rotate another's; either with a token
    /// carrying the client's privileged scopes (`checkMaySetCredentials`).
    /// The primary's rotation without grace is a cut-off: the client's tokens
    /// end with the old secret (see `touch`).
    public func rotateSecret(_ id: String, caller: Caller, graceSeconds: Int) throws -> IssuedSecret {
        guard (0...ClientRegistry.maxGraceSeconds).contains(graceSeconds) else {
            throw RegistryError.invalid([FieldError("grace_period_seconds", "must be 0..\(ClientRegistry.maxGraceSeconds)")])
        }
        return try store.write {
            let client = try getForUpdate(id, caller: caller)
            try checkMaySetCredentials(of: client, caller: caller)
            guard client.authMethod.usesSecret else {
                throw RegistryError.conflict(.publicClientHasNoSecret)
            }
            let now = env.now()
            let previousExpiry = try retireSecrets(of: id, graceSeconds: graceSeconds, now: now)
            let secret = hasher.generate(env)
            try store.insertSecret(hasher.record(for: secret, clientID: id, at: now))
            let updated = try touch(client, at: now, endingTokens: graceSeconds == 0 && isOperator(caller, of: id))
            try endRegistrationTokenIfCutOff(id, caller: caller)
            try audit(caller, "client.secret_rotated", target: id, details: ["grace_period_seconds": JSON(graceSeconds)])
            return IssuedSecret(client: updated, secret: secret, previousSecretExpiresAt: previousExpiry)
        }
    }

    /// Sets a caller-chosen password as the client's only secret (no grace):
    /// a client's own password change, or the primary's for another client.
    public func setPassword(_ id: String, caller: Caller, password: String) throws {
        // Refused before the slow hash is spent, and again in the write (the client may change meanwhile).
        try store.read {
            let client = try get(id, caller: caller)
            try checkMaySetCredentials(of: client, caller: caller)
            guard client.authMethod.usesSecret else { throw RegistryError.conflict(.publicClientHasNoSecret) }
        }
        let record = try passwordRecord(password, clientID: id, caller: caller)
        try store.write {
            let client = try getForUpdate(id, caller: caller)
            try checkMaySetCredentials(of: client, caller: caller)
            guard client.authMethod.usesSecret else { throw RegistryError.conflict(.publicClientHasNoSecret) }
            _ = try retireSecrets(of: id, graceSeconds: 0, now: env.now())
            try store.insertSecret(record)
            _ = try touch(client, at: env.now(), endingTokens: isOperator(caller, of: id))
            try endRegistrationTokenIfCutOff(id, caller: caller)
            try audit(caller, "client.password_set", target: id)
        }
    }

    /// The integration surface's password reset (SPEC 6.2): reserved for the
    /// primary client, even on itself; then another organization's client is
    /// told apart (`locate`); both before any slow hash.
    public func resetPassword(_ id: String, caller: Caller, password: String) throws {
        guard caller.client.isPrimary else { throw RegistryError.primaryOnly }
        _ = try store.read { try locate(id, caller: caller) }
        try setPassword(id, caller: caller, password: password)
    }

    /// Another caller (an operator) who rotates a client's credential or takes something from it cuts the client
    /// off as it stood: its RFC 7592 registration access token, usually kept beside the old secret, ends too, so
    /// whoever holds it cannot undo the change (switch the method to get a new secret, put the removed grant or
    /// redirect URI back; attacker review, session 17). The client's own changes keep it.
    func endRegistrationTokenIfCutOff(_ id: String, caller: Caller) throws {
        if isOperator(caller, of: id) { try store.deleteRegistrationToken(clientID: id) }
    }

    /// Whether `caller` acts on another client than itself: an operator's change cuts that client off.
    func isOperator(_ caller: Caller, of id: String) -> Bool { caller.client.clientID != id }

    func retireSecrets(of id: String, graceSeconds: Int, now: Int64) throws -> Int64? {
        var previousExpiry: Int64?
        for old in try store.secrets(clientID: id) {
            let stillCurrent = old.expiresAt == nil
            if stillCurrent && graceSeconds > 0 {
                previousExpiry = now + Int64(graceSeconds) * 1000
                try store.setSecretExpiry(id: old.id, expiresAt: previousExpiry)
            } else {
                try store.deleteSecret(id: old.id)
            }
        }
        return previousExpiry
    }
}
