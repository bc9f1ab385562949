import Common
import Cryptography
import OAuth

extension SharedRows {
    public static let clientColumns = """
        c.client_id, c.organization_id, c.is_primary, c.client_name, c.description, c.client_uri, c.redirect_uris, c.grant_types,
        c.token_endpoint_auth_method, c.scope, c.access_token_ttl, c.refresh_token_ttl, c.enabled, c.extra_data, c.attributes,
        c.created_at, c.updated_at, c.version, c.last_used_at, EXISTS(SELECT 1 FROM client_logos l WHERE l.client_id = c.client_id),
        c.token_generation, c.id_token_signed_response_alg, c.post_logout_redirect_uris, c.backchannel_logout_uri,
        c.backchannel_logout_session_required, c.jwks, c.require_pushed_authorization_requests, c.userinfo_signed_response_alg,
        c.policy_uri, c.tos_uri, c.dpop_bound_access_tokens, c.fapi2_security_profile
        """

    public static func client(_ r: some SQLRowValues) -> Client {
        func strings(_ i: Int) -> [String] { ((try? JSON.parse(r.string(i)))?.arrayValue ?? []).compactMap(\.stringValue) }
        return Client(clientID: r.string(0), organizationID: r.string(1), isPrimary: r.bool(2), name: r.string(3),
                      description: r.optionalString(4), clientURI: r.optionalString(5), redirectURIs: strings(6), grantTypes: strings(7).compactMap(GrantType.init(known:)),
                      authMethod: ClientAuthMethod(rawValue: r.string(8)) ?? .clientSecretBasic, scope: Scopes.parse(r.string(9)) ?? [], accessTokenTTL: Int(r.int(10)),
                      refreshTokenTTL: Int(r.int(11)), enabled: r.bool(12), extraData: (try? JSON.parse(r.string(13))) ?? .object([]),
                      attributes: (try? JSON.parse(r.string(14))) ?? .object([]), createdAt: r.int(15), updatedAt: r.int(16),
                      version: Int(r.int(17)), lastUsedAt: r.optionalInt(18), hasLogo: r.bool(19), tokenGeneration: Int(r.int(20)),
                      idTokenAlg: SignatureAlgorithm(rawValue: r.string(21)) ?? .es256, postLogoutRedirectURIs: strings(22),
                      backchannelLogoutURI: r.optionalString(23), backchannelLogoutSessionRequired: r.bool(24),
                      jwks: r.optionalString(25).flatMap { try? JSON.parse(Array($0.utf8)) }, requirePushedRequests: r.bool(26),
                      userinfoAlg: r.optionalString(27).flatMap(SignatureAlgorithm.init(rawValue:)), policyURI: r.optionalString(28),
                      tosURI: r.optionalString(29), dpopBoundAccessTokens: r.bool(30), fapi2: r.bool(31))
    }

    public static func values(_ c: Client) -> [SQLArgument] {
        [.text(c.clientID), .text(c.organizationID), SQLArgument(flag: c.isPrimary), .text(c.name), SQLArgument(c.description), SQLArgument(c.clientURI),
         .text(JSON(c.redirectURIs).text), .text(JSON(c.grantTypes.map(\.rawValue)).text), .text(c.authMethod.rawValue), .text(Scopes.join(c.scope)),
         SQLArgument(c.accessTokenTTL), SQLArgument(c.refreshTokenTTL), SQLArgument(flag: c.enabled), .text(c.extraData.text), .text(c.attributes.text),
         .int(c.createdAt), .int(c.updatedAt), SQLArgument(c.version), SQLArgument(c.lastUsedAt), SQLArgument(c.tokenGeneration),
         .text(c.idTokenAlg.rawValue), .text(JSON(c.postLogoutRedirectURIs).text), SQLArgument(c.backchannelLogoutURI),
         SQLArgument(flag: c.backchannelLogoutSessionRequired), SQLArgument(c.jwks?.text), SQLArgument(flag: c.requirePushedRequests),
         SQLArgument(c.userinfoAlg?.rawValue), SQLArgument(c.policyURI), SQLArgument(c.tosURI),
         SQLArgument(flag: c.dpopBoundAccessTokens), SQLArgument(flag: c.fapi2)]
    }
}

