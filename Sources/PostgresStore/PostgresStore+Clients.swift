import Common
import Foundation
import OAuth
import SharedSQL
import Postgres

/// Settings, organizations, clients, their logos, secrets and signing keys (MetaStorage, ClientStorage, CredentialStorage).
extension PostgresStore {
    // MARK: Meta

    public func meta(_ key: String) throws -> String? {
        try memoized(\.meta, key) { try rows("SELECT value FROM meta WHERE key = ?", [.text(key)]).first?.string(0) }
    }

    // MARK: Organizations

    /// The organization's client count, kept by triggers (migration 6): no scan.
    public func clientCount(organizationID: String) throws -> Int {
        // Inside a write the organization's row is locked: concurrent creates
        // on every node queue here, so the client limit holds under races.
        let lock = writing ? " FOR UPDATE" : ""
        return Int(try rows("SELECT client_count FROM organizations WHERE id = ?\(lock)", [.text(organizationID)]).first?.int(0) ?? 0)
    }

    /// Inside a write the organization's row is locked first, and the count
    /// read after (a statement of its own, so it sees a create that held the
    /// lock before): concurrent creates on every node queue, the limit holds.
    public func upstreamCount(organizationID: String) throws -> Int {
        if writing { _ = try rows("SELECT id FROM organizations WHERE id = ? FOR UPDATE", [.text(organizationID)]) }
        return Int(try rows("SELECT count(*) FROM upstream_clients WHERE organization_id = ?", [.text(organizationID)]).first?.int(0) ?? 0)
    }

    // MARK: Clients

    public func insertClient(_ c: Client) throws {
        // The id is claimed for good first: a concurrent create of the same id, or one racing its deletion, conflicts (23505).
        try exec("INSERT INTO client_ids(client_id) VALUES(?)", [.text(c.clientID)])
        try exec("UPDATE organizations SET client_count = client_count + 1 WHERE id = ?", [.text(c.organizationID)])
        try insertClientRow(c)
    }

    public func client(_ id: String) throws -> Client? {
        try memoized(\.clients, id) {
            try rows("SELECT \(SharedRows.clientColumns) FROM clients c WHERE c.client_id = ?", [.text(id)]).first.map(SharedRows.client)
        }
    }

    public func clientForUpdate(_ id: String) throws -> Client? {
        precondition(writing, "clientForUpdate outside a write")
        return try rows("SELECT \(SharedRows.clientColumns) FROM clients c WHERE c.client_id = ? FOR NO KEY UPDATE", [.text(id)]).first.map(SharedRows.client)
    }

    public func deleteClient(_ id: String) throws {
        guard let org = try rows("SELECT organization_id FROM clients WHERE client_id = ?", [.text(id)]).first?.string(0) else { return }
        try exec("DELETE FROM clients WHERE client_id = ?", [.text(id)])
        try exec("UPDATE organizations SET client_count = client_count - 1 WHERE id = ?", [.text(org)])
        try exec("INSERT INTO retired_client_ids(client_id, organization_id, retired_at) VALUES(?, ?, ?) ON CONFLICT (client_id) DO NOTHING",
                 [.text(id), .text(org), .int(now())])
    }

    // MARK: Logos

    // MARK: Secrets

    public func secrets(clientID: String) throws -> [ClientSecret] {
        try memoized(\.secrets, clientID) { try loadSecrets(clientID: clientID) }
    }

    // MARK: Signing keys
}
