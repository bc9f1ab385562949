import Common

/// What the domain needs from storage. One implementation (SQLiteStore);
/// tests use it on a temporary file, so there is no second store to drift.
///
/// Every method may throw `StoreError.busy` (answer 503) or
/// `StoreError.conflict` (a uniqueness rule refused the write).
public protocol Store: AnyObject {
    /// Runs `body` in a write transaction (`BEGIN IMMEDIATE`), committing
    /// when it returns and rolling back when it throws. Nested calls join
    /// the outer transaction.
    func write<T>(_ body: () throws -> T) throws -> T
    /// Runs `body` in a read transaction, for a consistent snapshot.
    func read<T>(_ body: () throws -> T) throws -> T

    func meta(_ key: String) throws -> String?
    func setMeta(_ key: String, _ value: String) throws

    func insertOrganization(_ organization: Organization) throws
    func organization(_ id: String) throws -> Organization?
    func setPrimaryClient(organizationID: String, clientID: String) throws
    func clientCount(organizationID: String) throws -> Int

    func insertClient(_ client: Client) throws
    func client(_ id: String) throws -> Client?
    /// Writes every mutable field of `client` (version included).
    func updateClient(_ client: Client) throws
    /// Removes the client and everything that hangs off it.
    func deleteClient(_ id: String) throws
    func clients(organizationID: String, namePrefix: String?, limit: Int, offset: Int) throws -> (clients: [Client], total: Int)
    func touchClient(_ id: String, lastUsedAt: Int64) throws

    func setLogo(clientID: String, contentType: String, image: [UInt8], etag: String, at: Int64) throws
    func logo(clientID: String) throws -> (contentType: String, image: [UInt8], etag: String)?
    func deleteLogo(clientID: String) throws

    func insertSecret(_ secret: ClientSecret) throws
    func secrets(clientID: String) throws -> [ClientSecret]
    func deleteSecret(id: Int64) throws
    func setSecretExpiry(id: Int64, expiresAt: Int64?) throws

    func insertSigningKey(_ key: SigningKeyRecord) throws
    func signingKeys() throws -> [SigningKeyRecord]
    func retireSigningKeys(at: Int64) throws
    func deleteSigningKeys(retiredBefore: Int64) throws

    func revokeAccessToken(jti: String, expiresAt: Int64) throws
    func isAccessTokenRevoked(jti: String) throws -> Bool

    func insertUser(_ user: User) throws
    func user(username: String) throws -> User?
    func user(id: String) throws -> User?

    func appendAudit(_ event: AuditEvent) throws
    func auditEvents(organizationID: String, limit: Int, offset: Int) throws -> (events: [AuditEvent], total: Int)
}