/// Settings, organizations, clients, their logos, secrets and signing keys (MetaStorage, ClientStorage, CredentialStorage), on
/// both stores; the memoized reads, the client count and the creation and deletion of clients (SQLite's triggers, PostgreSQL's
/// locks) stay in each store.
extension SQLStatementRunner {
    public func deleteMeta(_ key: String) throws {
        try update("DELETE FROM meta WHERE key = ?", [.text(key)])
    }

    public func setMeta(_ key: String, _ value: String) throws {
        try update("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [.text(key), .text(value)])
    }

    public func insertOrganization(_ o: Organization) throws {
        try update("INSERT INTO organizations(id, name, client_limit, primary_client_id, created_at) VALUES(?, ?, ?, ?, ?)",
                 [.text(o.id), .text(o.name), SQLArgument(o.clientLimit), SQLArgument(o.primaryClientID), .int(o.createdAt)])
    }

    public func organization(_ id: String) throws -> Organization? {
        try query("SELECT id, name, client_limit, primary_client_id, created_at FROM organizations WHERE id = ?", [.text(id)]).first.map {
            Organization(id: $0.string(0), name: $0.string(1), clientLimit: Int($0.int(2)), primaryClientID: $0.optionalString(3), createdAt: $0.int(4))
        }
    }

    public func setPrimaryClient(organizationID: String, clientID: String) throws {
        try update("UPDATE organizations SET primary_client_id = ? WHERE id = ?", [.text(clientID), .text(organizationID)])
    }

    /// The client's row; each store adds what its engine needs around it
    /// (SQLite's triggers count clients; PostgreSQL claims the id and counts).
    public func insertClientRow(_ c: Client) throws {
        try update("""
            INSERT INTO clients(client_id, organization_id, is_primary, client_name, description, client_uri, redirect_uris, grant_types,
              token_endpoint_auth_method, scope, access_token_ttl, refresh_token_ttl, enabled, extra_data, attributes, created_at,
              updated_at, version, last_used_at, token_generation, id_token_signed_response_alg, post_logout_redirect_uris,
              backchannel_logout_uri, backchannel_logout_session_required, jwks, require_pushed_authorization_requests,
              userinfo_signed_response_alg, policy_uri, tos_uri, dpop_bound_access_tokens, fapi2_security_profile)
              VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, SharedRows.values(c))
    }

    public func updateClient(_ c: Client) throws {
        var values = Array(SharedRows.values(c).dropFirst(2))
        values.append(.text(c.clientID))
        try update("""
            UPDATE clients SET is_primary = ?, client_name = ?, description = ?, client_uri = ?, redirect_uris = ?, grant_types = ?,
              token_endpoint_auth_method = ?, scope = ?, access_token_ttl = ?, refresh_token_ttl = ?, enabled = ?, extra_data = ?,
              attributes = ?, created_at = ?, updated_at = ?, version = ?, last_used_at = ?, token_generation = ?,
              id_token_signed_response_alg = ?, post_logout_redirect_uris = ?, backchannel_logout_uri = ?,
              backchannel_logout_session_required = ?, jwks = ?, require_pushed_authorization_requests = ?,
              userinfo_signed_response_alg = ?, policy_uri = ?, tos_uri = ?, dpop_bound_access_tokens = ?,
              fapi2_security_profile = ? WHERE client_id = ?
            """, values)
    }

    public func isClientIDRetired(_ id: String) throws -> Bool {
        try !query("SELECT 1 FROM retired_client_ids WHERE client_id = ?", [.text(id)]).isEmpty
    }

    public func touchClient(_ id: String, lastUsedAt: Int64) throws {
        try update("UPDATE clients SET last_used_at = ? WHERE client_id = ?", [.int(lastUsedAt), .text(id)])
    }

    public func setLogo(clientID: String, contentType: String, image: [UInt8], preview: [UInt8], etag: String, at: Int64) throws {
        try update("""
            INSERT INTO client_logos(client_id, content_type, image, preview, etag, updated_at) VALUES(?, ?, ?, ?, ?, ?)
            ON CONFLICT(client_id) DO UPDATE SET content_type = excluded.content_type, image = excluded.image,
              preview = excluded.preview, etag = excluded.etag, updated_at = excluded.updated_at
            """, [.text(clientID), .text(contentType), .bytes(image), .bytes(preview), .text(etag), .int(at)])
    }

    public func setRegistrationToken(clientID: String, hash: String, at: Int64) throws {
        try update("""
            INSERT INTO registration_tokens(client_id, token_hash, created_at) VALUES(?, ?, ?)
            ON CONFLICT(client_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at
            """, [.text(clientID), .text(hash), .int(at)])
    }

    public func deleteRegistrationToken(clientID: String) throws {
        try blindUpdate("DELETE FROM registration_tokens WHERE client_id = ?", [.text(clientID)])
    }

    public func registrationTokenHash(clientID: String) throws -> String? {
        try query("SELECT token_hash FROM registration_tokens WHERE client_id = ?", [.text(clientID)]).first.map { $0.string(0) }
    }

    public func logoPreview(clientID: String) throws -> [UInt8]? {
        try query("SELECT preview FROM client_logos WHERE client_id = ? AND preview IS NOT NULL", [.text(clientID)]).first.map { $0.blob(0) }
    }

    public func logo(clientID: String) throws -> (contentType: String, image: [UInt8], etag: String)? {
        try query("SELECT content_type, image, etag FROM client_logos WHERE client_id = ?", [.text(clientID)]).first.map {
            ($0.string(0), $0.blob(1), $0.string(2))
        }
    }

    public func deleteLogo(clientID: String) throws {
        try update("DELETE FROM client_logos WHERE client_id = ?", [.text(clientID)])
    }

    /// Whether a single-use record's insert also clears the expired ones: about one in sixteen (by the clock's
    /// milliseconds), so a busy endpoint does not rewrite the table's oldest pages on every request, and the
    /// table stays bounded by what one sixteenth of the traffic leaves behind.
    static func purgesExpired(at now: Int64) -> Bool { now % 16 == 0 }

    public func useAssertion(clientID: String, jti: String, expiresAt: Int64, now: Int64) throws -> Bool {
        if Self.purgesExpired(at: now) { try blindUpdate(ExpiredRows.clientAssertions, ExpiredRows.arguments(before: now - ExpiredRows.singleUseMarginMillis)) }
        // A record still there past its expiry (not purged yet) counts as gone: taken over, as a new one would be.
        return try update("""
            INSERT INTO client_assertions(client_id, jti, expires_at) VALUES(?, ?, ?)
            ON CONFLICT(client_id, jti) DO UPDATE SET expires_at = excluded.expires_at WHERE client_assertions.expires_at < ?
            """, [.text(clientID), .text(jti), .int(expiresAt), .int(now)]) == 1
    }

    public func spendAnonymousWrite(organizationID: String, limit: Int, windowMillis: Int64, now: Int64) throws -> Int64? {
        // One statement, so two registrations at once cannot both take the last one: a window that began
        // `windowMillis` ago or more starts over with this one; otherwise it counts while some are left.
        let counted = try update("""
            INSERT INTO anonymous_registrations(organization_id, window_start, used) VALUES(?, ?, 1)
            ON CONFLICT(organization_id) DO UPDATE SET
                used = CASE WHEN excluded.window_start - anonymous_registrations.window_start >= ? THEN 1 ELSE anonymous_registrations.used + 1 END,
                window_start = CASE WHEN excluded.window_start - anonymous_registrations.window_start >= ? THEN excluded.window_start
                                    ELSE anonymous_registrations.window_start END
            WHERE excluded.window_start - anonymous_registrations.window_start >= ? OR anonymous_registrations.used < ?
            """, [.text(organizationID), .int(now), .int(windowMillis), .int(windowMillis), .int(windowMillis), .int(Int64(limit))]) == 1
        if counted { return nil }
        let start = try query("SELECT window_start FROM anonymous_registrations WHERE organization_id = ?", [.text(organizationID)]).first?.int(0) ?? now
        return start + windowMillis
    }

    public func useProof(jkt: String, jti: String, expiresAt: Int64, now: Int64) throws -> Bool {
        if Self.purgesExpired(at: now) { try blindUpdate(ExpiredRows.dpopProofs, ExpiredRows.arguments(before: now - ExpiredRows.singleUseMarginMillis)) }
        return try update("""
            INSERT INTO dpop_proofs(jkt, jti, expires_at) VALUES(?, ?, ?)
            ON CONFLICT(jkt, jti) DO UPDATE SET expires_at = excluded.expires_at WHERE dpop_proofs.expires_at < ?
            """, [.text(jkt), .text(jti), .int(expiresAt), .int(now)]) == 1
    }

    public func insertSecret(_ s: ClientSecret) throws {
        try update("INSERT INTO client_secrets(client_id, kind, hash, created_at, expires_at) VALUES(?, ?, ?, ?, ?)",
                 [.text(s.clientID), .text(s.kind.rawValue), .text(s.hash), .int(s.createdAt), SQLArgument(s.expiresAt)])
    }

    public func loadSecrets(clientID: String) throws -> [ClientSecret] {
        try query("SELECT id, client_id, kind, hash, created_at, expires_at FROM client_secrets WHERE client_id = ? ORDER BY id DESC", [.text(clientID)]).map {
            ClientSecret(id: $0.int(0), clientID: $0.string(1), kind: ClientSecret.Kind(rawValue: $0.string(2)) ?? .hmac, hash: $0.string(3),
                         createdAt: $0.int(4), expiresAt: $0.optionalInt(5))
        }
    }

    public func deleteSecret(id: Int64) throws { try update("DELETE FROM client_secrets WHERE id = ?", [.int(id)]) }

    public func setSecretExpiry(id: Int64, expiresAt: Int64?) throws {
        try update("UPDATE client_secrets SET expires_at = ? WHERE id = ?", [SQLArgument(expiresAt), .int(id)])
    }

    public func insertSigningKey(_ k: SigningKeyRecord) throws {
        try update("INSERT INTO signing_keys(kid, algorithm, private_key, encrypted, public_key, created_at, retired_at) VALUES(?, ?, ?, ?, ?, ?, ?)",
                 [.text(k.kid), .text(k.algorithm), .bytes(k.privateKey), SQLArgument(flag: k.encrypted), .bytes(k.publicKey), .int(k.createdAt), SQLArgument(k.retiredAt)])
    }

    public func signingKeys() throws -> [SigningKeyRecord] {
        try query("SELECT kid, algorithm, private_key, encrypted, public_key, created_at, retired_at FROM signing_keys ORDER BY created_at DESC").map {
            SigningKeyRecord(kid: $0.string(0), algorithm: $0.string(1), privateKey: $0.blob(2), encrypted: $0.bool(3), publicKey: $0.blob(4),
                             createdAt: $0.int(5), retiredAt: $0.optionalInt(6))
        }
    }

    public func retireSigningKeys(algorithm: String, at: Int64) throws {
        try update("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL AND algorithm = ?", [.int(at), .text(algorithm)])
    }

    public func sealSigningKey(kid: String, privateKey: [UInt8]) throws {
        try update("UPDATE signing_keys SET private_key = ?, encrypted = 1 WHERE kid = ?", [.bytes(privateKey), .text(kid)])
    }

    public func deleteSigningKeys(retiredBefore: Int64) throws {
        try update("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?", [.int(retiredBefore)])
    }

    public func deleteSigningKey(kid: String) throws {
        try update("DELETE FROM signing_keys WHERE kid = ?", [.text(kid)])
    }
}

extension SQLStatementRunner where Self: ClientStorage {
    public func clients(organizationID: String, filter clientFilter: ClientFilter, limit: Int, offset: Int) throws -> (clients: [Client], total: Int) {
        var filter = "c.organization_id = ?"
        var values: [SQLArgument] = [.text(organizationID)]
        var filtered = false
        if let namePrefix = clientFilter.namePrefix, !namePrefix.isEmpty {
            filter += " AND substr(c.client_name, 1, CAST(? AS INTEGER)) = ?"
            values += [SQLArgument(namePrefix.unicodeScalars.count), .text(namePrefix)]
            filtered = true
        }
        switch clientFilter.lastUsed {
        case .never:
            filter += " AND c.last_used_at IS NULL"
            filtered = true
        case let .atOrBefore(time):
            filter += " AND c.last_used_at IS NOT NULL AND c.last_used_at <= ?"
            values.append(.int(time))
            filtered = true
        case nil:
            break
        }
        let total = filtered
            ? Int(try query("SELECT count(*) FROM clients c WHERE \(filter)", values).first?.int(0) ?? 0)
            : try clientCount(organizationID: organizationID)
        let list = try query("SELECT \(SharedRows.clientColumns) FROM clients c WHERE \(filter) ORDER BY c.created_at, c.client_id LIMIT ? OFFSET ?",
                            values + [SQLArgument(limit), SQLArgument(offset)]).map(SharedRows.client)
        return (list, total)
    }
}
