import Common
import Foundation
import OAuth
import SQLite
import Synchronization

/// Answers of hot reads. The configuration answers (clients, secrets,
/// meta) hold while `config_generation` is unchanged; the revocation
/// answers only while `data_version` is. `version` -1: unusable until the
/// next read transaction revalidates.
struct ReadMemo {
    var version: Int64 = -1
    var configGeneration: Int64 = -1
    var clients: [String: Client?] = [:]
    var secrets: [String: [ClientSecret]] = [:]
    var meta: [String: String?] = [:]
    var revokedTokens: [String: Bool] = [:]
    var revokedFamilies: [String: Bool] = [:]

    /// After a write: nothing is usable until revalidated (the configuration
    /// answers may survive it, if the generation says so).
    mutating func invalidate() {
        version = -1
        if !revokedTokens.isEmpty { revokedTokens = [:] }
        if !revokedFamilies.isEmpty { revokedFamilies = [:] }
    }

    mutating func revalidate(version: Int64, configGeneration: Int64) {
        invalidate()
        if configGeneration != self.configGeneration || configGeneration < 0 {
            clients = [:]
            secrets = [:]
            meta = [:]
            self.configGeneration = configGeneration
        }
        self.version = version
    }
}
