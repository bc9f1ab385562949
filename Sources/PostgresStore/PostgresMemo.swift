import Common
import Foundation
import OAuth
import Postgres

/// What one connection remembers between requests (SPEC 9: exact across
/// nodes): configuration answers while the configuration generation holds,
/// revocation answers while the revocation generation holds.
struct PostgresMemo {
    var config: Int64 = -1
    var revocation: Int64 = -1
    var clients: [String: Client?] = [:]
    var secrets: [String: [ClientSecret]] = [:]
    var meta: [String: String?] = [:]
    var revokedTokens: [String: Bool] = [:]
    var revokedFamilies: [String: Bool] = [:]

    mutating func revalidate(config: Int64, revocation: Int64) {
        if config != self.config || config < 0 { forgetConfiguration(); self.config = config }
        if revocation != self.revocation || revocation < 0 { forgetRevocations(); self.revocation = revocation }
    }

    mutating func forgetConfiguration() {
        config = -1
        if !clients.isEmpty { clients = [:] }
        if !secrets.isEmpty { secrets = [:] }
        if !meta.isEmpty { meta = [:] }
    }

    mutating func forgetRevocations() {
        revocation = -1
        if !revokedTokens.isEmpty { revokedTokens = [:] }
        if !revokedFamilies.isEmpty { revokedFamilies = [:] }
    }
}

/// Rows a statement brought along with the one it was asked for (see
/// `PostgresStore.along`); `.some(nil)`: known not to exist.
struct AlongRows {
    var users: [String: User?] = [:]
    var connections: [String: UserConnection?] = [:]
    /// Connections read `FOR NO KEY UPDATE` in this write (`prefetchConnection`).
    var lockedConnections: Set<String> = []
    var families: [String: Bool] = [:]
    var requests: [String: StoredAuthorizationRequest?] = [:]
    /// Sessions held by this write (`holdSession`): whether each was there.
    var sessions: [String: Bool] = [:]

    static func key(_ userID: String, _ clientID: String) -> String { userID + "\u{0}" + clientID }

    /// A write to `table` in this request: what was read of it is read again.
    mutating func forget(table: String) {
        switch table {
        case "users": users = [:]
        case "connections": connections = [:]; lockedConnections = []
        case "token_families": families = [:]
        case "authorization_requests": requests = [:]
        case "sessions": sessions = [:]
        default: break
        }
    }
}
