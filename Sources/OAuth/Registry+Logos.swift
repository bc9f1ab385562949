import Common
import Cryptography

/// Logos (SPEC 6.0, 6.4): the primary client's own only by itself; the
/// public reads of the app surface serve only clients that can ask a user
/// for consent.
extension ClientRegistry {
    /// Only the primary client may change itself, its logo included.
    func checkMayChange(_ client: Client, caller: Caller) throws {
        if client.isPrimary && client.clientID != caller.client.clientID {
            throw RegistryError.forbidden(.primaryChangesItself)
        }
    }

    /// SPEC 6.0: whoever sets a client's credential (a new secret or
    /// password, another way to authenticate, other keys) can then act as
    /// that client, so setting it gives away the client's privileged scopes.
    /// Another client's: the primary only; anyone's, its own included: only
    /// with a token that carries every privileged scope the client holds.
    func checkMaySetCredentials(of client: Client, caller: Caller) throws {
        guard client.clientID == caller.client.clientID || caller.client.isPrimary else { throw RegistryError.primaryOnly }
        try checkPrivilegedScopes(added: client.scope, caller: caller)
    }

    /// Whether `caller` may set `id`'s logo, asked before the upload is
    /// decoded (a decode costs a child process; attacker review, session 13):
    /// another organization's client is not found, the primary is its own.
    public func checkMaySetLogo(_ id: String, caller: Caller) throws {
        try checkMayChange(try get(id, caller: caller), caller: caller)
    }

    public func setLogo(_ id: String, caller: Caller, png: [UInt8], preview: [UInt8]) throws -> Client {
        try store.write {
            var client = try getForUpdate(id, caller: caller)
            try checkMayChange(client, caller: caller)
            let etag = Hex.encode(Array(Digest.sha256(png).prefix(16)))
            try store.setLogo(clientID: id, contentType: "image/png", image: png, preview: preview, etag: etag, at: env.now())
            client.hasLogo = true
            client.version += 1
            client.updatedAt = env.now()
            try store.updateClient(client)
            try audit(caller, "client.logo_set", target: id, details: ["bytes": JSON(png.count)])
            return client
        }
    }

    public func deleteLogo(_ id: String, caller: Caller) throws {
        try store.write {
            var client = try getForUpdate(id, caller: caller)
            try checkMayChange(client, caller: caller)
            guard client.hasLogo else { throw RegistryError.notFound }
            try store.deleteLogo(clientID: id)
            client.version += 1
            client.updatedAt = env.now()
            try store.updateClient(client)
            try audit(caller, "client.logo_deleted", target: id)
        }
    }

    // MARK: Public reads (SPEC 6.4)

    /// The small logo of each client that has one, by client id.
    public func logoPreviews(of clients: [Client]) throws -> [String: [UInt8]] {
        var previews: [String: [UInt8]] = [:]
        for client in clients where client.hasLogo {
            if let preview = try store.logoPreview(clientID: client.clientID) { previews[client.clientID] = preview }
        }
        return previews
    }

    /// The full logo of a consentable client.
    public func consentableLogo(_ id: String) throws -> (contentType: String, image: [UInt8], etag: String)? {
        guard try consentable(id) != nil else { return nil }
        return try store.logo(clientID: id)
    }
}
