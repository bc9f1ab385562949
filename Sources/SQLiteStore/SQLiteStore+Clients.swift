import Common
import Foundation
import OAuth
import SharedSQL
import SQLite
import Synchronization

/// Settings, organizations, clients, their logos, secrets and signing keys (MetaStorage, ClientStorage, CredentialStorage).
extension SQLiteStore {
    // MARK: Meta

    public func meta(_ key: String) throws -> String? {
        try memoized(\.meta, key) { try rows("SELECT value FROM meta WHERE key = ?", [.text(key)]).first?.string(0) }
    }

    // MARK: Organizations

    /// The organization's client count, kept by triggers (migration 6): no scan.
    /// SQLite's write lock already serializes creates.
    public func upstreamCount(organizationID: String) throws -> Int {
        Int(try rows("SELECT count(*) FROM upstream_clients WHERE organization_id = ?", [.text(organizationID)]).first?.int(0) ?? 0)
    }

    public func clientCount(organizationID: String) throws -> Int {
        Int(try rows("SELECT client_count FROM organizations WHERE id = ?", [.text(organizationID)]).first?.int(0) ?? 0)
    }

    // MARK: Clients

    public func insertClient(_ c: Client) throws {
        try insertClientRow(c)
    }

    public func client(_ id: String) throws -> Client? {
        try memoized(\.clients, id) {
            try rows("SELECT \(SharedRows.clientColumns) FROM clients c WHERE c.client_id = ?", [.text(id)]).first.map(SharedRows.client)
        }
    }

    /// The write lock already keeps every other writer out.
    public func clientForUpdate(_ id: String) throws -> Client? { try client(id) }

    public func deleteClient(_ id: String) throws {
        try exec("DELETE FROM clients WHERE client_id = ?", [.text(id)])
    }

    // MARK: Logos

    // MARK: Secrets

    public func secrets(clientID: String) throws -> [ClientSecret] {
        try memoized(\.secrets, clientID) { try loadSecrets(clientID: clientID) }
    }

    // MARK: Signing keys
}
